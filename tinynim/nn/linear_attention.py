"""Linear self-attention (LSA): attention with no softmax and no normalisation, as in
von Oswald et al. 2023 (arXiv:2212.07677) and Vladymyrov et al. 2024 (arXiv:2402.14180).

Forward (row convention; one head h; the residual is NOT included)::

    C    = x[:, :n]                      context rows: keys and values come from the first
                                         n = n_context tokens, queries from all T tokens
    r_h  = x Q_h                         (B, T, D)
    A_h  = (r_h Cᵀ) ⊙ M                  (B, T, n)   M: 1, or causal M[t, i] = [i ≤ t]
    out  = Σ_h (A_h C) P_h               (B, T, D)

with per-head D×D matrices (Q_h, P_h) given by the parametrisation ``form`` (table
:data:`FORMS`: θ ↦ (Q, P) and its pull-back (dQ, dP) ↦ dθ)::

    "full"      Wq, Wk, Wv (H, D, k), Wp (H, k, D)   Q = Wq Wkᵀ,  P = Wv Wp   (k = d_key)
    "merged"    Q, P (H, D, D)                       as stored
    "diagonal"  q_x, q_y, p_x, p_y (H,)              Q = diag(q_x I_d, q_y I_dy),
                                                     P = diag(p_x I_d, p_y I_dy)

(the DIAG form of arXiv:2402.14180; D = d + d_y, ``d_y`` the size of the trailing y block).
``causal=True`` and ``n_context`` combine: token t attends to context tokens i < n with
i ≤ t (the default n = T gives the usual causal mask, diagonal included).
``last_only=True`` returns the last token's output only, (B, 1, D).

Backward of the plain path, with G = dL/d(out), y_h = A_h C, and the matrix-product rule
d(XY) = dX Y + X dY read backwards::

    dP_h = Σ_b y_hᵀ G                    dy_h = G P_hᵀ
    dA_h = (dy_h Cᵀ) ⊙ M                 dr_h = dA_h C          dQ_h = Σ_b xᵀ dr_h
    dx   = Σ_h dr_h Q_hᵀ,  plus Σ_h (dA_hᵀ r_h + A_hᵀ dy_h) on the n context rows

and dθ is the form's pull-back of (dQ, dP): full dWq = dQ Wk, dWk = dQᵀ Wq, dWv = dP Wpᵀ,
dWp = Wvᵀ dP (product rule); merged the identity; diagonal the traces of the blocks,
dq_x = Σ_{i<d} dQ_ii, dq_y = Σ_{i≥d} dQ_ii (and the same for p).

Fast path (``fast=True``, the default; ``fast=False`` runs the plain path above, and a test
compares the two route by route). Structure autodiff of the textbook formula cannot see:

* ``last_only``: one query row, not T (scores C r with r = x_q Q_h: O(n·D) per head and
  task), for models whose loss reads one query token (in-context regression);
* low-rank full form (d_key < D): the factors, not the products: q = x Wq, k = C Wk,
  v = C Wv (k columns instead of D), with ``dWq = Σ xᵀ dq``, ``dWk = Σ Cᵀ dk``,
  ``dWv = Σ Cᵀ dv``, ``dWp = Σ yᵀ G`` and ``dx = dq Wqᵀ + (dk Wkᵀ + dv Wvᵀ)`` on the context;
* without a mask, ``A v = q (kᵀ v)``: the (k×k) matrix S = kᵀv costs (n + T)·k² instead of
  the T·n·2k of the (T×n) score matrix; :func:`attend` takes the cheaper route, and its
  backward is ``dq = dy Sᵀ, dS = qᵀ dy, dk = v dSᵀ, dv = k dS``;
* the per-head projections and the head sum are one GEMM each (:func:`project`,
  :func:`sum_heads`), and with the products the context C is shared by all heads;
* ``backward(..., need_dx=False)`` (the input is data, :mod:`tinynim.nn.base`) stops once the
  parameter gradients are known: no dx, and with the products (k = v = C) not even dk, dv.
  The plain path, the reference, always computes dx and drops it.

Caches: ``LSAPlainCache`` (plain path) and ``LSACache`` with its ``AttendCache`` (fast path),
fields below.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import array_api_compat

from tinynim.backend import matmul, namespace
from tinynim.nn.attention import causal_mask
from tinynim.nn.base import Layer
from tinynim.random import as_rng


# -- per-head helpers, shared by both paths ---------------------------------------------

def project(x, W):
    """Per-head projection as one GEMM: x (B, T, D), W (H, D, k) -> x W_h stacked (B, H, T, k)."""
    xp = array_api_compat.array_namespace(x, W)
    (B, T, D), (H, _, k) = x.shape, W.shape
    W2 = xp.reshape(xp.permute_dims(W, (1, 0, 2)), (D, H * k))      # [W_1 | ... | W_H]
    y = xp.reshape(xp.reshape(x, (B * T, D)) @ W2, (B, T, H, k))
    return xp.permute_dims(y, (0, 2, 1, 3))


def sum_heads(y, W):
    """Σ_h y_h W_h as one GEMM: y (B, H, T, k), W (H, k, m) -> (B, T, m)."""
    xp = array_api_compat.array_namespace(y, W)
    (B, H, T, k), m = y.shape, W.shape[2]
    y2 = xp.reshape(xp.permute_dims(y, (0, 2, 1, 3)), (B * T, H * k))
    return xp.reshape(y2 @ xp.reshape(W, (H * k, m)), (B, T, m))


def sum_outer(a, g):
    """Σ_b aᵀ g per head as one GEMM per head: a (B, H|1, T, k), g (B, H|1, T, m) -> (H, k, m)."""
    xp = array_api_compat.array_namespace(a, g)
    B, T = a.shape[0], a.shape[2]
    a2 = xp.reshape(xp.permute_dims(a, (1, 0, 2, 3)), (a.shape[1], B * T, a.shape[3]))
    g2 = xp.reshape(xp.permute_dims(g, (1, 0, 2, 3)), (g.shape[1], B * T, g.shape[3]))
    return a2.mT @ g2


def place_rows(a, start, T):
    """`a` (B, r, D) as rows start..start+r of a (B, T, D) array of zeros (no __setitem__)."""
    xp = array_api_compat.array_namespace(a)
    B, r, D = a.shape
    pad = lambda m: xp.zeros((B, m, D), dtype=a.dtype, device=array_api_compat.device(a))
    parts = ([pad(start)] if start else []) + [a] + ([pad(T - start - r)] if T > start + r else [])
    return xp.concat(parts, axis=1) if len(parts) > 1 else a


# -- parametrisations: θ -> (Q, P) and the pull-back (dQ, dP) -> dθ --------------------------

class Form(NamedTuple):
    """One parametrisation of the per-head matrices (Q_h, P_h), each (H, D, D)."""
    shapes: Callable      # (H, D, k, d_y) -> {name: shape}
    products: Callable    # (params, D, d_y) -> (Q, P)
    pullback: Callable    # (params, dQ, dP, D, d_y) -> {name: dθ}


def _blocks(like, D, d_y):
    """The block selectors E_x = diag(1_d, 0), E_y = diag(0, 1_dy) (D, D), like `like`."""
    xp = namespace(like)
    i = xp.arange(D, device=array_api_compat.device(like))
    eye = xp.astype(xp.expand_dims(i, 1) == xp.expand_dims(i, 0), like.dtype)
    in_y = xp.astype(i >= D - d_y, like.dtype)                                # (D,)
    return eye * (1 - in_y), eye * in_y


def _diagonal_products(p, D, d_y):
    Ex, Ey = _blocks(p["q_x"], D, d_y)
    col = lambda s: s[:, None, None]                                          # (H, 1, 1)
    return col(p["q_x"]) * Ex + col(p["q_y"]) * Ey, col(p["p_x"]) * Ex + col(p["p_y"]) * Ey


def _diagonal_pullback(p, dQ, dP, D, d_y):
    xp = namespace(dQ)
    Ex, Ey = _blocks(dQ, D, d_y)
    trace = lambda M, E: xp.sum(M * E, axis=(1, 2))                           # (H,)
    return {"q_x": trace(dQ, Ex), "q_y": trace(dQ, Ey), "p_x": trace(dP, Ex), "p_y": trace(dP, Ey)}


FORMS = {
    "full": Form(
        shapes=lambda H, D, k, d_y: {"Wq": (H, D, k), "Wk": (H, D, k), "Wv": (H, D, k), "Wp": (H, k, D)},
        products=lambda p, D, d_y: (p["Wq"] @ p["Wk"].mT, p["Wv"] @ p["Wp"]),
        pullback=lambda p, dQ, dP, D, d_y: {"Wq": dQ @ p["Wk"], "Wk": dQ.mT @ p["Wq"],
                                            "Wv": dP @ p["Wp"].mT, "Wp": p["Wv"].mT @ dP}),
    "merged": Form(
        shapes=lambda H, D, k, d_y: {"Q": (H, D, D), "P": (H, D, D)},
        products=lambda p, D, d_y: (p["Q"], p["P"]),
        pullback=lambda p, dQ, dP, D, d_y: {"Q": dQ, "P": dP}),
    "diagonal": Form(
        shapes=lambda H, D, k, d_y: {name: (H,) for name in ("q_x", "q_y", "p_x", "p_y")},
        products=_diagonal_products,
        pullback=_diagonal_pullback),
}


def merged_products(params, form, *, d_model=None, d_y=None):
    """Per-head (Q, P), each (H, D, D), of params in `form` (see :data:`FORMS`); the diagonal
    form needs the sizes ``d_model`` and ``d_y``."""
    if form == "diagonal" and (d_model is None or d_y is None):
        raise ValueError("merged_products: form 'diagonal' needs d_model and d_y")
    return FORMS[form].products(params, d_model, d_y)


# -- caches ---------------------------------------------------------------------------------

class LSAPlainCache(NamedTuple):
    x: object           # (B, T, D) input
    n: int              # number of context tokens
    Q: object           # (H, D, D)
    P: object           # (H, D, D)
    r: object           # (B, H, T, D) x Q_h
    A: object           # (B, H, T, n) masked scores
    y: object           # (B, H, T, D) A_h C
    mask: object        # (T, n) causal mask in x's dtype, or None
    last_only: bool


class AttendCache(NamedTuple):
    q: object           # (..., T, dk)
    k: object           # (..., n, dk)
    v: object           # (..., n, dv)
    SA: object          # S = kᵀv (..., dk, dv) when via_S, else the scores A (..., T, n)
    mask: object        # (T, n) or None
    via_S: bool         # which association was used


class LSACache(NamedTuple):
    x: object           # (B, T, D) input
    n: int              # number of context tokens
    xq: object          # (B, Tq, D) query rows (Tq = 1 with last_only)
    merged: bool        # ran through the products Q_h, P_h
    Wi: object          # (H, D, k) query map: Wq, or Q when merged
    Wo: object          # (H, k, D) output map: Wp, or P when merged
    y: object           # (B, H, Tq, k) attention output per head, before Wo
    attend: AttendCache


class LinearSelfAttention(Layer):
    """H heads of linear self-attention (see the module docstring), residual not included.

    params: by ``form``, see :data:`FORMS` (full: k = d_key, default D)
    forward(params, x, n_context=None, last_only=False):
        x (B, T, D) -> out (B, T, D), or (B, 1, D) for the last token only
    """

    def __init__(self, d_model: int, n_heads: int = 1, d_key: int | None = None, *,
                 causal: bool = False, form: str = "full", d_y: int | None = None,
                 init_std: float | None = None, fast: bool = True):
        self.check_sizes(d_model=d_model, n_heads=n_heads, **({} if d_key is None else {"d_key": d_key}))
        if form not in FORMS:
            raise ValueError(f"LinearSelfAttention: form must be one of {tuple(FORMS)}, got {form!r}")
        if form != "full" and d_key not in (None, d_model):
            raise ValueError(f"LinearSelfAttention: form={form!r} has d_key = d_model = {d_model}, got {d_key}")
        if (form == "diagonal") != (d_y is not None):
            raise ValueError(f"LinearSelfAttention: d_y (the y block of the diagonal form) is needed "
                             f"exactly for form='diagonal'; got form={form!r}, d_y={d_y!r}")
        if d_y is not None:
            self.check_sizes(d_y=d_y)
            if d_y >= d_model:
                raise ValueError(f"LinearSelfAttention: d_y must be < d_model = {d_model}, got {d_y}")
        self.d_model, self.n_heads, self.causal, self.form, self.d_y = d_model, n_heads, causal, form, d_y
        self.d_key = d_model if d_key is None else d_key
        self.init_std = 1.0 / math.sqrt(d_model) if init_std is None else init_std
        self.fast = fast

    @property
    def param_shapes(self) -> dict:
        return FORMS[self.form].shapes(self.n_heads, self.d_model, self.d_key, self.d_y)

    def init(self, rng, *, dtype=None, backend=None):
        """Every entry ~ truncated normal (±2 std), std = init_std (default 1/√d_model).

        The P1 paper code uses std ≈ 0.0135 (VarianceScaling(0.002) at fan-in 11).
        """
        rng = as_rng(rng)
        return {name: rng.truncated_normal(shape, std=self.init_std, dtype=dtype, backend=backend)
                for name, shape in self.param_shapes.items()}

    def products(self, params):
        """(Q, P), each (H, D, D): this layer's params through its form's map."""
        return FORMS[self.form].products(params, self.d_model, self.d_y)

    def pullback(self, params, dQ, dP):
        """dθ (params' keys) from dL/dQ and dL/dP, each (H, D, D)."""
        return FORMS[self.form].pullback(params, dQ, dP, self.d_model, self.d_y)

    def _n(self, x, n_context):
        T = x.shape[1]
        n = T if n_context is None else n_context
        if not 1 <= n <= T:
            raise ValueError(f"{self.name}: n_context must be in [1, {T}] for T = {T} tokens, got {n_context}")
        return n

    def _mask(self, x, T, n):
        """The causal mask (T, n) in x's dtype, or None."""
        if not self.causal:
            return None
        xp = namespace(x)
        return xp.astype(causal_mask(xp, T, n, array_api_compat.device(x)), x.dtype)

    def forward(self, params, x, n_context=None, last_only=False):
        self.check_input(x, ndim=3, last=self.d_model, min_steps=1)
        self.check_params(params, x)
        n = self._n(x, n_context)
        if self.fast:
            return self._forward_fast(params, x, n, last_only)
        return self._forward_plain(params, x, n, last_only)

    def backward(self, params, cache, dout, *, need_dx=True):
        if self.fast:
            return self._backward_fast(params, cache, dout, need_dx)
        dx, grads = self._backward_plain(params, cache, dout)        # the reference computes dx
        return (dx if need_dx else None), grads

    # -- the plain path: the formula of the module docstring, every form through (Q, P) ----
    def _forward_plain(self, params, x, n, last_only):
        xp = namespace(x)
        T = x.shape[1]
        Q, P = self.products(params)                                 # (H, D, D)
        C = xp.expand_dims(x[:, :n, :], axis=1)                      # (B, 1, n, D)
        mask = self._mask(x, T, n)
        r = project(x, Q)                                            # (B, H, T, D)
        A = matmul(r, C.mT)                                          # (B, H, T, n)
        if mask is not None:
            A = A * mask
        y = A @ C                                                    # (B, H, T, D)
        out = sum_heads(y, P)                                        # (B, T, D)
        cache = LSAPlainCache(x, n, Q, P, r, A, y, mask, last_only)
        return (out[:, T - 1:, :] if last_only else out), cache

    def _backward_plain(self, params, cache, dout):
        x, n, Q, P, r, A, y, mask, last_only = cache
        B, T, D = x.shape
        self.check_dout(dout, (B, 1, D) if last_only else (B, T, D))
        # exercise: linear_self_attention
        xp = namespace(dout)
        G = place_rows(dout, T - 1, T) if last_only else dout        # (B, T, D)
        C = xp.expand_dims(x[:, :n, :], axis=1)                      # (B, 1, n, D)
        dP = sum_outer(y, xp.expand_dims(G, axis=1))                 # (H, D, D)
        dy = project(G, P.mT)                                        # (B, H, T, D)
        dA = matmul(dy, C.mT)                                        # (B, H, T, n)
        if mask is not None:
            dA = dA * mask
        dr = dA @ C                                                  # (B, H, T, D)
        dQ = sum_outer(xp.expand_dims(x, axis=1), dr)                # (H, D, D)
        dC = xp.sum(dA.mT @ r + A.mT @ dy, axis=1)                   # (B, n, D)
        dx = sum_heads(dr, Q.mT) + place_rows(dC, 0, T)              # (B, T, D)
        return dx, self.pullback(params, dQ, dP)
        # end exercise

    # -- the fast path: one query row, low-rank factors, the S = kᵀv association ----------
    def _forward_fast(self, params, x, n, last_only):
        xp = namespace(x)
        T = x.shape[1]
        C = x[:, :n, :]                                              # (B, n, D)
        xq = x[:, T - 1:, :] if last_only else x                     # query rows (B, Tq, D)
        merged = self.form != "full" or last_only or self.d_key >= self.d_model   # products
        if merged:
            Wi, Wo = self.products(params)                           # (H, D, D)
            k = v = xp.expand_dims(C, axis=1)                        # (B, 1, n, D) for all heads
        else:
            Wi, Wo = params["Wq"], params["Wp"]                      # (H, D, k), (H, k, D)
            k, v = project(C, params["Wk"]), project(C, params["Wv"])   # (B, H, n, k)
        q = project(xq, Wi)                                          # (B, H, Tq, k)
        mask = None if last_only else self._mask(x, T, n)            # the last row sees all keys
        y, acache = attend(q, k, v, mask)                            # (B, H, Tq, k)
        return sum_heads(y, Wo), LSACache(x, n, xq, merged, Wi, Wo, y, acache)    # (B, Tq, D)

    def _backward_fast(self, params, cache, dout, need_dx=True):
        x, n, xq, merged, Wi, Wo, y, acache = cache
        self.check_dout(dout, tuple(xq.shape))
        xp = namespace(dout)
        T = x.shape[1]
        # merged: k = v = the context rows themselves, so dk, dv feed dx only
        need_kv = need_dx or not merged
        dq, dk, dv = attend_backward(acache, project(dout, Wo.mT), need_kv=need_kv)   # dy = G Woᵀ
        xq4 = xp.expand_dims(xq, axis=1)                             # (B, 1, Tq, D)
        G = xp.expand_dims(dout, axis=1)                             # (B, 1, Tq, D)
        if merged:
            grads = self.pullback(params, sum_outer(xq4, dq), sum_outer(y, G))
        else:
            C = xp.expand_dims(x[:, :n, :], axis=1)                  # (B, 1, n, D)
            grads = {"Wq": sum_outer(xq4, dq), "Wk": sum_outer(C, dk), "Wv": sum_outer(C, dv),
                     "Wp": sum_outer(y, G)}
        if not need_dx:                                              # x is data: stop here
            return None, grads
        dxq = sum_heads(dq, Wi.mT)                                   # (B, Tq, D)
        if merged:
            dC = xp.sum(dk + dv, axis=1)                             # (B, n, D)
        else:
            dC = sum_heads(dk, params["Wk"].mT) + sum_heads(dv, params["Wv"].mT)
        if n + dxq.shape[1] == T:                                    # context rows, then queries
            return xp.concat([dC, dxq], axis=1), grads
        return place_rows(dxq, T - dxq.shape[1], T) + place_rows(dC, 0, T), grads

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        x = lambda T=5: rng.normal((2, T, 4))
        lsa = LinearSelfAttention
        return {"full_causal_context": (lsa(4, 2, 3, causal=True), x(), {"n_context": 4}),
                "full_scores": (lsa(4, 2, 3), x(2), {}),
                "full_kv_state": (lsa(4, 2, 2), x(6), {"n_context": 5}),
                "full_products": (lsa(4, 2, 4, causal=True), x(), {}),
                "merged": (lsa(4, 2, form="merged"), x(), {"n_context": 4}),
                "diagonal": (lsa(4, 2, form="diagonal", d_y=1), x(), {"n_context": 4}),
                "last_only": (lsa(4, 2, 3, causal=True), x(), {"n_context": 4, "last_only": True}),
                "plain_causal": (lsa(4, 2, 3, causal=True, fast=False), x(), {"n_context": 4}),
                "plain_last_only": (lsa(4, 2, form="diagonal", d_y=2, fast=False), x(),
                                    {"n_context": 3, "last_only": True})}


# -- the fast path's attention core: scores or the S = kᵀv association, whichever is cheaper --

def attend(q, k, v, mask=None):
    """y = ((q kᵀ) ⊙ mask) v, without a mask reassociated as q (kᵀ v) when that is cheaper.

    q (..., T, dk), k (..., n, dk), v (..., n, dv), mask (T, n) or None -> y (..., T, dv).
    Leading dims broadcast (e.g. k, v shared by all heads). Returns (y, cache).
    """
    (T, dk), (n, dv) = q.shape[-2:], v.shape[-2:]
    if mask is None and (n + T) * dk * dv <= T * n * (dk + dv):
        S = k.mT @ v                                   # (..., dk, dv)
        return q @ S, AttendCache(q, k, v, S, None, True)
    A = matmul(q, k.mT)                                # (..., T, n)
    if mask is not None:
        A = A * mask
    return A @ v, AttendCache(q, k, v, A, mask, False)


def attend_backward(cache, dy, *, need_kv=True):
    """(dq, dk, dv) of :func:`attend`; dk, dv are summed down to k's and v's broadcast shape.
    ``need_kv=False`` returns (dq, None, None) and skips their products."""
    q, k, v, SA, mask, via_S = cache
    xp = array_api_compat.array_namespace(dy)
    if via_S:
        dq = matmul(dy, SA.mT)                         # (..., T, dk)
        if not need_kv:
            return dq, None, None
        dS = _sum_to(xp, q.mT @ dy, SA.shape)          # (..., dk, dv)
        return dq, matmul(v, dS.mT), k @ dS
    dA = matmul(dy, v.mT)                              # (..., T, n)
    if mask is not None:
        dA = dA * mask
    if not need_kv:
        return dA @ k, None, None
    return dA @ k, _sum_to(xp, dA.mT @ q, k.shape), _sum_to(xp, SA.mT @ dy, v.shape)


def _sum_to(xp, a, shape):
    """Sum the broadcast dims of `a` back to `shape` (same rank)."""
    axes = tuple(i for i, (m, n) in enumerate(zip(a.shape, shape)) if n == 1 and m != 1)
    return xp.sum(a, axis=axes, keepdims=True) if axes else a
