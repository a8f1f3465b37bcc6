"""Linear self-attention (LSA): attention with no softmax and no normalisation.

Forward (row convention; one head h; the residual is NOT included)::

    C    = x[:, :n]                      context rows: keys and values come from the first
                                         n = n_context tokens, queries from all T tokens
    q    = x Wq_h,  k = C Wk_h,  v = C Wv_h                    # (B, T, k), (B, n, k), (B, n, k)
    A    = (q kᵀ) ⊙ M                    M: 1 everywhere, or causal M[t, i] = [i ≤ t]
    out  = Σ_h (A v) Wp_h                                      # (B, T, D)

``form="merged"`` multiplies the four matrices into two per head (spec §1.2): with
Q_h = Wq Wkᵀ and P_h = Wv Wp (both D×D) the layer is ``out = Σ_h ((x Q_h Cᵀ) ⊙ M) C P_h``,
i.e. the ``full`` form with q = x Q_h, k = v = C and Wp = P_h. Both forms share one
attention core, :func:`attend`.

Structure autodiff of the textbook formula cannot see:

* without a mask, ``A v = q (kᵀ v)``: the (k×k) matrix S = kᵀv costs (n + T)·k² instead
  of the T·n·2k of the (T×n) score matrix; :func:`attend` takes the cheaper route;
* the D×D products Q_h = Wq Wkᵀ, P_h = Wv Wp replace the factors when they are no bigger
  (d_key ≥ D): the full form then runs as the merged one (no key or value projection of
  the context, S = CᵀC shared by all heads), and the factor gradients follow by the product
  rule dWq = dQ Wk, dWk = dQᵀ Wq, dWv = dP Wpᵀ, dWp = Wvᵀ dP. The 4-matrix backward below
  runs for low-rank heads (d_key < D);
* ``last_only=True`` computes the last token's output only, ``out`` (B, 1, D), for models
  whose loss reads one query token (in-context regression): one query row, not T, always
  through the products (scores C r with r = x_q Q_h: O(n·D) per head and task);
* the per-head projections are one GEMM each (:func:`project`, :func:`sum_heads`).

``causal=True`` and ``n_context`` combine: token t attends to context tokens i < n with
i ≤ t (the default n = T gives the usual causal mask, diagonal included).

Backward. Given G = dL/d(out) (B, T, D) and dy = G Wp_hᵀ (the gradient of y = A v):

    dWp_h = Σ_b yᵀ G
    via S:       dq = dy Sᵀ,   dS = qᵀ dy,   dk = v dSᵀ,   dv = k dS
    via A:       dA = (dy vᵀ) ⊙ M,   dq = dA k,   dk = dAᵀ q,   dv = Aᵀ dy
    dWq_h = Σ_b xᵀ dq,   dWk_h = Σ_b Cᵀ dk,   dWv_h = Σ_b Cᵀ dv
    dx = Σ_h dq Wq_hᵀ,  plus Σ_h (dk Wk_hᵀ + dv Wv_hᵀ) on the first n rows

(merged: dQ_h = Σ_b xᵀ dq, dP_h = Σ_b yᵀ G, and dk, dv land on the context rows directly).
Every line is the matrix-product rule d(XY) = dX Y + X dY read backwards.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat

from tinynim.backend import namespace
from tinynim.nn.attention import causal_mask
from tinynim.nn.base import Layer
from tinynim.random import as_rng

FORMS = ("full", "merged")


def attend(q, k, v, mask=None):
    """y = ((q kᵀ) ⊙ mask) v, without a mask reassociated as q (kᵀ v) when that is cheaper.

    q (..., T, dk), k (..., n, dk), v (..., n, dv), mask (T, n) or None -> y (..., T, dv).
    Leading dims broadcast (e.g. k, v shared by all heads). Returns (y, cache).
    """
    (T, dk), (n, dv) = q.shape[-2:], v.shape[-2:]
    if mask is None and (n + T) * dk * dv <= T * n * (dk + dv):
        S = k.mT @ v                                   # (..., dk, dv)
        return q @ S, AttendCache(q, k, v, S, None, True)
    A = q @ k.mT                                       # (..., T, n)
    if mask is not None:
        A = A * mask
    return A @ v, AttendCache(q, k, v, A, mask, False)


def attend_backward(cache, dy):
    """(dq, dk, dv) of :func:`attend`; dk, dv are summed down to k's and v's broadcast shape."""
    q, k, v, SA, mask, via_S = cache
    xp = array_api_compat.array_namespace(dy)
    if via_S:
        dq = dy @ SA.mT                                # (..., T, dk)
        dS = _sum_to(xp, q.mT @ dy, SA.shape)          # (..., dk, dv)
        return dq, v @ dS.mT, k @ dS
    dA = dy @ v.mT                                     # (..., T, n)
    if mask is not None:
        dA = dA * mask
    return dA @ k, _sum_to(xp, dA.mT @ q, k.shape), _sum_to(xp, SA.mT @ dy, v.shape)


def _sum_to(xp, a, shape):
    """Sum the broadcast dims of `a` back to `shape` (same rank)."""
    axes = tuple(i for i, (m, n) in enumerate(zip(a.shape, shape)) if n == 1 and m != 1)
    return xp.sum(a, axis=axes, keepdims=True) if axes else a


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


def merged_products(params, form):
    """Per-head (Q, P) = (Wq Wkᵀ, Wv Wp) of full-form params (H, D, D); merged: as stored."""
    if form == "merged":
        return params["Q"], params["P"]
    return params["Wq"] @ params["Wk"].mT, params["Wv"] @ params["Wp"]


def factor_grads(params, form, dQ, dP):
    """Gradients w.r.t. the stored params from those w.r.t. Q = Wq Wkᵀ and P = Wv Wp:
    dWq = dQ Wk, dWk = dQᵀ Wq, dWv = dP Wpᵀ, dWp = Wvᵀ dP (product rule)."""
    if form == "merged":
        return {"Q": dQ, "P": dP}
    return {"Wq": dQ @ params["Wk"], "Wk": dQ.mT @ params["Wq"],
            "Wv": dP @ params["Wp"].mT, "Wp": params["Wv"].mT @ dP}


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

    params (full):   Wq, Wk, Wv (H, D, k), Wp (H, k, D)       k = d_key (default D)
    params (merged): Q, P (H, D, D)
    forward(params, x, n_context=None, last_only=False):
        x (B, T, D) -> out (B, T, D), or (B, 1, D) for the last token only
    """

    def __init__(self, d_model: int, n_heads: int = 1, d_key: int | None = None, *,
                 causal: bool = False, form: str = "full", init_std: float | None = None):
        self.check_sizes(d_model=d_model, n_heads=n_heads, **({} if d_key is None else {"d_key": d_key}))
        if form not in FORMS:
            raise ValueError(f"LinearSelfAttention: form must be one of {FORMS}, got {form!r}")
        if form == "merged" and d_key not in (None, d_model):
            raise ValueError(f"LinearSelfAttention: form='merged' has d_key = d_model = {d_model}, got {d_key}")
        self.d_model, self.n_heads, self.causal, self.form = d_model, n_heads, causal, form
        self.d_key = d_model if d_key is None else d_key
        self.init_std = 1.0 / math.sqrt(d_model) if init_std is None else init_std

    @property
    def param_shapes(self) -> dict:
        H, D, k = self.n_heads, self.d_model, self.d_key
        if self.form == "merged":
            return {"Q": (H, D, D), "P": (H, D, D)}
        return {"Wq": (H, D, k), "Wk": (H, D, k), "Wv": (H, D, k), "Wp": (H, k, D)}

    def init(self, rng, *, dtype=None, backend=None):
        """Every matrix ~ truncated normal (±2 std), std = init_std (default 1/√d_model).

        The P1 paper code uses std ≈ 0.0135 (VarianceScaling(0.002) at fan-in 11).
        """
        rng = as_rng(rng)
        return {name: rng.truncated_normal(shape, std=self.init_std, dtype=dtype, backend=backend)
                for name, shape in self.param_shapes.items()}

    def _n(self, x, n_context):
        T = x.shape[1]
        n = T if n_context is None else n_context
        if not 1 <= n <= T:
            raise ValueError(f"{self.name}: n_context must be in [1, {T}] for T = {T} tokens, got {n_context}")
        return n

    def forward(self, params, x, n_context=None, last_only=False):
        xp = self.check_input(x, ndim=3, last=self.d_model, min_steps=1)
        self.check_params(params, x)
        T, n = x.shape[1], self._n(x, n_context)
        C = x[:, :n, :]                                              # (B, n, D)
        xq = x[:, T - 1:, :] if last_only else x                     # query rows (B, Tq, D)
        merged = self.form == "merged" or last_only or self.d_key >= self.d_model   # products
        if merged:
            Wi, Wo = merged_products(params, self.form)              # (H, D, D)
            Cb = xp.expand_dims(C, axis=1)                           # (B, 1, n, D) for all heads
            k = v = Cb
        else:
            Wi, Wo = params["Wq"], params["Wp"]                      # (H, D, k), (H, k, D)
            k, v = project(C, params["Wk"]), project(C, params["Wv"])   # (B, H, n, k)
        q = project(xq, Wi)                                          # (B, H, Tq, k)
        mask = None                                                  # the last row sees all keys
        if self.causal and not last_only:
            mask = xp.astype(causal_mask(xp, T, n, array_api_compat.device(x)), x.dtype)
        y, acache = attend(q, k, v, mask)                            # (B, H, Tq, k)
        return sum_heads(y, Wo), LSACache(x, n, xq, merged, Wi, Wo, y, acache)    # (B, Tq, D)

    def backward(self, params, cache, dout):
        x, n, xq, merged, Wi, Wo, y, acache = cache
        self.check_dout(dout, tuple(xq.shape))
        xp = namespace(dout)
        T = x.shape[1]
        dq, dk, dv = attend_backward(acache, project(dout, Wo.mT))   # dy = G Woᵀ (B, H, Tq, k)
        xq4 = xp.expand_dims(xq, axis=1)                             # (B, 1, Tq, D)
        G = xp.expand_dims(dout, axis=1)                             # (B, 1, Tq, D)
        dxq = sum_heads(dq, Wi.mT)                                 # (B, Tq, D)
        if merged:
            dC = xp.sum(dk + dv, axis=1)                             # (B, n, D)
            grads = factor_grads(params, self.form, sum_outer(xq4, dq), sum_outer(y, G))
        else:
            C = xp.expand_dims(x[:, :n, :], axis=1)                  # (B, 1, n, D)
            grads = {"Wq": sum_outer(xq4, dq), "Wk": sum_outer(C, dk), "Wv": sum_outer(C, dv),
                     "Wp": sum_outer(y, G)}
            dC = sum_heads(dk, params["Wk"].mT) + sum_heads(dv, params["Wv"].mT)
        if n + dxq.shape[1] == T:                                    # context rows, then queries
            return xp.concat([dC, dxq], axis=1), grads
        return place_rows(dxq, T - dxq.shape[1], T) + place_rows(dC, 0, T), grads

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        x = lambda T=5: rng.normal((2, T, 4))
        return {"full_causal_context": (LinearSelfAttention(4, 2, 3, causal=True), x(), {"n_context": 4}),
                "full_scores": (LinearSelfAttention(4, 2, 3), x(2), {}),
                "full_kv_state": (LinearSelfAttention(4, 2, 2), x(6), {"n_context": 5}),
                "full_products": (LinearSelfAttention(4, 2, 4, causal=True), x(), {}),
                "merged": (LinearSelfAttention(4, 2, form="merged"), x(), {"n_context": 4}),
                "last_only": (LinearSelfAttention(4, 2, 3, causal=True), x(), {"n_context": 4, "last_only": True})}
