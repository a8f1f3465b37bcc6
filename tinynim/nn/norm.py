"""Layer normalisation over the last axis (Ba, Kiros & Hinton 2016).

Forward, per row x ∈ ℝᵈ (any leading batch dims)::

    μ = mean(x)        σ = √(mean((x − μ)²) + eps)        x̂ = (x − μ) / σ
    out = x̂ · γ + β                            x, out: (..., d)   γ, β: (d,)

Backward. With ĝ = dout · γ (the gradient reaching x̂), and using ∂μ/∂xᵢ = 1/d,
∂σ/∂xᵢ = x̂ᵢ / (d σ)::

    ∂x̂ⱼ/∂xᵢ = (δᵢⱼ − 1/d − x̂ᵢ x̂ⱼ / d) / σ
    dx = Σⱼ ĝⱼ ∂x̂ⱼ/∂x = (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)) / σ

(exact with eps inside σ). γ and β act on every row: dγ = Σ_rows dout · x̂, dβ = Σ_rows dout.
"""
from __future__ import annotations

from tinynim.backend import asarray, zeros
from tinynim.nn.base import Layer
from tinynim.random import as_rng


class LayerNorm(Layer):
    def __init__(self, d: int, eps: float = 1e-5):
        self.d, self.eps = d, eps

    def init(self, rng, *, dtype=None, backend=None):
        """γ = 1, β = 0: the layer starts as a pure standardisation."""
        return {"gamma": asarray([1.0] * self.d, dtype, backend), "beta": zeros((self.d,), dtype, backend)}

    def forward(self, params, x):
        xp = self.check_input(x, min_ndim=1, last=self.d)
        xc = x - xp.mean(x, axis=-1, keepdims=True)                             # (..., d)
        inv_sigma = 1 / xp.sqrt(xp.mean(xc * xc, axis=-1, keepdims=True) + self.eps)  # (..., 1)
        x_hat = xc * inv_sigma                                                  # (..., d)
        return x_hat * params["gamma"] + params["beta"], (x_hat, inv_sigma)

    def backward(self, params, cache, dout):
        x_hat, inv_sigma = cache
        xp = self.check_input(dout, min_ndim=1, last=self.d, what="dout")
        g = dout * params["gamma"]                                              # (..., d)
        dx = inv_sigma * (g - xp.mean(g, axis=-1, keepdims=True)
                          - x_hat * xp.mean(g * x_hat, axis=-1, keepdims=True))  # (..., d)
        G = xp.reshape(dout, (-1, self.d))                                      # (n, d)
        grads = {"gamma": xp.sum(G * xp.reshape(x_hat, (-1, self.d)), axis=0),  # (d,)
                 "beta": xp.sum(G, axis=0)}                                     # (d,)
        return dx, grads

    @staticmethod
    def example(rng):
        return LayerNorm(4), as_rng(rng).normal((2, 3, 4)), {}
