"""Generic analysis of trained models: Jacobians and the empirical neural tangent kernel from
the layers' own backward, one cosine alignment metric, and one bounded zooming search for
tuning the step sizes of baselines.

Jacobians without autodiff. A layer's ``backward(params, cache, dout)`` returns the
vector–Jacobian products dx = doutᵀ ∂out/∂x and dθ = doutᵀ ∂out/∂θ. With dout = e_k (one-hot
in output coordinate k) they are row k of the Jacobian. For layers that treat the examples
of a batch independently (every layer here but the batch-coupled ones, e.g. a batch norm),
row k of every example comes from ONE backward call: the batch is repeated K = prod(out)
times and block k gets the cotangent e_k in every example.

* :func:`jacobian` w.r.t. the input: one forward and one backward of that (K·B)-batch give
  the whole (B, *out, *in) Jacobian, since dx keeps the examples apart.
* :func:`jacobian` w.r.t. the parameters: ``backward`` sums grads over the batch, so the
  plain route runs one backward per example and output coordinate (B·K calls, any layer).
  A layer with ``per_example`` (Linear, the activations, Sequential/MLP and Residual of such
  layers) keeps them apart in ``backward_per_example``: one forward and one backward of the
  (K·B)-batch, as for the input.
* :func:`ntk`: the empirical neural tangent kernel Θ̂(x, x') = J(x) J(x')ᵀ (Jacot et al.,
  arXiv:1806.07572). Its fast route never forms J: ``backward_gram`` of the concatenated batch
  returns the inner products of the per-example gradients, which for a Linear layer factorise
  into two small Gram matrices (see :mod:`tinynim.nn.linear`). The plain route contracts the
  plain Jacobians leaf by leaf.
"""
from __future__ import annotations

import itertools
import math

import array_api_compat
import numpy as np

from tinynim.backend import namespace
from tinynim.tree import leaves_with_paths, tree_map

WRT = ("input", "params")


def one_hot_rows(xp, K, like):
    """The K×K identity in `like`'s dtype and device: row k is the cotangent e_k."""
    return xp.eye(K, dtype=like.dtype, device=array_api_compat.device(like))


def _check_x(x, who):
    if isinstance(x, tuple) or not hasattr(x, "shape"):
        raise TypeError(f"{who}: expected x as one array (B, ...), got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError(f"{who}: expected x with a batch axis (B, ...), got shape {tuple(x.shape)}")


def output_shape(layer, params, x, kwargs) -> tuple:
    """The per-example output shape (*out) of `layer` on inputs like x (B, *in)."""
    return tuple(layer.forward(params, x[:min(x.shape[0], 1), ...], **kwargs)[0].shape[1:])


def tiled(xp, x, K):
    """x (B, *in) repeated K times along the batch, block-major: (K·B, *in)."""
    return xp.concat([x] * K, axis=0)


def one_hot_cotangents(xp, K, B, out_shape, like):
    """(K·B, *out): every example of block k gets the cotangent e_k (out flattened)."""
    E = xp.reshape(one_hot_rows(xp, K, like), (K, 1, K))
    return xp.reshape(xp.broadcast_to(E, (K, B, K)), (K * B,) + out_shape)


def example_major(xp, a, K, B, out_shape):
    """(K·B, *rest) in blocks of K output coordinates -> (B, *out, *rest)."""
    rest = tuple(a.shape[1:])
    a = xp.reshape(a, (K, B) + rest)
    a = xp.permute_dims(a, (1, 0) + tuple(range(2, a.ndim)))          # (B, K, *rest)
    return xp.reshape(a, (B,) + out_shape + rest)


def jacobian(layer, params, x, *, wrt="input", kwargs=None, fast=True):
    """Per-example Jacobian of ``layer.forward(params, x, **kwargs)`` from its own backward.

    x: (B, *in) array; out: (B, *out); K = prod(out).
    wrt="input":  (B, *out, *in), J[b, k..., i...] = ∂out[b, k...]/∂x[b, i...]; one forward
                  and one backward on the batch repeated K times.
    wrt="params": a tree like `params` whose leaves have shape (B, *out, *leaf.shape),
                  J[b, k...] = ∂out[b, k...]/∂θ. fast=True and ``layer.per_example``: one
                  forward and one ``backward_per_example`` on the batch repeated K times;
                  otherwise (the plain route, any layer) B·K backward calls.
    Both assume the layer treats examples independently (no coupling across the batch).
    """
    if wrt not in WRT:
        raise ValueError(f"jacobian: wrt must be one of {WRT}, got {wrt!r}")
    _check_x(x, "jacobian")
    kwargs = kwargs or {}
    xp = namespace(x)
    B = x.shape[0]
    out_shape = output_shape(layer, params, x, kwargs)
    K = math.prod(out_shape)
    if wrt == "params" and not (fast and layer.per_example):
        return params_jacobian_loop(layer, params, x, kwargs, out_shape)
    out, cache = layer.forward(params, tiled(xp, x, K), **kwargs)
    dout = one_hot_cotangents(xp, K, B, out_shape, out)
    if wrt == "input":
        dx, _ = layer.backward(params, cache, dout)                       # (K·B, *in)
        return example_major(xp, dx, K, B, out_shape)
    _, grads = layer.backward_per_example(params, cache, dout)            # leaves (K·B, *leaf)
    return tree_map(lambda g: example_major(xp, g, K, B, out_shape), grads)


def params_jacobian_loop(layer, params, x, kwargs, out_shape):
    """The plain route of :func:`jacobian` (wrt="params"): one backward per example b and
    output coordinate k, cotangent e_k; leaves (B, *out, *leaf)."""
    xp = namespace(x)
    B, K = x.shape[0], math.prod(out_shape)
    rows = []                                                             # per example b
    for b in range(B):
        out, cache = layer.forward(params, x[b:b + 1, ...], **kwargs)
        E = one_hot_rows(xp, K, out)
        per_k = [layer.backward(params, cache, xp.reshape(E[k, :], (1,) + out_shape))[1] for k in range(K)]
        rows.append(tree_map(lambda *g: xp.stack(g, axis=0), *per_k))    # leaves (K, *leaf)
    if not rows:                                                          # B = 0
        return tree_map(lambda p: xp.zeros((0,) + out_shape + tuple(p.shape), dtype=p.dtype,
                                           device=array_api_compat.device(p)), params)
    stacked = tree_map(lambda *g: xp.stack(g, axis=0), *rows)             # leaves (B, K, *leaf)
    return tree_map(lambda g: xp.reshape(g, (B,) + out_shape + tuple(g.shape[2:])), stacked)


def ntk(layer, params, x1, x2=None, *, kwargs=None, fast=True):
    """The empirical neural tangent kernel of ``layer`` at ``params``.

    Θ̂[a, b, k..., l...] = Σ_θ ∂out(x1_a)[k...]/∂θ · ∂out(x2_b)[l...]/∂θ, summed over every
    parameter: shape (N1, N2, *out, *out); x2=None means x2 = x1 (then Θ̂ is symmetric PSD
    as a (N1·K)×(N1·K) matrix). For a scalar output (out = (1,)) take ``[:, :, 0, 0]``.

    fast=True and ``layer.per_example``: one forward and one ``backward_gram`` of the batch
    [x1 repeated K times; x2 repeated K times] with one-hot cotangents: no Jacobian is formed
    (a Linear layer contributes s²(X₁X₂ᵀ)⊙(G₁G₂ᵀ) + G₁G₂ᵀ). Otherwise (the plain route, any
    layer) the plain Jacobians of x1 and x2, contracted leaf by leaf.
    """
    _check_x(x1, "ntk")
    if x2 is not None:
        _check_x(x2, "ntk")
    kwargs = kwargs or {}
    xp = namespace(x1) if x2 is None else namespace(x1, x2)
    out_shape = output_shape(layer, params, x1, kwargs)
    K, N1 = math.prod(out_shape), x1.shape[0]
    N2 = N1 if x2 is None else x2.shape[0]
    if fast and layer.per_example:
        xs = tiled(xp, x1, K) if x2 is None else xp.concat([tiled(xp, x1, K), tiled(xp, x2, K)], axis=0)
        out, cache = layer.forward(params, xs, **kwargs)
        dout = one_hot_cotangents(xp, K, N1, out_shape, out)
        if x2 is not None:
            dout = xp.concat([dout, one_hot_cotangents(xp, K, N2, out_shape, out)], axis=0)
        _, G = layer.backward_gram(params, cache, dout, None if x2 is None else K * N1)    # (K·N1, K·N2)
        G = _zero_gram(xp, K * N1, K * N2, out) if G is None else G
        G = xp.permute_dims(xp.reshape(G, (K, N1, K, N2)), (1, 3, 0, 2))   # (N1, N2, K, K)
    else:
        J1 = params_jacobian_loop(layer, params, x1, kwargs, out_shape)
        J2 = J1 if x2 is None else params_jacobian_loop(layer, params, x2, kwargs, out_shape)
        G = None
        for (_, a), (_, b) in zip(leaves_with_paths(J1), leaves_with_paths(J2)):
            A = xp.reshape(a, (N1 * K, math.prod(a.shape[1 + len(out_shape):])))        # (N1·K, P_leaf)
            B = xp.reshape(b, (N2 * K, math.prod(b.shape[1 + len(out_shape):])))
            G = A @ B.T if G is None else G + A @ B.T
        G = _zero_gram(xp, N1 * K, N2 * K, x1) if G is None else G
        G = xp.permute_dims(xp.reshape(G, (N1, K, N2, K)), (0, 2, 1, 3))   # (N1, N2, K, K)
    return xp.reshape(G, (N1, N2) + out_shape + out_shape)


def _zero_gram(xp, m, n, like):
    """The Gram of a layer without parameters."""
    return xp.zeros((m, n), dtype=like.dtype, device=array_api_compat.device(like))


def flatten_params_jacobian(J):
    """A params Jacobian tree (leaves (B, *out, *leaf)) as one (B, K, P) array, leaves in
    :func:`tinynim.tree.leaves_with_paths` order: the matrix whose J Jᵀ is the NTK."""
    leaves = [g for _, g in leaves_with_paths(J)]
    xp = namespace(*leaves)
    B = leaves[0].shape[0]
    K = leaves[0].shape[1] if leaves[0].ndim > 1 else 1
    return xp.concat([xp.reshape(g, (B, K, -1)) for g in leaves], axis=-1)


# -- alignment ---------------------------------------------------------------------------------

def unit_rows(v):
    """Rows of v (B, ...) scaled to unit norm over all but the first axis; a zero row stays 0."""
    xp = namespace(v)
    flat = xp.reshape(v, (v.shape[0], math.prod(v.shape[1:])))      # (B, F), also for B = 0
    norm = xp.sqrt(xp.sum(flat * flat, axis=1, keepdims=True))
    return flat / xp.maximum(norm, xp.finfo(v.dtype).smallest_normal)


def cosine(a, b):
    """Row-wise cosine similarity cos(a_i, b_i) over all but the first axis; 0 if a row is 0. (B,)"""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"cosine: expected arrays of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return namespace(a, b).sum(unit_rows(a) * unit_rows(b), axis=1)


def cosine_matrix(a, b):
    """All pairs cos(a_i, b_k) of rows a (B, ...) and b (K, ...).                        (B, K)"""
    return unit_rows(a) @ unit_rows(b).T


# -- bounded zooming search ----------------------------------------------------------------------

def grid_search(f, ranges, *, grid=41, rounds=4):
    """argmin of f over a box: a grid over `ranges`, then `rounds` times a finer grid of ±2
    cells around the best point, clipped to the box. 1-D or n-D (`ranges`: one (lo, hi) per
    coordinate; n-D grids have grid^n points, so keep n ≤ 2). A non-finite f counts as +inf.
    Returns (best point as a tuple of floats, f there).
    """
    if not ranges or any(not lo <= hi for lo, hi in ranges):
        raise ValueError(f"grid_search: expected ranges [(lo, hi), ...] with lo ≤ hi, got {ranges!r}")
    if grid < 2 or rounds < 0:
        raise ValueError(f"grid_search: expected grid ≥ 2 and rounds ≥ 0, got grid={grid}, rounds={rounds}")
    best, best_value = None, math.inf
    for _ in range(rounds + 1):
        for p in itertools.product(*(np.linspace(lo, hi, grid).tolist() for lo, hi in ranges)):
            value = float(f(p))                      # p: Python floats (a NumPy scalar would not mix with other backends)
            value = value if math.isfinite(value) else math.inf
            if best is None or value < best_value:
                best, best_value = p, value
        cell = [(hi - lo) / (grid - 1) for lo, hi in ranges]
        ranges = [(max(lo, c - 2 * w), min(hi, c + 2 * w)) for c, w, (lo, hi) in zip(best, cell, ranges)]
    return tuple(float(v) for v in best), best_value


__all__ = ["jacobian", "ntk", "flatten_params_jacobian", "unit_rows", "cosine", "cosine_matrix", "grid_search"]
