"""Generic analysis of trained models: Jacobians from the layers' own backward, one cosine
alignment metric, and one bounded zooming search for tuning the step sizes of baselines.

Jacobians without autodiff. A layer's ``backward(params, cache, dout)`` returns the
vector–Jacobian products dx = doutᵀ ∂out/∂x and dθ = doutᵀ ∂out/∂θ. With dout = e_k (one-hot
in output coordinate k) they are row k of the Jacobian. For layers that treat the examples
of a batch independently (every layer here but the batch-coupled ones, e.g. a batch norm),
row k of every example comes from ONE backward call: the cotangent is e_k in every example.

* :func:`jacobian` w.r.t. the input stacks the K = prod(output features) one-hot cotangents
  along the batch axis: the batch is repeated K times, one forward and one backward give the
  whole (B, *out, *in) Jacobian.
* :func:`jacobian` w.r.t. the parameters cannot do that: ``grads`` are summed over the batch,
  so per-example rows need one backward per example (and per output coordinate). This is what
  the neural tangent kernel Θ(x, x') = J(x) J(x')ᵀ needs.
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


def jacobian(layer, params, x, *, wrt="input", kwargs=None):
    """Per-example Jacobian of ``layer.forward(params, x, **kwargs)`` from its own backward.

    x: (B, *in) array; out: (B, *out).
    wrt="input":  (B, *out, *in), J[b, k..., i...] = ∂out[b, k...]/∂x[b, i...]; one forward
                  and one backward on the batch repeated K = prod(out) times.
    wrt="params": a tree like `params` whose leaves have shape (B, *out, *leaf.shape),
                  J[b, k...] = ∂out[b, k...]/∂θ; B·K backward calls (grads sum over a batch).
    Both assume the layer treats examples independently (no coupling across the batch).
    """
    if wrt not in WRT:
        raise ValueError(f"jacobian: wrt must be one of {WRT}, got {wrt!r}")
    if isinstance(x, tuple) or not hasattr(x, "shape"):
        raise TypeError(f"jacobian: expected x as one array (B, ...), got {type(x).__name__}")
    kwargs = kwargs or {}
    xp = namespace(x)
    B = x.shape[0]
    out_shape = tuple(layer.forward(params, x[:1, ...], **kwargs)[0].shape[1:])
    K = math.prod(out_shape)
    if wrt == "input":
        xs = xp.concat([x] * K, axis=0)                                   # (K·B, *in), k-major
        out, cache = layer.forward(params, xs, **kwargs)
        E = xp.reshape(one_hot_rows(xp, K, out), (K, 1, K))               # e_k for each block k
        dout = xp.reshape(xp.broadcast_to(E, (K, B, K)), (K * B,) + out_shape)
        dx, _ = layer.backward(params, cache, dout)                       # (K·B, *in)
        J = xp.reshape(dx, (K, B) + tuple(x.shape[1:]))
        J = xp.permute_dims(J, (1, 0) + tuple(range(2, J.ndim)))          # (B, K, *in)
        return xp.reshape(J, (B,) + out_shape + tuple(x.shape[1:]))
    rows = []                                                             # per example b
    for b in range(B):
        out, cache = layer.forward(params, x[b:b + 1, ...], **kwargs)
        E = one_hot_rows(xp, K, out)
        per_k = [layer.backward(params, cache, xp.reshape(E[k, :], (1,) + out_shape))[1] for k in range(K)]
        rows.append(tree_map(lambda *g: xp.stack(g, axis=0), *per_k))    # leaves (K, *leaf)
    stacked = tree_map(lambda *g: xp.stack(g, axis=0), *rows)             # leaves (B, K, *leaf)
    return tree_map(lambda g: xp.reshape(g, (B,) + out_shape + tuple(g.shape[2:])), stacked)


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


__all__ = ["jacobian", "flatten_params_jacobian", "unit_rows", "cosine", "cosine_matrix", "grid_search"]
