"""Affine map.

Forward (row convention, any leading batch dims)::

    out = x W + b            x: (..., d_in)  W: (d_in, d_out)  b: (d_out,)  out: (..., d_out)

Backward. With G = dL/d(out) and X, G flattened to rows (n, d_in), (n, d_out):
``dL/dx = G Wᵀ`` (chain rule through the matrix product), ``dL/dW = Xᵀ G`` (each row adds
its outer product x gᵀ) and ``dL/db = Σ_rows G`` (b is added to every row).
"""
from __future__ import annotations

import math

from tinynim.backend import zeros
from tinynim.nn.base import Layer
from tinynim.random import as_rng


class Linear(Layer):
    def __init__(self, d_in: int, d_out: int, *, bias: bool = True, init_std: float | None = None):
        self.d_in, self.d_out, self.bias = d_in, d_out, bias
        self.init_std = 1.0 / math.sqrt(d_in) if init_std is None else init_std

    def init(self, rng, *, dtype=None, backend=None):
        """W ~ N(0, init_std²) with init_std = 1/√d_in by default (LeCun normal); b = 0."""
        rng = as_rng(rng)
        params = {"W": rng.normal((self.d_in, self.d_out), std=self.init_std, dtype=dtype, backend=backend)}
        if self.bias:
            params["b"] = zeros((self.d_out,), dtype, backend)
        return params

    def forward(self, params, x):
        self.check_input(x, min_ndim=1, last=self.d_in)
        out = x @ params["W"]                       # (..., d_out)
        if self.bias:
            out = out + params["b"]
        return out, x

    def backward(self, params, cache, dout):
        x = cache
        xp = self.check_input(dout, min_ndim=1, last=self.d_out, what="dout")
        X = xp.reshape(x, (-1, self.d_in))          # (n, d_in)
        G = xp.reshape(dout, (-1, self.d_out))      # (n, d_out)
        grads = {"W": X.T @ G}                      # (d_in, d_out)
        if self.bias:
            grads["b"] = xp.sum(G, axis=0)          # (d_out,)
        return dout @ params["W"].T, grads          # (..., d_in)

    @staticmethod
    def example(rng):
        rng = as_rng(rng)
        return Linear(3, 4), rng.normal((2, 5, 3)), {}
