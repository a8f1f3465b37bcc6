"""Elementwise activations: no parameters, any input shape.

Forward ``out = f(x)`` entrywise. Backward: out_i depends on x_i alone, so the Jacobian is
diagonal and ``dx = dout · f'(x)``; each f' below is written from the cached x and/or out::

    ReLU      f = max(x, 0)                        f' = 1[x > 0]   (0 at the kink x = 0)
    Tanh      f = tanh x                           f' = 1 − out²
    Sigmoid   f = σ(x) = 1 / (1 + e⁻ˣ)             f' = out (1 − out)
    Softplus  f = log(1 + eˣ) = logaddexp(0, x)    f' = σ(x)
    GELU      f = ½ x (1 + tanh u),  u = c (x + a x³),  c = √(2/π), a = 0.044715
                = x s,  s = σ(2u)   (as ½ (1 + tanh u) = σ(2u))
              f' = s + x s (1 − s) · 2c (1 + 3 a x²)

Edge values follow torch: NaN propagates through every f (ReLU included: max(NaN, 0) is NaN),
f'(±inf) is the limit (Softplus: f'(+inf) = σ(+inf) = 1).

σ has two forms: :func:`sigmoid`, the plain one, written so that it never overflows, and
:func:`sigmoid_tanh` = ½ (1 + tanh(x/2)), the same function through tanh (which never
overflows either) and several times faster on NumPy: the layers use it; a test checks that
both agree. The cubic is written x·x·x, since NumPy's ``x**3`` takes the slow general power
path.

Cache: ``ActivationCache(x, out)`` (GELU: ``GELUCache(x, s)``, see :class:`GELU`), with x None
where f' is written from out alone (ReLU: 1[x > 0] = 1[out > 0], NaN included; Tanh;
Sigmoid): the input is not kept alive for the backward (in an MLP it is the pre-activation,
a whole (B, width) array per layer; torch's autograd keeps only out there too).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from tinynim.backend import namespace
from tinynim.nn.base import Layer
from tinynim.random import as_rng


def sigmoid(xp, x):
    """σ(x) = 1 / (1 + e⁻ˣ) with e = e^{−|x|} ≤ 1, so nothing overflows:
    σ = 1 / (1 + e) for x ≥ 0 and e / (1 + e) for x < 0 (the plain form)."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, xp.ones_like(e), e) / (1 + e)


def sigmoid_tanh(xp, x):
    """σ(x) = ½ (1 + tanh(x/2)): the fast form of :func:`sigmoid` (one tanh, no division)."""
    return 0.5 * (1 + xp.tanh(0.5 * x))


class ActivationCache(NamedTuple):
    x: object           # the input
    out: object         # f(x), same shape


class Elementwise(Layer):
    """Base class: a subclass gives ``f(xp, x)`` and ``df(xp, x, out)`` (GELU overrides
    forward and backward, to spare passes over memory); each subclass gets one example
    route, "default", a small random input. ``keeps_x = False`` for an f' written from out
    alone: the cache then holds None for x, and df gets x = None."""
    keeps_x = True

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.examples = classmethod(lambda c, rng: {"default": (c(), as_rng(rng).normal((2, 3, 4)), {})})

    @property
    def param_shapes(self):
        return {}

    def f(self, xp, x):
        raise NotImplementedError

    def df(self, xp, x, out):
        raise NotImplementedError

    def forward(self, params, x):
        xp = self.check_input(x)
        out = self.f(xp, x)                          # same shape as x
        return out, ActivationCache(x if self.keeps_x else None, out)

    def backward(self, params, cache, dout):
        self.check_dout(dout, tuple(cache.out.shape))
        return dout * self.df(namespace(cache.out), cache.x, cache.out), {}

    def backward_per_example(self, params, cache, dout):
        """No parameters, so nothing to keep apart: the backward itself."""
        return self.backward(params, cache, dout)


class ReLU(Elementwise):
    keeps_x = False

    def f(self, xp, x):
        return xp.maximum(x, 0.0)                    # maximum propagates NaN; no array of zeros

    def df(self, xp, x, out):
        return xp.astype(out > 0, out.dtype)         # a 0/1 product: numpy's where on a random
                                                     # mask was ~10x slower than this

    def backward(self, params, cache, dout):
        """dout · 1[out > 0], the product taken in place on the 0/1 array (one temporary, not two)."""
        self.check_dout(dout, tuple(cache.out.shape))
        dx = self.df(namespace(dout), None, cache.out)
        dx *= dout                                   # our own fresh array; the same numbers as dout · f'
        return dx, {}


class Tanh(Elementwise):
    keeps_x = False

    def f(self, xp, x):
        return xp.tanh(x)

    def df(self, xp, x, out):
        # exercise: activations
        return 1 - out * out
        # end exercise


class Sigmoid(Elementwise):
    keeps_x = False

    def f(self, xp, x):
        return sigmoid_tanh(xp, x)

    def df(self, xp, x, out):
        # exercise: activations
        return out * (1 - out)
        # end exercise


class Softplus(Elementwise):
    def f(self, xp, x):
        return xp.logaddexp(xp.zeros_like(x), x)

    def df(self, xp, x, out):
        return sigmoid_tanh(xp, x)                   # not exp(x − out): NaN at x = +inf


class GELUCache(NamedTuple):
    x: object           # the input
    s: object           # s = σ(2u), same shape (out = x s)


class GELU(Elementwise):
    """The tanh approximation (Hendrycks & Gimpel), as torch's ``gelu(approximate="tanh")``.

    Written for few passes over memory (it runs on the widest activations of a transformer):
    s = ½ + ½ tanh(x (c + c a x²)) (u = c (x + a x³) with the ½ of σ(2u) = ½ (1 + tanh u)
    folded into one product), out = x s; the cache keeps s, so the backward does not
    recompute the tanh: f' = s + x s (1 − s) (2c + 6 c a x²).
    Cache: ``GELUCache(x, s)``.
    """
    c, a = math.sqrt(2 / math.pi), 0.044715

    def s(self, xp, x):
        return 0.5 + 0.5 * xp.tanh(x * (self.c + (self.c * self.a) * (x * x)))

    def forward(self, params, x):
        xp = self.check_input(x)
        s = self.s(xp, x)
        return x * s, GELUCache(x, s)

    def backward(self, params, cache, dout):
        x, s = cache
        self.check_dout(dout, tuple(x.shape))
        # exercise: activations
        slope = (2 * self.c) + (6 * self.c * self.a) * (x * x)                # 2c (1 + 3a x²)
        return dout * (s + (x * (s * (1.0 - s))) * slope), {}
        # end exercise


ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus}
