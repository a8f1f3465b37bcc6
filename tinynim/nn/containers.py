"""Composition of layers: a chain and a skip connection.

Sequential. Forward ``h₀ = x, hₖ = layerₖ(hₖ₋₁), out = h_L``; params and grads are
``{"0": params₀, "1": params₁, ...}`` and the cache is the tuple of the children's caches
``(cache₀, cache₁, ...)``. Backward is the chain rule read right to left: ``g_L = dout,
g_{k-1} = dx of layerₖ's backward at g_k``; each child returns the grads of its own params on
the way.

Residual. Forward ``out = x + layer(x)`` (x and layer(x) of equal shape); params, grads and
cache are the inner layer's own. Backward: x reaches the output along two paths, the
identity and the layer, so their contributions add: ``dx = dout + dx_layer``; the layer's
grads are those of the inner backward at dout.

Skipping the input gradient (``need_dx=False``, see :mod:`tinynim.nn.base`): only the first
layer of a chain is told to skip it; every later layer's dx is the chain's cotangent. A
Residual passes the flag to its layer and returns None.

Per-call keywords. ``forward(params, x, **kw)`` passes each keyword to every child whose
``forward`` accepts it (its :attr:`~tinynim.nn.base.Layer.keywords`, read from the
signature; a container accepts what any of its children accepts), e.g. ``mask=`` reaches
every attention layer of a :class:`~tinynim.nn.transformer.TransformerBlock`. A keyword no
child accepts is a TypeError naming the container and the keyword. A child's ``dout`` is
validated by the child, so a wrong ``dout`` is reported by the last layer of the chain.
"""
from __future__ import annotations

import functools
from functools import cached_property

from tinynim.backend import asarray
from tinynim.nn.base import Layer, add_gram
from tinynim.nn.activations import Tanh
from tinynim.nn.attention import SoftmaxAttention
from tinynim.nn.linear import Linear
from tinynim.random import as_rng


def route_keywords(container, layers, kw):
    """``[kwargs of layer 0, kwargs of layer 1, ...]``: each keyword to every layer accepting it."""
    unknown = sorted(set(kw) - container.keywords)
    if unknown:
        raise TypeError(f"{container.name}.forward: no layer accepts keyword(s) {unknown}; "
                        f"accepted: {sorted(container.keywords)}")
    return [{k: v for k, v in kw.items() if k in layer.keywords} for layer in layers]


def _masked_attention_example(rng, wrap):
    """A (layer, x, {"mask": ...}) example: `wrap` around a non-causal SoftmaxAttention(4, 2)."""
    rng = as_rng(rng)
    mask = rng.uniform((3, 3), host=True) < 0.7
    return wrap(SoftmaxAttention(4, 2)), rng.normal((2, 3, 4)), {"mask": asarray(mask)}


class Sequential(Layer):
    def __init__(self, *layers):
        if not layers:
            raise ValueError(f"{type(self).__name__}: needs at least one layer")
        self.layers = layers

    @cached_property
    def keywords(self):
        return frozenset().union(*(layer.keywords for layer in self.layers))

    @property
    def param_shapes(self):
        return {str(k): layer.param_shapes for k, layer in enumerate(self.layers)}

    def init(self, rng, *, dtype=None, backend=None):
        """Each child initialised from its own independent stream (``rng.spawn``)."""
        rngs = as_rng(rng).spawn(len(self.layers))
        return {str(k): layer.init(r, dtype=dtype, backend=backend)
                for k, (layer, r) in enumerate(zip(self.layers, rngs))}

    def forward(self, params, x, **kw):
        self.check_params(params, x)
        caches = []
        for k, (layer, kw_k) in enumerate(zip(self.layers, route_keywords(self, self.layers, kw))):
            x, cache = layer.forward(params[str(k)], x, **kw_k)
            caches.append(cache)
        return x, tuple(caches)

    def backward(self, params, cache, dout, *, need_dx=True):
        return self._chain("backward", params, cache, dout, need_dx=need_dx)

    def _chain(self, method, params, cache, dout, *args, need_dx=True):
        """The chain rule right to left: each child's `method` (backward, backward_per_example,
        backward_gram) maps the cotangent of its output to that of its input and returns its
        own grads (or Gram) on the way: ``(dx, {"0": result₀, ...})``. need_dx=False (backward
        only) reaches the first child."""
        results = {}
        for k in reversed(range(len(self.layers))):
            skip = {} if k or need_dx else {"need_dx": False}
            dout, results[str(k)] = getattr(self.layers[k], method)(params[str(k)], cache[k], dout, *args, **skip)
        return dout, results

    @property
    def per_example(self):
        return all(layer.per_example for layer in self.layers)

    def backward_per_example(self, params, cache, dout):
        return self._chain("backward_per_example", params, cache, dout)

    def backward_gram(self, params, cache, dout, split=None):
        """The children's Grams add up: the parameters are theirs, disjoint."""
        dx, grams = self._chain("backward_gram", params, cache, dout, split)
        return dx, functools.reduce(add_gram, grams.values(), None)

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"chain": (Sequential(Linear(3, 4), Tanh(), Linear(4, 2)), rng.normal((2, 3)), {}),
                "keywords": _masked_attention_example(rng, lambda a: Sequential(a, Linear(4, 2)))}


class Residual(Layer):
    def __init__(self, layer):
        self.layer = layer

    @cached_property
    def keywords(self):
        return self.layer.keywords

    @property
    def param_shapes(self):
        return self.layer.param_shapes

    def init(self, rng, *, dtype=None, backend=None):
        return self.layer.init(rng, dtype=dtype, backend=backend)

    def forward(self, params, x, **kw):
        (kw,) = route_keywords(self, [self.layer], kw)
        y, cache = self.layer.forward(params, x, **kw)
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"{self.name}: inner {self.layer.name} maps x of shape {tuple(x.shape)} "
                             f"to shape {tuple(y.shape)}; expected the shape of x")
        return x + y, cache

    def backward(self, params, cache, dout, *, need_dx=True):
        dx, grads = self.layer.backward(params, cache, dout, need_dx=need_dx)
        return (dout + dx if need_dx else None), grads

    @property
    def per_example(self):
        return self.layer.per_example

    def backward_per_example(self, params, cache, dout):
        dx, grads = self.layer.backward_per_example(params, cache, dout)
        return dout + dx, grads

    def backward_gram(self, params, cache, dout, split=None):
        dx, gram = self.layer.backward_gram(params, cache, dout, split)
        return dout + dx, gram

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"chain": (Residual(Sequential(Linear(3, 3), Tanh())), rng.normal((2, 5, 3)), {}),
                "keywords": _masked_attention_example(rng, Residual)}
