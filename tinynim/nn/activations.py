"""Elementwise activations: no parameters, any input shape.

Forward ``out = f(x)`` entrywise. Backward: out_i depends on x_i alone, so the Jacobian is
diagonal and ``dx = dout · f'(x)``; each f' below is written from the cached x and/or out::

    ReLU      f = max(x, 0)                        f' = 1[x > 0]   (0 at the kink x = 0)
    Tanh      f = tanh x                           f' = 1 − out²
    Sigmoid   f = σ(x) = ½ (1 + tanh(x/2))         f' = out (1 − out)
    Softplus  f = log(1 + eˣ) = logaddexp(0, x)    f' = σ(x) = exp(x − out)
    GELU      f = ½ x (1 + tanh u),  u = c (x + a x³),  c = √(2/π), a = 0.044715
                = x s,  s = σ(2u)   (as ½ (1 + tanh u) = σ(2u))
              f' = s + x s (1 − s) · 2c (1 + 3 a x²)

σ is computed through tanh, which never overflows (and is several times faster on NumPy
than an exp/logaddexp form); the cubic is written x·x·x, since NumPy's ``x**3`` takes the
slow general power path.
"""
from __future__ import annotations

import math

from tinynim.backend import namespace
from tinynim.nn.base import Layer
from tinynim.random import as_rng


class Elementwise(Layer):
    """Base class: a subclass gives ``f(xp, x)`` and ``df(xp, x, out)``; every subclass
    is registered for gradient checks with a small random example."""

    def __init_subclass__(cls, **kw):
        cls.example = classmethod(lambda c, rng: (c(), as_rng(rng).normal((2, 3, 4)), {}))
        super().__init_subclass__(**kw)      # registers cls: "example" is now in its __dict__

    def f(self, xp, x):
        raise NotImplementedError

    def df(self, xp, x, out):
        raise NotImplementedError

    def forward(self, params, x):
        out = self.f(namespace(x), x)                # same shape as x
        return out, (x, out)

    def backward(self, params, cache, dout):
        x, out = cache
        if tuple(dout.shape) != tuple(x.shape):
            raise ValueError(f"{self.name}: expected dout of shape {tuple(x.shape)}, got shape {tuple(dout.shape)}")
        return dout * self.df(namespace(x), x, out), {}


class ReLU(Elementwise):
    def f(self, xp, x):
        return xp.where(x > 0, x, xp.zeros_like(x))

    def df(self, xp, x, out):
        return xp.astype(x > 0, x.dtype)


class Tanh(Elementwise):
    def f(self, xp, x):
        return xp.tanh(x)

    def df(self, xp, x, out):
        return 1 - out * out


def sigmoid(xp, x):
    """σ(x) = 1 / (1 + e⁻ˣ) = ½ (1 + tanh(x/2)), stable for any x."""
    return 0.5 * (1 + xp.tanh(0.5 * x))


class Sigmoid(Elementwise):
    def f(self, xp, x):
        return sigmoid(xp, x)

    def df(self, xp, x, out):
        return out * (1 - out)


class Softplus(Elementwise):
    def f(self, xp, x):
        return xp.logaddexp(xp.zeros_like(x), x)

    def df(self, xp, x, out):
        return xp.exp(x - out)


class GELU(Elementwise):
    """The tanh approximation (Hendrycks & Gimpel), as torch's ``gelu(approximate="tanh")``."""
    c, a = math.sqrt(2 / math.pi), 0.044715

    def s(self, xp, x):
        return sigmoid(xp, 2 * self.c * (x + self.a * (x * x * x)))

    def f(self, xp, x):
        return x * self.s(xp, x)

    def df(self, xp, x, out):
        s = self.s(xp, x)
        return s + x * s * (1 - s) * 2 * self.c * (1 + 3 * self.a * x * x)


ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus}
