"""Verification of hand-derived backward passes.

Two independent judges for ``layer.backward``:

* **finite differences**: ∂L/∂θ_i ≈ (L(θ + ε e_i) − L(θ − ε e_i)) / 2ε, error O(ε²) in
  float64; optionally the **complex step** ∂L/∂θ_i ≈ Im L(θ + i h e_i) / h (no subtraction,
  so h = 1e-20 is exact to rounding) for numpy-only smooth layers;
* **torch autograd** run on the layer's *own* Array-API forward with torch tensors: the very
  same code, differentiated by a machine.

Both use a scalar probe loss L = Σ ⟨out, R⟩ with a fixed random cotangent R, whose
gradient is exactly what ``backward(params, cache, dout=R)`` returns.

``rel_error(a, b) = ‖a − b‖ / max(‖a‖ + ‖b‖, tiny)`` (a norm-wise error: robust to single
tiny entries, 0 for equal arrays, 1 for opposite ones).
"""
from __future__ import annotations

import numpy as np
import array_api_compat

from tinynim.backend import namespace, to_numpy
from tinynim.tree import leaves_with_paths, set_leaf, tree_map, get


def rel_error(a, b) -> float:
    a, b = np.asarray(to_numpy(a), dtype=np.float64), np.asarray(to_numpy(b), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def numerical_grad(f, x: np.ndarray, *, eps=1e-6, coords=None) -> np.ndarray:
    """Central differences of a scalar function of a host float64 array.

    `coords`: flat indices to probe (default all); the others are left NaN.
    """
    x = np.array(x, dtype=np.float64)
    g = np.full(x.size, np.nan) if coords is not None else np.zeros(x.size)
    flat = x.reshape(-1)
    for i in (range(x.size) if coords is None else coords):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        g[i] = (up - down) / (2 * eps)
    return g.reshape(x.shape)


def complex_step_grad(f, x: np.ndarray, *, h=1e-20) -> np.ndarray:
    """Im f(x + i h e_i) / h for every i: exact to rounding, for holomorphic numpy code."""
    x = np.asarray(x, dtype=np.complex128)
    g = np.zeros(x.size)
    for i in range(x.size):
        xi = x.copy().reshape(-1)
        xi[i] += 1j * h
        g[i] = np.imag(f(xi.reshape(x.shape))) / h
    return g.reshape(x.shape)


def _probe(out_tree, cot_tree) -> float:
    return sum(float(np.sum(to_numpy(o).astype(np.float64) * c))
               for (_, o), (_, c) in zip(leaves_with_paths(out_tree), leaves_with_paths(cot_tree)))


def _like(host, ref):
    """Host array -> an array in `ref`'s namespace, dtype and device."""
    xp = namespace(ref)
    return xp.asarray(host, dtype=ref.dtype, device=array_api_compat.device(ref))


def _is_float(a):
    return a is not None and namespace(a).isdtype(a.dtype, "real floating")


def cotangent(out, seed=0):
    """A random host cotangent tree R shaped like the layer output.

    Drawn from the stream ``[seed, 1]``, never equal to ``RNG(seed)``'s: a cotangent equal to
    the input would make e.g. LayerNorm's dx vanish and the relative error meaningless."""
    rng = np.random.default_rng([seed, 1])
    return tree_map(lambda o: rng.standard_normal(tuple(o.shape)), out)


def check_layer(layer, params, x, kwargs=None, *, seed=0, eps=1e-6, max_coords=None,
                method="fd") -> dict:
    """Compare ``layer.backward`` with finite differences (``method="fd"``) or torch
    autograd (``method="torch"``). Returns ``{path: rel_error}`` for every float input
    (``"x"``, ``"x/0"``, ...) and every parameter (``"W"``, ``"attn/Wq"``, ...).

    `max_coords` probes at most that many random coordinates per array (fd only).
    Run it in float64: finite differences in float32 are too coarse to mean anything.
    """
    kwargs = kwargs or {}
    out, cache = layer.forward(params, x, **kwargs)
    R = cotangent(out, seed)
    dx, grads = layer.backward(params, cache, tree_map(_like, R, out))
    analytic = {"x": dx, "params": grads}
    if method == "torch":
        reference = torch_autograd(layer, params, x, R, kwargs)
    elif method == "fd":
        reference = _finite_differences(layer, params, x, R, kwargs, eps, max_coords, seed)
    else:
        raise ValueError(f"check_layer: method must be 'fd' or 'torch', got {method!r}")
    errors = {}
    for path, ref in leaves_with_paths(reference):
        got = get(analytic, path)
        if got is None:
            raise AssertionError(f"{layer.name}: backward returned no gradient for {path}")
        got, ref = to_numpy(got).astype(np.float64), np.asarray(ref)
        mask = ~np.isnan(ref)
        key = path.removeprefix("params/")
        errors[key] = rel_error(got[mask], ref[mask])
    return errors


def _finite_differences(layer, params, x, R, kwargs, eps, max_coords, seed):
    rng = np.random.default_rng([seed, 2])
    inputs = {"x": x, "params": params}
    result = tree_map(lambda a: None, inputs)
    for path, leaf in leaves_with_paths(inputs):
        if not _is_float(leaf):
            continue
        host = to_numpy(leaf).astype(np.float64)

        def loss(v, path=path, leaf=leaf):
            new = set_leaf(inputs, path, _like(v, leaf))
            return _probe(layer.forward(new["params"], new["x"], **kwargs)[0], R)

        coords = None
        if max_coords is not None and host.size > max_coords:
            coords = rng.choice(host.size, max_coords, replace=False)
        result = set_leaf(result, path, numerical_grad(loss, host, eps=eps, coords=coords))
    return result


def torch_autograd(layer, params, x, dout, kwargs=None) -> dict:
    """``{"x": dx, "params": grads}`` (host float64) by torch autograd through the layer's
    own forward, run on float64 torch tensors. Integer inputs get no gradient (None)."""
    import torch

    def to_torch(a):
        t = torch.as_tensor(np.array(to_numpy(a)))
        return t.double().requires_grad_(True) if t.is_floating_point() else t

    inputs = tree_map(to_torch, {"x": x, "params": params})
    kw = {k: (to_torch(v).detach() if hasattr(v, "shape") else v) for k, v in (kwargs or {}).items()}
    out, _ = layer.forward(inputs["params"], inputs["x"], **kw)
    outs = [o for _, o in leaves_with_paths(out)]
    loss = sum((o * torch.as_tensor(c)).sum() for o, (_, c) in zip(outs, leaves_with_paths(dout)))
    pairs = [(p, t) for p, t in leaves_with_paths(inputs) if t.requires_grad]
    grads = torch.autograd.grad(loss, [t for _, t in pairs], allow_unused=True)
    result = tree_map(lambda a: None, inputs)
    for (path, t), g in zip(pairs, grads):
        result = set_leaf(result, path, np.zeros(tuple(t.shape)) if g is None else g.numpy())
    return result
