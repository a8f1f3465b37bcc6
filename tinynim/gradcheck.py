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

**Verdict.** A relative error alone cries wolf on tiny or exactly-zero gradients, whose
reference is all rounding noise. :func:`check_layer` therefore judges each array as
torch.autograd.gradcheck does, |a − b| ≤ atol + rtol |b|, but norm-wise and with the
absolute part measured in units of the check's own rounding noise δ::

    passed  ⇔  ‖a − b‖ ≤ atol · δ · √n + rtol · ‖b‖          (n probed coordinates)

* finite differences: δ = u · S / eps, the error that rounding (u = 2.2e-16 in float64) of
  the probe loss L, of magnitude S = Σ_j |out_j R_j|, leaves in (L₊ − L₋) / 2eps;
* torch autograd: δ = u · G, G the largest reference gradient entry of the whole check: the
  same maths summed in another order differs by a few u times the magnitudes involved.

An error above the noise floor (a wrong formula) fails at any gradient size that the
method can resolve; a gradient below it (say 1e-12 next to O(1) ones) is judged by its
absolute error only, and an exactly-zero reference passes iff the analytic gradient is
zero up to that noise. Defaults in :data:`TOLERANCES`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import array_api_compat

from tinynim.backend import namespace, to_numpy, use_dtype
from tinynim.tree import leaves_with_paths, set_leaf, tree_map, get


U = float(np.finfo(np.float64).eps)     # float64 unit roundoff (×2), 2.2e-16
# (rtol, atol) per method: rtol on the norm of the reference; atol in units of the noise δ.
# FD: the relative error of a smooth layer is ~1e-9 (truncation eps² ~ 1e-12, rounding
# ~ δ), so rtol 1e-7 leaves two decades of slack; atol 100: the rounding error of L is a few
# u·S for a well-conditioned forward, up to ~30 u·S where it cancels (LayerNorm, softmax).
# torch: the same float64 maths in another order (~1e-15 relative); rtol 1e-10, atol 1000.
TOLERANCES = {"fd": (1e-7, 100.0), "torch": (1e-10, 1000.0)}


@dataclass(frozen=True)
class ArrayCheck:
    """One array of a gradient check: ``passed`` iff ``error <= tolerance``."""

    error: float            # ‖analytic − reference‖ over the probed coordinates
    norm: float             # ‖reference‖
    rel_error: float        # rel_error(analytic, reference)
    noise: float            # δ·√n: the rounding noise of the reference, norm-wise
    tolerance: float        # atol·noise + rtol·norm

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance

    def __str__(self):
        return (f"‖Δ‖ {self.error:.2e} {'≤' if self.passed else '>'} tol {self.tolerance:.2e} "
                f"(‖ref‖ {self.norm:.2e}, noise {self.noise:.1e}, rel {self.rel_error:.1e})")


class GradientCheck(dict):
    """``{path: rel_error}`` for every checked array (a plain dict of floats, as before), with
    the verdict: :attr:`arrays` ``{path: ArrayCheck}``, :attr:`passed`, :meth:`failures`."""

    def __init__(self, arrays: dict, method: str, rtol: float, atol: float):
        super().__init__({k: c.rel_error for k, c in arrays.items()})
        self.arrays, self.method, self.rtol, self.atol = arrays, method, rtol, atol

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.arrays.values())

    def failures(self) -> dict:
        return {k: c for k, c in self.arrays.items() if not c.passed}

    def report(self) -> str:
        """One line per failing array (or 'ok'), naming the criterion."""
        bad = self.failures()
        head = f"{self.method} check in float64 (rtol {self.rtol:g}, atol {self.atol:g}·noise)"
        return head + (": ok" if not bad else "".join(f"\n  {k}: {c}" for k, c in bad.items()))


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


def _probe_magnitude(out_tree, cot_tree) -> float:
    """S = Σ_j |out_j R_j|: the magnitude of the terms of the probe loss."""
    return sum(float(np.sum(np.abs(to_numpy(o).astype(np.float64) * c)))
               for (_, o), (_, c) in zip(leaves_with_paths(out_tree), leaves_with_paths(cot_tree)))


def _like(host, ref):
    """Host array -> an array in `ref`'s namespace, dtype and device."""
    xp = namespace(ref)
    return xp.asarray(host, dtype=ref.dtype, device=array_api_compat.device(ref))


def _is_float(a):
    return a is not None and namespace(a).isdtype(a.dtype, "real floating")


def _float64(a):
    """A float array as float64 in its own namespace and device; anything else unchanged."""
    if not _is_float(a):
        return a
    xp = namespace(a)
    return a if a.dtype == xp.float64 else xp.astype(a, xp.float64)


def perturb(params, seed=0, scale=0.5):
    """``params`` + scale · N(0, 1) · s, array by array, s = the array's RMS (1 if it is all
    zero), drawn on the host from the stream ``[seed, 3]``: a gradient check at init values
    can hide a missing factor (LayerNorm's γ = 1, a zero bias) that random values expose."""
    rng = np.random.default_rng([seed, 3])

    def noisy(a):
        if not _is_float(a):
            return a
        host = to_numpy(a).astype(np.float64)
        s = float(np.sqrt(np.mean(host * host))) if host.size else 0.0
        return _like(host + scale * (s or 1.0) * rng.standard_normal(host.shape), a)
    return tree_map(noisy, params)


def cotangent(out, seed=0):
    """A random host cotangent tree R shaped like the layer output.

    Drawn from the stream ``[seed, 1]``, never equal to ``RNG(seed)``'s: a cotangent equal to
    the input would make e.g. LayerNorm's dx vanish and the relative error meaningless."""
    rng = np.random.default_rng([seed, 1])
    return tree_map(lambda o: rng.standard_normal(tuple(o.shape)), out)


def check_layer(layer, params, x, kwargs=None, *, seed=0, eps=1e-6, max_coords=None,
                method="fd", rtol=None, atol=None) -> GradientCheck:
    """Compare ``layer.backward`` with finite differences (``method="fd"``) or torch
    autograd (``method="torch"``) on the probe L = Σ ⟨out, R⟩.

    Returns a :class:`GradientCheck`: ``{path: rel_error}`` for every float input (``"x"``,
    ``"x/0"``, ...) and every parameter (``"W"``, ``"attn/Wq"``, ...), plus the verdict
    ``.passed`` / ``.failures()`` by the criterion of the module docstring with `rtol`,
    `atol` (defaults: :data:`TOLERANCES`). `max_coords` probes at most that many random
    coordinates per array (fd only).

    Always in float64, whatever the active dtype: float inputs, parameters and array keyword
    arguments are cast to float64 (on their own backend and device) and the layer runs under
    ``use_dtype("float64")``. In float32 a central difference carries a rounding error of
    u·|L|/eps ≈ 6e-8·|L|/1e-6, i.e. ~1e-2 relative: as large as the error of a wrong
    backward, so a float32 check could not tell a right layer from a buggy one.
    """
    if method not in TOLERANCES:
        raise ValueError(f"check_layer: method must be 'fd' or 'torch', got {method!r}")
    rtol = TOLERANCES[method][0] if rtol is None else rtol
    atol = TOLERANCES[method][1] if atol is None else atol
    params, x = tree_map(_float64, params), tree_map(_float64, x)
    kwargs = {k: _float64(v) if hasattr(v, "dtype") else v for k, v in (kwargs or {}).items()}
    with use_dtype("float64"):
        return _check(layer, params, x, kwargs, seed, eps, max_coords, method, rtol, atol)


def _check(layer, params, x, kwargs, seed, eps, max_coords, method, rtol, atol) -> GradientCheck:
    out, cache = layer.forward(params, x, **kwargs)
    R = cotangent(out, seed)
    dx, grads = layer.backward(params, cache, tree_map(_like, R, out))
    analytic = {"x": dx, "params": grads}
    if method == "torch":
        reference = torch_autograd(layer, params, x, R, kwargs)
    else:
        reference = _finite_differences(layer, params, x, R, kwargs, eps, max_coords, seed)
    pairs = {}
    for path, ref in leaves_with_paths(reference):
        got = get(analytic, path)
        if got is None:
            raise AssertionError(f"{layer.name}: backward returned no gradient for {path}")
        got, ref = to_numpy(got).astype(np.float64), np.asarray(ref)
        mask = ~np.isnan(ref)
        pairs[path.removeprefix("params/")] = (got[mask], ref[mask])
    if method == "fd":
        delta = U * _probe_magnitude(out, R) / eps
    else:
        delta = U * max((float(np.max(np.abs(r), initial=0.0)) for _, r in pairs.values()), default=0.0)
    arrays = {}
    for key, (got, ref) in pairs.items():
        norm, noise = float(np.linalg.norm(ref)), delta * math.sqrt(ref.size)
        arrays[key] = ArrayCheck(float(np.linalg.norm(got - ref)), norm, rel_error(got, ref), noise,
                                 atol * noise + rtol * norm)
    return GradientCheck(arrays, method, rtol, atol)


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


def torch_func_jacobian(layer, params, x, kwargs=None) -> dict:
    """The per-example params Jacobian (host float64 tree, leaves (B, *out, *leaf)) by
    ``torch.func.vmap(torch.func.jacrev(...))`` through the layer's own forward, run one
    example at a time on float64 torch tensors: the judge of :func:`tinynim.analysis.jacobian`."""
    import torch
    from torch.func import jacrev, vmap

    p = tree_map(lambda a: torch.as_tensor(np.array(to_numpy(a))).double(), params)
    xt = torch.as_tensor(np.array(to_numpy(x))).double()

    def one(params, xi):                                   # one example: out (*out)
        return layer.forward(params, xi[None, ...], **(kwargs or {}))[0][0, ...]

    J = vmap(jacrev(one), in_dims=(None, 0))(p, xt)
    return tree_map(lambda a: a.numpy(), J)
