"""Gated linear RNN: input gating, a diagonal linear recurrence, output gating, a readout.

Forward (row convention; x̃_t = (x_t, 1) when ``append_one``, else x_t)::

    a_t = x̃_t Wx_in,   g_t = x̃_t Wg_in,   u_t = a_t ⊙ g_t      x̃_t: (d_in+1,)  u_t: (N,)
    h_t = λ ⊙ h_{t-1} + u_t,   h_{-1} = h0 (zeros if not given)  h_t: (N,)  λ: (N,)
    o_t = h_t Wx_out,  q_t = h_t Wg_out,  z_t = o_t ⊙ q_t        z_t: (M,)   M = n_out_gates
    out_t = z_t D                                                out_t: (d_out,)

λ ∈ [0, 1] comes from a parameter by ``recurrence``: "sigmoid" λ = σ(ν); "exp" (LRU style)
λ = exp(−exp(ν)); "direct" stores λ itself, unconstrained, so analytic constructions can
set it to exactly 0 (pass the current input through) or 1 (sum the whole past), which the
other two only approach. The recurrence is a linear time-invariant filter,
h_t = λ^{t+1} ⊙ h0 + Σ_{s≤t} λ^{t−s} ⊙ u_s, computed by one of two scans that give the
same numbers. ``scan="loop"`` (default) runs :func:`scan_reference`, T small operations: on a
CPU each step's (B, N) slice stays in cache, and this was the faster one on a 2-core CPU with
numpy for B·N in the thousands (benchmarks/bench_gated_rnn.py). ``scan="parallel"`` runs
:func:`parallel_scan`, ⌈log₂ T⌉ operations on whole sequences: better where the cost per
operation dominates (GPUs, small batches with long sequences, e.g. B·N = 64 at T = 256).

Backward (BPTT). With dout_t = ∂L/∂out_t: ``dD = Σ zᵀ dout``, ``dz = dout Dᵀ``,
``dWx_out = Σ hᵀ (dz ⊙ q)``, ``dWg_out = Σ hᵀ (dz ⊙ o)``, and the direct gradient
``e_t = (dz ⊙ q) Wx_outᵀ + (dz ⊙ o) Wg_outᵀ`` reaches h_t. Since h_t feeds h_{t+1} with
factor λ, the total δ_t = ∂L/∂h_t = e_t + λ ⊙ δ_{t+1}: the same scan run backwards in time.
Then ``du_t = δ_t``, ``dλ = Σ_t δ_t ⊙ h_{t−1}``, ``dh0 = λ ⊙ δ_0``,
``dWx_in = Σ x̃ᵀ (δ ⊙ g)``, ``dWg_in = Σ x̃ᵀ (δ ⊙ a)``, ``dx̃ = (δ ⊙ g) Wx_inᵀ + (δ ⊙ a) Wg_inᵀ``
(drop the last column for the appended 1), and dν = dλ ⊙ λ(1−λ) (sigmoid) or
dλ ⊙ (−exp(ν) λ) (exp).

Options of ``forward``:

* **Initial state.** Pass ``x = (x, h0)`` (h0: (B, N)); then ``dx = (dx, dh0)``. The initial
  state is one more differentiable input, as for any layer with several inputs, so the
  gradient checks (finite differences, torch autograd) cover dh0 like dx.
* ``return_state=True``: the output is the pair ``(out, h_T)`` (final state, shape (B, N)) and
  ``backward`` takes ``dout = (dout, dh_T)``. ``h_T`` from a zero start is the state s(c) of a
  context c; with input-independent λ, ``h_T = Φ ⊙ h0 + s(c)``, Φ = :meth:`decay_product`.
* ``last_only=True``: only the last step's output (B, d_out), e.g. the query of an in-context
  task. The plain path (``fast=False``) runs the scan and reads step T−1 (its backward puts
  dout at that step, zeros elsewhere). The fast path (``fast=True``, the default; a test
  compares the two) needs h_T only: h_T = Σ_s λ^{T−1−s} ⊙ u_s + λ^T ⊙ h0 (a weighted sum,
  no scan), δ_s = λ^{T−1−s} ⊙ δ_T, and dλ = δ_T ⊙ (Σ_s (T−1−s) λ^{T−2−s} ⊙ u_s + T λ^{T−1} ⊙ h0).
  The output gating runs at one step instead of T: structure autodiff does not see.

σ is :func:`tinynim.nn.activations.sigmoid`, which never overflows (ν = −800 gives λ = 0).

Memory passes. The two input gates come from one GEMM, ``[g | a] = x̃ [Wg_in | Wx_in]``, and
so do the output gates, ``[q | o] = h [Wg_out | Wx_out]`` (x̃ and h are read once, BLAS gets
twice the columns). In backward the same layout pays twice: ``[da | dg] = [δ | δ] ⊙ [g | a]``
is one broadcast product, ``[dWx_in | dWg_in] = x̃ᵀ [da | dg]`` and ``dx̃ = [da | dg] [Wx_in | Wg_in]ᵀ``
one GEMM each (likewise for the output gates and e), instead of two GEMMs and an addition.
The backward scan runs backwards in time directly instead of flipping its input and output,
and sums over time such as dλ = Σ_t δ_t ⊙ h_{t−1} are ``vecdot`` contractions (no (B, T, N)
temporary).

Denormals. Powers λ^k of λ < 1 (the last-only weights λ^{T−1−s} and their derivatives, the
doubling scan's decay) become tiny for long sequences, and they and their products with
gradients fall below the smallest normal float (float32: 1.2e−38): such subnormal numbers
make multiplications many times slower on x86 CPUs (the float32 last-only benchmark step
ran about 3× faster once they were gone). Weights below ε² (ε the dtype's machine epsilon; float32 1.4e−14, float64 4.9e−32)
are set to exactly 0 (:func:`drop_negligible`): the terms they weight are below ε times the
rounding error the float sum already carries (T < 1/ε terms), and products of the remaining
weights with gradients stay normal. Exact zeros are kept, so derivatives through them stand.

Caches: ``RNNCache(xt, ga, lam, h, h0, qo, has_h0, return_state, last_only)``: x̃, the
input gates [g | a] (B, T, 2N), λ (N,), the states h (B, T, N), h0 or None, the output gates
[q | o] (B, T, 2M) and the options; the fast last-only path's ``RNNLastCache(xt, ga, lam, w,
h_T, h0, qo, has_h0, return_state)`` holds w = λ^{T−1−s} (T, N) and h_T (B, N) instead, and
[q | o] at the last step only (B, 2M). Peak memory: a cache keeps no array the backward can
rebuild in one pass (u = a ⊙ g, z = o ⊙ q are recomputed), and each backward frees a
temporary as soon as it is used (e.g. dz inside the expression that consumes it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from tinynim.backend import asarray, namespace, numpy_backed
from tinynim.nn.activations import sigmoid
from tinynim.nn.base import Layer
from tinynim.random import as_rng

RECURRENCES = ("sigmoid", "exp", "direct")


def _steps_to_end(xp, T, like):
    """(T, 1) column T−1−s for s = 0..T−1, in the dtype and device of `like`."""
    s = xp.arange(T, dtype=like.dtype, device=array_api_compat.device(like))
    return (T - 1.0 - s)[:, None]


def _rows(a):
    """(..., k) -> (n, k)."""
    return namespace(a).reshape(a, (-1, a.shape[-1]))


def _mm(a, W):
    """a (..., k) @ W (k, m) as one 2-D matrix product (numpy: up to 1.5× faster than the
    stacked matmul for the small matrices of in-context tasks)."""
    return namespace(a, W).reshape(_rows(a) @ W, tuple(a.shape[:-1]) + (W.shape[-1],))


def _halves(a):
    """[a₁ | a₂] (..., 2n) -> (a₁, a₂), views of the two halves of the last axis."""
    n = a.shape[-1] // 2
    return a[..., :n], a[..., n:]


def _times_both_halves(xp, pair, a):
    """[p₁ | p₂] (..., 2n) ⊙ [a | a] (a: (..., n)) -> [p₁ ⊙ a | p₂ ⊙ a], by broadcasting
    over a (..., 2, n) view: [a | a] is never built."""
    shape = tuple(pair.shape)
    halves = xp.reshape(pair, shape[:-1] + (2, shape[-1] // 2))
    return xp.reshape(halves * xp.expand_dims(a, axis=-2), shape)


def drop_negligible(xp, w):
    """The weights `w` with nonzero entries below ε² in magnitude set to 0 (module docstring:
    they and their products are subnormal, slow and negligible). Exact zeros stay as they
    are (in autodiff terms too: λ^1 at λ = 0 keeps its derivative 1)."""
    negligible = (xp.abs(w) < xp.finfo(w.dtype).eps ** 2) & (w != 0)
    return xp.where(negligible, 0.0, w)


def scan_reference(lam, u, h0=None, *, reverse=False):
    """h_t = λ ⊙ h_{t−1} + u_t, one time step at a time (the readable definition); with
    ``reverse=True`` the same recurrence backwards in time, h_t = λ ⊙ h_{t+1} + u_t.

    lam: (N,)  u: (B, T, N)  h0: (B, N) or None (zeros)  ->  h: (B, T, N)
    """
    xp = namespace(lam, u, h0)
    T = u.shape[1]
    h = xp.zeros_like(u[:, 0, :]) if h0 is None else h0
    states = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        h = lam * h + u[:, t, :]
        states[t] = h
    return xp.stack(states, axis=1)


def parallel_scan(lam, u, h0=None):
    """The same recurrence in ⌈log₂ T⌉ whole-sequence steps (Hillis–Steele doubling).

    After level j, h_t holds Σ_{t−2^j < s ≤ t} λ^{t−s} ⊙ u_s; the next level adds the
    previous block, shifted by d = 2^j steps and decayed by λ^d:
    h_t ← h_t + λ^d ⊙ h_{t−d}, with λ^d by repeated squaring. Only products of
    λ ∈ [0, 1]: no overflow, and λ = 0 or 1 stay exact (no logarithms). h0 enters as an
    extra input λ ⊙ h0 at t = 0. From the second level on, h is the scan's own array, and on
    numpy-backed arrays a level adds in place (:func:`add_shifted`).
    """
    xp = namespace(lam, u, h0)
    if h0 is not None:
        u = xp.concat([u[:, :1, :] + lam * h0[:, None, :], u[:, 1:, :]], axis=1)
    h, decay, d = u, lam, 1
    while d < u.shape[1]:
        h = add_shifted(h, decay, d, in_place=h is not u and numpy_backed(h))
        decay, d = drop_negligible(xp, decay * decay), 2 * d
    return h


def add_shifted(h, decay, d, *, in_place=False):
    """h_t + decay ⊙ h_{t−d} for t ≥ d, h_t for t < d (no block before them), along axis 1.

    Plain: a new array (a concat). ``in_place=True`` (the fast path, for an h the caller owns
    and whose library writes through slices, numpy): the shifted product is formed first,
    then added into h[:, d:] where it lies: one temporary instead of three, the same numbers."""
    xp = namespace(h, decay)
    if not in_place:
        return xp.concat([h[:, :d, :], h[:, d:, :] + decay * h[:, :-d, :]], axis=1)
    tail = h[:, d:, :]                                     # a view: writes land in h
    tail += decay * h[:, :-d, :]                           # right side complete before any write
    return h


SCANS = {"parallel": parallel_scan, "loop": scan_reference}


def reverse_scan(scan, lam, g):
    """δ_t = g_t + λ ⊙ δ_{t+1}, δ_T = 0: the backward of a scan, run in reversed time (the
    loop runs backwards directly; the doubling scan on the time-flipped sequence)."""
    if scan is scan_reference:
        return scan_reference(lam, g, reverse=True)
    # exercise: rnn_bptt
    xp = namespace(lam, g)
    return xp.flip(scan(lam, xp.flip(g, axis=1)), axis=1)
    # end exercise


class RNNCache(NamedTuple):
    xt: object          # (B, T, d̃) x̃
    ga: object          # (B, T, 2N) input gates [g | a] = x̃ [Wg_in | Wx_in]
    lam: object         # (N,) λ
    h: object           # (B, T, N) states
    h0: object          # (B, N) or None
    qo: object          # (B, T, 2M) output gates [q | o] = h [Wg_out | Wx_out]
    has_h0: bool
    return_state: bool
    last_only: bool


class RNNLastCache(NamedTuple):
    xt: object          # (B, T, d̃) x̃
    ga: object          # (B, T, 2N) [g | a]
    lam: object         # (N,) λ
    w: object           # (T, N) λ^{T−1−s}
    h_T: object         # (B, N) final state
    h0: object          # (B, N) or None
    qo: object          # (B, 2M) [q | o] at the last step
    has_h0: bool
    return_state: bool


class GatedLinearRNN(Layer):
    def __init__(self, d_in: int, n_hidden: int, d_out: int, *, n_out_gates: int | None = None,
                 append_one: bool = True, recurrence: str = "sigmoid", scan: str = "loop",
                 fast: bool = True):
        self.check_sizes(d_in=d_in, n_hidden=n_hidden, d_out=d_out,
                         **({} if n_out_gates is None else {"n_out_gates": n_out_gates}))
        if recurrence not in RECURRENCES:
            raise ValueError(f"GatedLinearRNN: recurrence must be one of {RECURRENCES}, got {recurrence!r}")
        if scan not in SCANS:
            raise ValueError(f"GatedLinearRNN: scan must be one of {tuple(SCANS)}, got {scan!r}")
        self.scan = SCANS[scan]
        self.d_in, self.n_hidden, self.d_out = d_in, n_hidden, d_out
        self.n_out_gates = n_hidden if n_out_gates is None else n_out_gates
        self.append_one, self.recurrence = append_one, recurrence
        self.d_tilde = d_in + int(append_one)            # width of x̃
        self.fast = fast

    @property
    def decay_key(self) -> str:
        """The parameter that holds λ: "lam" for "direct", else "nu"."""
        return "lam" if self.recurrence == "direct" else "nu"

    def init(self, rng, *, dtype=None, backend=None):
        """Gaussian 1/√fan_in weights, readout D ×0.1; λ = σ(U(−2, 2)) ∈ (0.12, 0.88) expressed
        in the chosen parametrisation (so one seed gives the same λ for every recurrence)."""
        rng = as_rng(rng)
        N, M, dt = self.n_hidden, self.n_out_gates, self.d_tilde
        nu = rng.uniform((N,), -2.0, 2.0, host=True)                   # host numpy: creation code
        raw = {"sigmoid": nu, "exp": np.log(np.log1p(np.exp(-nu))),   # exp(−exp(ν')) = σ(ν)
               "direct": 1.0 / (1.0 + np.exp(-nu))}[self.recurrence]
        normal = lambda shape, std: rng.normal(shape, std=std, dtype=dtype, backend=backend)
        return {"Wx_in": normal((dt, N), 1 / math.sqrt(dt)),
                "Wg_in": normal((dt, N), 1 / math.sqrt(dt)),
                self.decay_key: asarray(raw, dtype, backend),
                "Wx_out": normal((N, M), 1 / math.sqrt(N)),
                "Wg_out": normal((N, M), 1 / math.sqrt(N)),
                "D": normal((M, self.d_out), 0.1 / math.sqrt(M))}

    @property
    def param_shapes(self):
        N, M, dt = self.n_hidden, self.n_out_gates, self.d_tilde
        return {"Wx_in": (dt, N), "Wg_in": (dt, N), self.decay_key: (N,),
                "Wx_out": (N, M), "Wg_out": (N, M), "D": (M, self.d_out)}

    def decay(self, params):
        """λ ∈ [0, 1] (for "direct": whatever is stored).                     (N,)"""
        nu = params[self.decay_key]
        xp = namespace(nu)
        if self.recurrence == "sigmoid":
            return sigmoid(xp, nu)
        if self.recurrence == "exp":
            return xp.exp(-xp.exp(nu))
        return nu

    def decay_product(self, params, T: int):
        """Φ = Π_t λ = λ^T: the factor by which a length-T sequence scales the initial state."""
        return namespace(params[self.decay_key]).pow(self.decay(params), float(T))

    def _dnu(self, params, lam, dlam):
        """dL/d(decay parameter) from dL/dλ."""
        if self.recurrence == "sigmoid":
            return dlam * lam * (1.0 - lam)
        if self.recurrence == "exp":
            return -dlam * namespace(lam).exp(params["nu"]) * lam
        return dlam

    def _inputs(self, params, x):
        """Validate x or (x, h0) and params -> (x, h0 or None, has_h0, xp)."""
        has_h0 = isinstance(x, tuple)
        if has_h0 and len(x) != 2:
            raise ValueError(f"{self.name}: expected x or the pair (x, h0), got a tuple of {len(x)}")
        x, h0 = x if has_h0 else (x, None)
        xp = self.check_input(x, ndim=3, last=self.d_in, min_steps=1)
        self.check_params(params, x)
        if h0 is not None:
            self.check_input(h0, ndim=2, what="h0", like=x)
            if tuple(h0.shape) != (x.shape[0], self.n_hidden):
                raise ValueError(f"GatedLinearRNN: expected h0 of shape {(x.shape[0], self.n_hidden)}, "
                                 f"got shape {tuple(h0.shape)}")
        return x, h0, has_h0, xp

    def _input_gates(self, params, x, xp):
        """x̃ (B, T, d̃), the input gates [g | a] (B, T, 2N) and u = a ⊙ g (B, T, N)."""
        xt = xp.concat([x, xp.ones_like(x[..., :1])], axis=-1) if self.append_one else x
        ga = _mm(xt, xp.concat([params["Wg_in"], params["Wx_in"]], axis=1))   # one GEMM
        g, a = _halves(ga)
        return xt, ga, a * g

    @staticmethod
    def _output_gates(params, h, xp):
        """[q | o] = h [Wg_out | Wx_out] and the readout (o ⊙ q) D."""
        qo = _mm(h, xp.concat([params["Wg_out"], params["Wx_out"]], axis=1))  # (..., 2M)
        q, o = _halves(qo)
        return qo, _mm(o * q, params["D"])

    def forward(self, params, x, *, return_state=False, last_only=False):
        x, h0, has_h0, xp = self._inputs(params, x)
        if last_only and self.fast:
            return self._forward_last_only(params, x, h0, has_h0, return_state, xp)
        xt, ga, u = self._input_gates(params, x, xp)                      # (B, T, 2N), (B, T, N)
        lam = self.decay(params)                                           # (N,)
        h = self.scan(lam, u, h0)                                          # (B, T, N)
        qo, out = self._output_gates(params, h, xp)                        # (B, T, 2M), (B, T, d_out)
        if last_only:
            out = out[:, -1, :]                                            # (B, d_out)
        cache = RNNCache(xt, ga, lam, h, h0, qo, has_h0, return_state, last_only)
        return ((out, h[:, -1, :]) if return_state else out), cache

    def backward(self, params, cache, dout, *, need_dx=True):
        if isinstance(cache, RNNLastCache):
            return self._backward_last_only(params, cache, dout, need_dx)
        c = cache
        B, T = c.xt.shape[:2]
        dout, dh_T = self._split_dout(dout, c, (B, self.d_out) if c.last_only else (B, T, self.d_out))
        xp = namespace(dout)
        if c.last_only:                                                    # only step T−1 is read
            dout = xp.concat([xp.zeros((B, T - 1, self.d_out), dtype=dout.dtype,
                                       device=array_api_compat.device(dout)), dout[:, None, :]], axis=1)
        grads, e = self._readout_backward(params, c.h, c.qo, dout)         # e: (B, T, N) direct dL/dh
        if dh_T is not None:
            e = xp.concat([e[:, :-1, :], e[:, -1:, :] + dh_T[:, None, :]], axis=1)
        # exercise: rnn_bptt
        delta = reverse_scan(self.scan, c.lam, e)                          # (B, T, N)
        dlam = xp.sum(xp.vecdot(delta[:, 1:, :], c.h[:, :-1, :], axis=-2), axis=0)  # Σ_t δ_t ⊙ h_{t−1}
        dh0 = None
        if c.h0 is not None:
            dlam = dlam + xp.sum(delta[:, 0, :] * c.h0, axis=0)
            dh0 = c.lam * delta[:, 0, :]
        # end exercise
        del e                                                              # (B, T, N) freed before [da | dg]
        dx = self._input_backward(params, c, _times_both_halves(xp, c.ga, delta), dlam, grads, need_dx)
        return ((dx, dh0) if c.has_h0 and need_dx else dx), grads

    def _split_dout(self, dout, c, out_shape):
        """Check dout against the output's shapes -> (dout, dh_T or None)."""
        B = c.xt.shape[0]
        self.check_dout(dout, (out_shape, (B, self.n_hidden)) if c.return_state else out_shape)
        return dout if c.return_state else (dout, None)

    def _readout_backward(self, params, h, qo, dout):
        """Grads of D, Wx_out, Wg_out and the direct gradient e = dL/dh, (B, [T,] N):
        [do | dq] = [dz | dz] ⊙ [q | o], then one GEMM for both weight grads and one for e."""
        xp = namespace(dout)
        q, o = _halves(qo)
        dD = _rows(o * q).T @ _rows(dout)                                  # (M, d_out); z = o ⊙ q recomputed
        dodq = _times_both_halves(xp, qo, _mm(dout, params["D"].T))        # (B, [T,] 2M) [do | dq]; dz (B, [T,] M)
        dWx, dWg = _halves(_rows(h).T @ _rows(dodq))                       # (N, 2M) [dWx_out | dWg_out]
        grads = {"D": dD, "Wx_out": dWx, "Wg_out": dWg}
        return grads, _mm(dodq, xp.concat([params["Wx_out"], params["Wg_out"]], axis=1).T)

    def _input_backward(self, params, c, dadg, dlam, grads, need_dx):
        """Add the grads of Wx_in, Wg_in and the decay parameter to `grads`; return dx (None
        unless need_dx). From [da | dg] = [δ | δ] ⊙ [g | a] (B, T, 2N): one GEMM each for the
        weight grads and dx̃."""
        xp = namespace(dadg)
        dW = _rows(c.xt).T @ _rows(dadg)                                   # (d̃, 2N) [dWx_in | dWg_in]
        grads["Wx_in"], grads["Wg_in"] = _halves(dW)
        grads[self.decay_key] = self._dnu(params, c.lam, dlam)
        if not need_dx:
            return None
        W_in = xp.concat([params["Wx_in"], params["Wg_in"]], axis=1)       # (d̃, 2N)
        return _mm(dadg, W_in.T)[..., :self.d_in]                          # (B, T, d_in)

    # -- the fast last-only path: h_T as a weighted sum, no scan ------------------------
    def _forward_last_only(self, params, x, h0, has_h0, return_state, xp):
        xt, ga, u = self._input_gates(params, x, xp)                      # (B, T, 2N), (B, T, N)
        lam, T = self.decay(params), x.shape[1]
        w = drop_negligible(xp, xp.pow(lam[None, :], _steps_to_end(xp, T, lam)))  # (T, N) λ^{T−1−s}
        h_T = xp.vecdot(w, u, axis=-2)                                      # (B, N) Σ_s w_s ⊙ u_s
        if h0 is not None:
            h_T = h_T + xp.pow(lam, float(T)) * h0
        qo, out = self._output_gates(params, h_T, xp)                      # (B, 2M), (B, d_out)
        cache = RNNLastCache(xt, ga, lam, w, h_T, h0, qo, has_h0, return_state)
        return ((out, h_T) if return_state else out), cache

    def _backward_last_only(self, params, c, dout, need_dx):
        B, T = c.xt.shape[:2]
        dout, dh_T = self._split_dout(dout, c, (B, self.d_out))
        xp = namespace(dout)
        grads, e = self._readout_backward(params, c.h_T, c.qo, dout)       # (B, N)
        e = e if dh_T is None else e + dh_T                                # δ at step T−1
        k = _steps_to_end(xp, T, c.lam)                                    # (T, 1)
        dw = drop_negligible(xp, k * xp.pow(c.lam[None, :], xp.maximum(k - 1.0, 0.0)))  # (T, N) dλ^k/dλ
        g, a = _halves(c.ga)
        dlam_h = xp.vecdot(dw, a * g, axis=-2)                              # (B, N) dh_T/dλ, u = a ⊙ g rebuilt
        if c.h0 is not None:
            dlam_h = dlam_h + T * xp.pow(c.lam, float(T - 1)) * c.h0
        dlam = xp.sum(e * dlam_h, axis=0)
        dh0 = None if c.h0 is None else xp.pow(c.lam, float(T)) * e
        # [da | dg] = [g | a] ⊙ [δ | δ] with δ_s = w_s ⊙ e: the weights first, then e in place
        # (one (B, T, 2N) array; δ (B, T, N) is never built)
        dadg = xp.reshape(c.ga, (B, T, 2, self.n_hidden)) * c.w[None, :, None, :]    # (B, T, 2, N)
        dadg *= e[:, None, None, :]
        dx = self._input_backward(params, c, xp.reshape(dadg, (B, T, 2 * self.n_hidden)), dlam, grads, need_dx)
        return ((dx, dh0) if c.has_h0 and need_dx else dx), grads

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        x, h0 = lambda: rng.normal((2, 5, 3)), lambda: rng.normal((2, 4))
        rnn = lambda **kw: GatedLinearRNN(3, 4, 2, n_out_gates=5, **kw)
        return {"sigmoid": (rnn(), x(), {}),
                "exp": (rnn(recurrence="exp"), x(), {}),
                "direct": (rnn(recurrence="direct", append_one=False), x(), {}),
                "parallel_scan": (rnn(scan="parallel"), x(), {}),
                "h0_return_state": (rnn(), (x(), h0()), {"return_state": True}),
                "last_only": (rnn(), x(), {"last_only": True}),
                "last_only_h0_return_state": (rnn(recurrence="exp"), (x(), h0()),
                                              {"last_only": True, "return_state": True}),
                "plain_last_only_h0": (rnn(fast=False), (x(), h0()), {"last_only": True})}
