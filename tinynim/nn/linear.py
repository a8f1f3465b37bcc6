"""Affine map.

Forward (row convention, any leading batch dims)::

    out = x W + b            x: (..., d_in)  W: (d_in, d_out)  b: (d_out,)  out: (..., d_out)

Backward. With G = dL/d(out) and X, G flattened to rows (n, d_in), (n, d_out):
``dL/dx = G Wᵀ`` (chain rule through the matrix product), ``dL/dW = Xᵀ G`` (each row adds
its outer product x gᵀ) and ``dL/db = Σ_rows G`` (b is added to every row).

Cache: ``LinearCache(x)``, the input.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from tinynim.backend import namespace, zeros
from tinynim.nn.base import Layer
from tinynim.random import as_rng


class LinearCache(NamedTuple):
    x: object           # (..., d_in) the input


class Linear(Layer):
    def __init__(self, d_in: int, d_out: int, *, bias: bool = True, init_std: float | None = None):
        self.check_sizes(d_in=d_in, d_out=d_out)
        self.d_in, self.d_out, self.bias = d_in, d_out, bias
        self.init_std = 1.0 / math.sqrt(d_in) if init_std is None else init_std

    def init(self, rng, *, dtype=None, backend=None):
        """W ~ N(0, init_std²) with init_std = 1/√d_in by default (LeCun normal); b = 0."""
        rng = as_rng(rng)
        params = {"W": rng.normal((self.d_in, self.d_out), std=self.init_std, dtype=dtype, backend=backend)}
        if self.bias:
            params["b"] = zeros((self.d_out,), dtype, backend)
        return params

    @property
    def param_shapes(self):
        return {"W": (self.d_in, self.d_out), **({"b": (self.d_out,)} if self.bias else {})}

    def forward(self, params, x):
        self.check_input(x, min_ndim=1, last=self.d_in)
        self.check_params(params, x)
        out = x @ params["W"]                       # (..., d_out)
        if self.bias:
            out = out + params["b"]
        return out, LinearCache(x)

    def backward(self, params, cache, dout):
        x = cache.x
        self.check_dout(dout, tuple(x.shape[:-1]) + (self.d_out,))
        xp = namespace(dout)
        X = xp.reshape(x, (-1, self.d_in))          # (n, d_in)
        G = xp.reshape(dout, (-1, self.d_out))      # (n, d_out)
        grads = {"W": X.T @ G}                      # (d_in, d_out)
        if self.bias:
            grads["b"] = xp.sum(G, axis=0)          # (d_out,)
        return dout @ params["W"].T, grads          # (..., d_in)

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"bias": (Linear(3, 4), rng.normal((2, 5, 3)), {}),
                "no_bias": (Linear(3, 2, bias=False), rng.normal((4, 3)), {})}
