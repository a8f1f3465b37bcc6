"""The mesa layer: causal attention that solves a ridge regression in its forward pass
(von Oswald et al. 2023, "Uncovering mesa-optimization algorithms in Transformers",
arXiv:2309.05858).

Forward, one head h (column vectors; q_t, k_t, v_t are rows t of x Wq, x Wk, x Wv, each of
size k = d_key; the residual is NOT included, as in ``LinearSelfAttention``)::

    Φ̂_t   = argmin_Φ ½ Σ_{i≤t} ‖v_i − Φ k_i‖² + ‖Φ‖²_F / (2λ)      the mesa-objective
          = G_t H_t⁻¹,   G_t = Σ_{i≤t} v_i k_iᵀ,   H_t = Σ_{i≤t} k_i k_iᵀ + I/λ
    u_t   = H_t⁻¹ q_t                      one linear solve per position (k×k, SPD)
    y_t   = Φ̂_t q_t = G_t u_t = Σ_{i≤t} v_i (k_iᵀ u_t)
    out   = Σ_h y_h Wp_h                   (B, T, D)

So ``y = ((U Kᵀ) ⊙ M) V`` with M[t, i] = [i ≤ t]: causal linear attention whose queries are
replaced by u_t = H_t⁻¹ q_t. The layer is causal by definition (position t regresses on the
pairs i ≤ t); ``causal=False`` is refused. λ > 0, one per head, sets the penalty ‖Φ‖²/(2λ):
λ → ∞ gives ordinary least squares once t ≥ k, λ → 0 gives λ G_t q_t (linear attention
scaled by λ).

**Positive λ.** ``params["log_lam"]`` holds ρ = log λ (H,), and λ = e^ρ: every real ρ is a
valid regulariser, so no value of the parameter can make H_t singular or indefinite and no
clipping or projection is needed (a λ ≤ 0 cannot be passed at all). 1/λ = e^{−ρ} is computed
directly. Log space suits a scale: training moves λ by factors (1 → 2.5 in the paper's
setting) and a gradient step on ρ changes λ by a factor. ``lam_init`` sets λ at ``init``.

Backward. With g_t = ∂L/∂y_t (= dout Wp_hᵀ per head), differentiate y_t = G_t H_t⁻¹ q_t::

    a_t = G_tᵀ g_t = Σ_{i≤t} k_i (v_iᵀ g_t)        ∂L/∂u_t
    b_t = H_t⁻¹ a_t                                 (H_t symmetric)
    ∂L/∂q_t = b_t                                   (u_t = H_t⁻¹ q_t is linear in q_t)
    ∂L/∂G_t = g_t u_tᵀ                              (y_t = G_t u_t)
    ∂L/∂H_t = −b_t u_tᵀ                             (d(H⁻¹) = −H⁻¹ dH H⁻¹)

and G_t, H_t are prefix sums of v_i k_iᵀ and k_i k_iᵀ, so pair i collects the adjoints of
every t ≥ i. With the reverse prefix sums Ĝ_i = Σ_{t≥i} g_t u_tᵀ, Ĥ_i = −Σ_{t≥i} b_t u_tᵀ::

    ∂L/∂v_i = Ĝ_i k_i,    ∂L/∂k_i = Ĝ_iᵀ v_i + (Ĥ_i + Ĥ_iᵀ) k_i
    ∂L/∂(1/λ) = Σ_t tr ∂L/∂H_t = −Σ_t b_tᵀ u_t,   ∂L/∂ρ = (−1/λ) ∂L/∂(1/λ) = Σ_t b_tᵀ u_t / λ

(summed over the batch), then the projections as in any attention layer: dWq = Σ_b xᵀ dq,
dWk = Σ_b xᵀ dk, dWv = Σ_b xᵀ dv, dWp = Σ_b yᵀ dout, dx = dq Wqᵀ + dk Wkᵀ + dv Wvᵀ (summed
over heads). The same in score form (A1[t, i] = M ⊙ u_tᵀk_i, S1[t, i] = M ⊙ g_tᵀv_i,
A2[t, i] = M ⊙ b_tᵀk_i; rows stacked into U, B, G): a = S1 K, dV = A1ᵀ G and
dK = S1ᵀ U − A1ᵀ B − A2ᵀ U, because Σ_{t≥i} b_t (u_tᵀ k_i) is row i of A1ᵀ B, and so on.

Two paths, tested equal (``fast=False`` reads first below):

* **plain** (``fast=False``): the formulas above as written: G_t and H_t as prefix sums
  (``cumulative_sum``), u and b by ``linalg.solve`` on H_t, the adjoints Ĝ, Ĥ as reverse
  prefix sums. Its cache holds H_t and G_t: 2·T·k² numbers per head and sequence.
* **score form** (``fast=True``, the default): y = ((U Kᵀ) ⊙ M) V and the score-form backward.
  Its cache holds x, q, k, v, u, y only, O(T·(D + k)) per sequence (no T·k² term): the
  backward rebuilds H_t by the same prefix sum (a transient) to solve for b; its other
  transients are the three (T×T) score matrices per head, built one at a time (each masked
  in place, and dropped once its terms of dK and dV are added: at most two are alive). Storing every
  H_t or R_t = H_t⁻¹ costs T·k² per head and sequence, which dominates when k is large (the
  paper's k = 20: 400 numbers per position against 20). The official code instead keeps
  only R_T and walks back by the inverse Sherman–Morrison update, which divides by
  1 − k_tᵀR_t k_t and can cancel catastrophically; rebuilding H_t is exact.

:func:`sherman_morrison_inverses` gives every R_t = H_t⁻¹ by the rank-one recursion
(R_0 = λI, R_t = R_{t−1} − R_{t−1}k_t k_tᵀR_{t−1} / (1 + k_tᵀR_{t−1}k_t)), which is how the
paper computes the layer; here it is for teaching and for the tests (one small
matrix product per step in a Python loop, where ``linalg.solve`` is one batched call).

Caches: ``MesaPlainCache(x, q, k, v, lam, H, G, u, y)`` and ``MesaCache(x, q, k, v, lam, u,
y)``, shapes in the field comments.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat

import numpy as np

from tinynim.backend import asarray, namespace
from tinynim.nn.attention import causal_mask
from tinynim.nn.base import Layer
from tinynim.nn.linear_attention import project, sum_heads, sum_outer
from tinynim.random import as_rng


def sherman_morrison_inverses(k, lam):
    """Every R_t = (Σ_{i≤t} k_i k_iᵀ + I/λ)⁻¹ by the rank-one (Sherman–Morrison) recursion.

    k: (..., T, d) keys; lam: a positive float or an array broadcastable to k.shape[:-2]
    (e.g. one λ per head, (H,) for k (B, H, T, d)). Returns R (..., T, d, d).
    R_0 = λI; R_t = R_{t−1} − (R_{t−1}k_t)(R_{t−1}k_t)ᵀ / (1 + k_tᵀR_{t−1}k_t) (R symmetric).
    """
    xp = namespace(k)
    if k.ndim < 2:
        raise ValueError(f"sherman_morrison_inverses: expected k of shape (..., T, d), got shape {tuple(k.shape)}")
    d = k.shape[-1]
    eye = xp.eye(d, dtype=k.dtype, device=array_api_compat.device(k))
    lam = xp.asarray(lam, dtype=k.dtype, device=array_api_compat.device(k))
    R = xp.broadcast_to(lam[..., None, None] * eye, tuple(k.shape[:-2]) + (d, d))   # R_0 = λI
    inverses = []
    for t in range(k.shape[-2]):
        Rk = R @ k[..., t, :, None]                                    # (..., d, 1)
        R = R - (Rk @ Rk.mT) / (1.0 + k[..., t, None, :] @ Rk)
        inverses.append(R)
    return xp.stack(inverses, axis=-3)


def reverse_cumsum(a, axis):
    """Σ_{j≥i} a_j along `axis` (a prefix sum run backwards)."""
    xp = namespace(a)
    return xp.flip(xp.cumulative_sum(xp.flip(a, axis=axis), axis=axis), axis=axis)


def key_covariances(k, inv_lam):
    """H_t = Σ_{i≤t} k_i k_iᵀ + I/λ for every t: k (B, H, T, d), inv_lam (H,) -> (B, H, T, d, d)."""
    xp = namespace(k)
    d = k.shape[-1]
    eye = xp.eye(d, dtype=k.dtype, device=array_api_compat.device(k))
    return xp.cumulative_sum(k[..., :, None] * k[..., None, :], axis=2) + inv_lam[:, None, None, None] * eye


def solve_each(H, r):
    """H_t⁻¹ r_t for every position: H (..., d, d), r (..., d) -> (..., d)."""
    return namespace(H).linalg.solve(H, r[..., None])[..., 0]


def _masked_in_place(a, M):
    """a ⊙ M, multiplied into `a`, a fresh product of the caller's (no second T×T array)."""
    a *= M
    return a


class MesaPlainCache(NamedTuple):
    x: object           # (B, T, D) input
    q: object           # (B, H, T, k) queries
    k: object           # (B, H, T, k) keys
    v: object           # (B, H, T, k) values
    lam: object         # (H,) λ
    H: object           # (B, H, T, k, k) H_t
    G: object           # (B, H, T, k, k) G_t
    u: object           # (B, H, T, k) H_t⁻¹ q_t
    y: object           # (B, H, T, k) per-head output before Wp


class MesaCache(NamedTuple):
    x: object           # (B, T, D) input
    q: object           # (B, H, T, k)
    k: object           # (B, H, T, k)
    v: object           # (B, H, T, k)
    lam: object         # (H,) λ
    u: object           # (B, H, T, k) H_t⁻¹ q_t
    y: object           # (B, H, T, k)


class MesaLayer(Layer):
    """H heads of the mesa layer (module docstring), causal, residual not included.

    params: Wq, Wk, Wv (H, D, k), Wp (H, k, D), log_lam (H,) with λ = exp(log_lam) > 0
    forward(params, x): x (B, T, D) -> out (B, T, D)
    Init: projections ~ truncated normal (±2 std), std = init_std (default 1/√d_model);
    λ = lam_init in every head.
    """

    def __init__(self, d_model: int, n_heads: int = 1, d_key: int | None = None, *,
                 lam_init: float = 1.0, init_std: float | None = None, causal: bool = True,
                 fast: bool = True):
        self.check_sizes(d_model=d_model, n_heads=n_heads, **({} if d_key is None else {"d_key": d_key}))
        if causal is not True:
            raise ValueError(f"MesaLayer: the mesa layer is causal by definition (position t solves "
                             f"the regression over tokens i ≤ t); expected causal=True, got {causal!r}")
        if not (isinstance(lam_init, (int, float)) and math.isfinite(lam_init) and lam_init > 0):
            raise ValueError(f"MesaLayer: lam_init must be a finite float > 0 (λ is stored as log λ), got {lam_init!r}")
        if init_std is not None and not init_std > 0:
            raise ValueError(f"MesaLayer: init_std must be > 0, got {init_std!r}")
        self.d_model, self.n_heads, self.lam_init, self.fast = d_model, n_heads, float(lam_init), fast
        self.d_key = d_model if d_key is None else d_key
        self.init_std = 1.0 / math.sqrt(d_model) if init_std is None else init_std

    @property
    def param_shapes(self) -> dict:
        H, D, k = self.n_heads, self.d_model, self.d_key
        return {"Wq": (H, D, k), "Wk": (H, D, k), "Wv": (H, D, k), "Wp": (H, k, D), "log_lam": (H,)}

    def init(self, rng, *, dtype=None, backend=None):
        rng = as_rng(rng)
        params = {name: rng.truncated_normal(shape, std=self.init_std, dtype=dtype, backend=backend)
                  for name, shape in self.param_shapes.items() if name != "log_lam"}
        params["log_lam"] = asarray(np.full(self.n_heads, math.log(self.lam_init)), dtype, backend)
        return params

    @staticmethod
    def lam(params):
        """λ = exp(log_lam) per head (H,)."""
        return namespace(params["log_lam"]).exp(params["log_lam"])

    def _qkv(self, params, x):
        return project(x, params["Wq"]), project(x, params["Wk"]), project(x, params["Wv"])   # (B, H, T, k)

    def forward(self, params, x):
        self.check_input(x, ndim=3, last=self.d_model, min_steps=1)
        self.check_params(params, x)
        return self._forward_fast(params, x) if self.fast else self._forward_plain(params, x)

    def backward(self, params, cache, dout, *, need_dx=True):
        self.check_dout(dout, tuple(cache.x.shape))
        path = self._backward_fast if self.fast else self._backward_plain
        return path(params, cache, dout, need_dx)

    def _input_grads(self, params, x, dq, dk, dv, y, dout, dlog_lam, need_dx):
        """dx (None unless need_dx) and the grads from the per-head adjoints of q, k, v and
        y's output projection."""
        xp = namespace(dout)
        x4 = xp.expand_dims(x, axis=1)                                     # (B, 1, T, D)
        dx = (sum_heads(dq, params["Wq"].mT) + sum_heads(dk, params["Wk"].mT) + sum_heads(dv, params["Wv"].mT)
              if need_dx else None)
        return dx, {"Wq": sum_outer(x4, dq), "Wk": sum_outer(x4, dk), "Wv": sum_outer(x4, dv),
                    "Wp": sum_outer(y, xp.expand_dims(dout, axis=1)), "log_lam": dlog_lam}

    # -- the plain path: prefix sums of the matrices G_t, H_t, as in the module docstring -----
    def _forward_plain(self, params, x):
        xp = namespace(x)
        q, k, v = self._qkv(params, x)                                     # (B, H, T, k)
        lam = self.lam(params)                                             # (H,)
        H = key_covariances(k, xp.exp(-params["log_lam"]))                 # (B, H, T, k, k)
        G = xp.cumulative_sum(v[..., :, None] * k[..., None, :], axis=2)   # (B, H, T, k, k)
        u = solve_each(H, q)                                               # (B, H, T, k)
        y = (G @ u[..., None])[..., 0]                                     # (B, H, T, k)
        return sum_heads(y, params["Wp"]), MesaPlainCache(x, q, k, v, lam, H, G, u, y)

    def _backward_plain(self, params, cache, dout, need_dx):
        x, q, k, v, lam, H, G, u, y = cache
        xp = namespace(dout)
        g = project(dout, params["Wp"].mT)                                 # ∂L/∂y (B, H, T, k)
        b = solve_each(H, (G.mT @ g[..., None])[..., 0])                   # H_t⁻¹ G_tᵀ g_t
        dG = reverse_cumsum(g[..., :, None] * u[..., None, :], axis=2)     # Ĝ_i (B, H, T, k, k)
        dH = -reverse_cumsum(b[..., :, None] * u[..., None, :], axis=2)    # Ĥ_i
        dv = (dG @ k[..., None])[..., 0]
        dk = (dG.mT @ v[..., None])[..., 0] + ((dH + dH.mT) @ k[..., None])[..., 0]
        dlog_lam = xp.sum(b * u, axis=(0, 2, 3)) / lam                     # (H,)
        return self._input_grads(params, x, b, dk, dv, y, dout, dlog_lam, need_dx)

    # -- the score form: causal attention with queries u_t, a cache without T·k² terms ------
    def _mask(self, x):
        xp = namespace(x)
        T = x.shape[1]
        return xp.astype(causal_mask(xp, T, T, array_api_compat.device(x)), x.dtype)   # (T, T)

    def _forward_fast(self, params, x):
        xp = namespace(x)
        q, k, v = self._qkv(params, x)                                     # (B, H, T, k)
        u = solve_each(key_covariances(k, xp.exp(-params["log_lam"])), q)  # (B, H, T, k)
        y = ((u @ k.mT) * self._mask(x)) @ v                               # (B, H, T, k)
        return sum_heads(y, params["Wp"]), MesaCache(x, q, k, v, self.lam(params), u, y)

    def _backward_fast(self, params, cache, dout, need_dx):
        x, q, k, v, lam, u, y = cache
        xp = namespace(dout)
        M = self._mask(x)                                                  # (T, T)
        g = project(dout, params["Wp"].mT)                                 # (B, H, T, k)
        scores = lambda a, c: _masked_in_place(a @ c.mT, M)               # (B, H, T, T) M ⊙ a_tᵀ c_i
        S1 = scores(g, v)                                                  # g_tᵀ v_i
        b = solve_each(key_covariances(k, xp.exp(-params["log_lam"])), S1 @ k)   # H_t⁻¹ a_t
        dk = S1.mT @ u                                                     # dK = S1ᵀ U − A1ᵀ B − A2ᵀ U
        del S1                                                             # peak memory: one T×T at a time
        A1 = scores(u, k)                                                  # u_tᵀ k_i
        dk, dv = dk - A1.mT @ b, A1.mT @ g
        del A1
        dk = dk - scores(b, k).mT @ u                                      # A2: b_tᵀ k_i
        dlog_lam = xp.sum(b * u, axis=(0, 2, 3)) / lam                     # (H,)
        return self._input_grads(params, x, b, dk, dv, y, dout, dlog_lam, need_dx)

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        x = lambda T=5: rng.normal((2, T, 4))
        return {"score_form": (MesaLayer(4, 2, 3, lam_init=0.7), x(), {}),
                "plain": (MesaLayer(4, 2, 3, lam_init=2.0, fast=False), x(), {}),
                "wide_key": (MesaLayer(3, 1, 5), rng.normal((2, 4, 3)), {}),
                "one_step": (MesaLayer(4, 1, 2, fast=False), x(1), {})}
