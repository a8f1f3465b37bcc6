"""Layer normalisation over the last axis (Ba, Kiros & Hinton 2016).

Forward, per row x ∈ ℝᵈ (any leading batch dims)::

    μ = mean(x)        σ = √(mean((x − μ)²) + eps)        x̂ = (x − μ) / σ
    out = x̂ · γ + β                            x, out: (..., d)   γ, β: (d,)

Overflow. σ² would overflow for |x − μ| ≳ 1.8e19 in float32 (x̂ then came out all zero, as
it does in torch): the variance is computed from xc = x − μ rescaled by s = max(max|xc|, 1)
per row, σ = s √(mean((xc/s)²) + (√eps/s)²), where no square exceeds max(1, max xc²).

Backward. With ĝ = dout · γ (the gradient reaching x̂), and using ∂μ/∂xᵢ = 1/d,
∂σ/∂xᵢ = xcᵢ / (d σ) = x̂ᵢ / d::

    ∂x̂ⱼ/∂xᵢ = (δᵢⱼ − 1/d − x̂ᵢ x̂ⱼ / d) / σ
    dx = Σⱼ ĝⱼ ∂x̂ⱼ/∂x = (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)) / σ

(exact with eps inside σ). γ and β act on every row: dγ = Σ_rows dout · x̂, dβ = Σ_rows dout.

Passes over memory. The plain forward above is always safe. On NumPy arrays the forward
first tries the direct σ² = mean(xc²) (two fewer passes: no max|xc|, no rescaled copy) and
keeps it unless a row overflowed, which it then recomputes the plain way
(:meth:`LayerNorm._inv_sigma_direct`; a test checks both give the same). Only there: the
check reads a value, which would stall a GPU queue and cannot be traced. The
backward takes mean(ĝ) = (dout · γ)/d and mean(ĝ x̂) = ((dout ⊙ x̂) · γ)/d as matrix-vector
products, reusing dout ⊙ x̂ for dγ, instead of forming ĝ ⊙ x̂.

Cache: ``LayerNormCache(x_hat, inv_sigma)``: x̂ (..., d) and 1/σ (..., 1).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tinynim.backend import asarray, namespace, numpy_backed, zeros
from tinynim.nn.base import Layer
from tinynim.random import as_rng


class LayerNormCache(NamedTuple):
    x_hat: object       # (..., d) the standardised input
    inv_sigma: object   # (..., 1) 1/σ per row


class LayerNorm(Layer):
    def __init__(self, d: int, eps: float = 1e-5):
        self.check_sizes(d=d)
        if not eps >= 0:
            raise ValueError(f"LayerNorm: eps must be ≥ 0, got {eps!r}")
        self.d, self.eps = d, eps

    def init(self, rng, *, dtype=None, backend=None):
        """γ = 1, β = 0: the layer starts as a pure standardisation."""
        return {"gamma": asarray([1.0] * self.d, dtype, backend), "beta": zeros((self.d,), dtype, backend)}

    @property
    def param_shapes(self):
        return {"gamma": (self.d,), "beta": (self.d,)}

    def forward(self, params, x):
        xp = self.check_input(x, min_ndim=1, last=self.d)
        self.check_params(params, x)
        xc = x - xp.mean(x, axis=-1, keepdims=True)                             # (..., d)
        inv_sigma = self._inv_sigma_direct(xp, xc) if numpy_backed(xc) else None
        if inv_sigma is None:
            inv_sigma = self._inv_sigma(xp, xc)                                 # (..., 1)
        x_hat = xc * inv_sigma                                                  # (..., d)
        out = x_hat * params["gamma"]
        out += params["beta"]                                                   # in place: no new array
        return out, LayerNormCache(x_hat, inv_sigma)

    def _inv_sigma(self, xp, xc):
        """1/σ per row, rescaled by s = max(max|xc|, 1) so that no square overflows (plain)."""
        s = xp.maximum(xp.max(xp.abs(xc), axis=-1, keepdims=True), xp.ones_like(xc[..., :1]))  # (..., 1)
        xs = xc / s                                                             # |xs| ≤ max(|xc|, 1)
        r = math.sqrt(self.eps) / s
        return 1 / (s * xp.sqrt(xp.mean(xs * xs, axis=-1, keepdims=True) + r * r))  # (..., 1)

    def _inv_sigma_direct(self, xp, xc):
        """1/√(mean(xc²) + eps) on numpy-backed arrays (fast; eager, so the overflow check may
        read a value), or None if a row's mean(xc²) overflowed."""
        with np.errstate(over="ignore"):                                        # detected just below
            var = xp.mean(xc * xc, axis=-1, keepdims=True)                      # (..., 1)
        return 1 / xp.sqrt(var + self.eps) if bool(xp.all(xp.isfinite(var))) else None

    def backward(self, params, cache, dout, *, need_dx=True):
        x_hat, inv_sigma = cache
        self.check_dout(dout, tuple(x_hat.shape))
        # exercise: layernorm
        xp = namespace(dout)
        gamma, d = params["gamma"], self.d
        dout_xhat = dout * x_hat                                                # (..., d)
        grads = {"gamma": xp.sum(xp.reshape(dout_xhat, (-1, d)), axis=0),       # (d,)
                 "beta": xp.sum(xp.reshape(dout, (-1, d)), axis=0)}             # (d,)
        if not need_dx:
            return None, grads
        mean_g = xp.expand_dims((dout @ gamma) / d, axis=-1)                    # (..., 1) mean(ĝ)
        mean_gx = xp.expand_dims((dout_xhat @ gamma) / d, axis=-1)              # (..., 1) mean(ĝ x̂)
        dx = inv_sigma * (dout * gamma - mean_g - x_hat * mean_gx)              # (..., d)
        return dx, grads
        # end exercise

    @staticmethod
    def examples(rng):
        return {"default": (LayerNorm(4), as_rng(rng).normal((2, 3, 4)), {})}
