"""Affine map.

Forward (row convention, any leading batch dims)::

    out = s · x W + b        x: (..., d_in)  W: (d_in, d_out)  b: (d_out,)  out: (..., d_out)

with s = 1 in the standard parametrisation (W ~ N(0, 1/d_in)) and s = 1/√d_in in the NTK
parametrisation of Jacot et al. (arXiv:1806.07572), where W ~ N(0, 1) and the 1/√fan_in sits
in the forward pass, so that every weight moves by O(1/√d_in) under gradient descent and the
neural tangent kernel has a finite limit as the width grows. b starts at 0 in both.

Backward. With G = dL/d(out) and X, G flattened to rows (n, d_in), (n, d_out):
``dL/dx = s G Wᵀ`` (chain rule through the matrix product), ``dL/dW = s Xᵀ G`` (each row adds
its outer product x gᵀ) and ``dL/db = Σ_rows G`` (b is added to every row).

Per example (rows grouped by axis 0 of x: X_i (r, d_in), G_i (r, d_out), r rows each):
``dW_i = s X_iᵀ G_i``, ``db_i = Σ_rows G_i``. With one row per example (x of shape (n, d_in))
the inner product of two examples' gradients factorises (Goodfellow, arXiv:1510.01799;
Novak et al., arXiv:2206.08720)::

    ⟨dW_a, dW_b⟩ = s² (x_a · x_b)(g_a · g_b),   ⟨db_a, db_b⟩ = g_a · g_b

so :meth:`Linear.backward_gram` needs two n×n Gram matrices and never forms a dW_i.

Cache: ``LinearCache(x)``, the input.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from tinynim.backend import namespace, zeros
from tinynim.nn.base import Layer, split_rows
from tinynim.random import as_rng

PARAMETRIZATIONS = ("standard", "ntk")


class LinearCache(NamedTuple):
    x: object           # (..., d_in) the input


class Linear(Layer):
    def __init__(self, d_in: int, d_out: int, *, bias: bool = True, init_std: float | None = None,
                 parametrization: str = "standard"):
        self.check_sizes(d_in=d_in, d_out=d_out)
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"Linear: parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
        self.d_in, self.d_out, self.bias, self.parametrization = d_in, d_out, bias, parametrization
        ntk = parametrization == "ntk"
        self.scale = 1.0 / math.sqrt(d_in) if ntk else 1.0                  # s
        self.init_std = (1.0 if ntk else 1.0 / math.sqrt(d_in)) if init_std is None else init_std

    def init(self, rng, *, dtype=None, backend=None):
        """W ~ N(0, init_std²) with init_std = 1/√d_in (LeCun normal; standard) or 1 (NTK); b = 0."""
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
        if self.parametrization == "ntk":
            out = self.scale * out
        if self.bias:
            out += params["b"]                      # in place on our own product: no new array
        return out, LinearCache(x)

    def backward(self, params, cache, dout, *, need_dx=True):
        x = cache.x
        self.check_dout(dout, tuple(x.shape[:-1]) + (self.d_out,))
        # exercise: linear
        xp = namespace(dout)
        X = xp.reshape(x, (-1, self.d_in))          # (n, d_in)
        G = xp.reshape(dout, (-1, self.d_out))      # (n, d_out)
        grads = {"W": self._scaled(X.T @ G)}        # (d_in, d_out)
        if self.bias:
            grads["b"] = xp.sum(G, axis=0)          # (d_out,)
        return (self._dx(params, dout) if need_dx else None), grads   # (..., d_in)
        # end exercise

    def _dx(self, params, dout):
        # exercise: linear
        return self._scaled(dout @ params["W"].T)   # (..., d_in)
        # end exercise

    def _scaled(self, a):
        return self.scale * a if self.parametrization == "ntk" else a

    # -- per example (see the module docstring) ------------------------------------------
    def backward_per_example(self, params, cache, dout):
        x = cache.x
        self.check_input(x, min_ndim=2, what="x (per-example backward: examples on axis 0)")
        self.check_dout(dout, tuple(x.shape[:-1]) + (self.d_out,))
        xp = namespace(dout)
        n, r = x.shape[0], math.prod(x.shape[1:-1])
        X = xp.reshape(x, (n, r, self.d_in))        # (n, r, d_in)
        G = xp.reshape(dout, (n, r, self.d_out))    # (n, r, d_out)
        grads = {"W": self._scaled(xp.matrix_transpose(X) @ G)}    # (n, d_in, d_out)
        if self.bias:
            grads["b"] = xp.sum(G, axis=1)          # (n, d_out)
        return self._dx(params, dout), grads

    def backward_gram(self, params, cache, dout, split=None):
        """Γ = s² (X₁X₂ᵀ) ⊙ (G₁G₂ᵀ) + G₁G₂ᵀ for x of shape (n, d_in); other shapes (several
        rows per example) take the default, per-example gradients contracted."""
        x = cache.x
        if x.ndim != 2:
            return super().backward_gram(params, cache, dout, split)
        self.check_dout(dout, (x.shape[0], self.d_out))
        (X1, X2), (G1, G2) = split_rows(x, split), split_rows(dout, split)
        GG = G1 @ G2.T                              # (m, n − m)
        gram = (self.scale ** 2) * (X1 @ X2.T) * GG
        if self.bias:
            gram = gram + GG
        return self._dx(params, dout), gram

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"bias": (Linear(3, 4), rng.normal((2, 5, 3)), {}),
                "no_bias": (Linear(3, 2, bias=False), rng.normal((4, 3)), {}),
                "ntk": (Linear(3, 2, parametrization="ntk"), rng.normal((4, 3)), {})}
