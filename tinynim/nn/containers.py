"""Composition of layers: a chain and a skip connection.

Sequential. Forward ``h₀ = x, hₖ = layerₖ(hₖ₋₁), out = h_L``; params and grads are
``{"0": params₀, "1": params₁, ...}`` and the cache is the tuple of the children's caches.
Backward is the chain rule read right to left: ``g_L = dout, g_{k-1} = dx of layerₖ's
backward at g_k``; each child returns the grads of its own params on the way.

Residual. Forward ``out = x + layer(x)`` (x and layer(x) of equal shape); params, grads and
cache are the inner layer's own. Backward: x reaches the output along two paths, the
identity and the layer, so their contributions add: ``dx = dout + dx_layer``; the layer's
grads are those of the inner backward at dout.
"""
from __future__ import annotations

from tinynim.nn.base import Layer
from tinynim.nn.activations import Tanh
from tinynim.nn.linear import Linear
from tinynim.random import as_rng


class Sequential(Layer):
    def __init__(self, *layers):
        if not layers:
            raise ValueError(f"{type(self).__name__}: needs at least one layer")
        self.layers = layers

    def init(self, rng, *, dtype=None, backend=None):
        """Each child initialised from its own independent stream (``rng.spawn``)."""
        rngs = as_rng(rng).spawn(len(self.layers))
        return {str(k): layer.init(r, dtype=dtype, backend=backend)
                for k, (layer, r) in enumerate(zip(self.layers, rngs))}

    def forward(self, params, x):
        self.require_keys(params, [str(k) for k in range(len(self.layers))])
        caches = []
        for k, layer in enumerate(self.layers):
            x, cache = layer.forward(params[str(k)], x)
            caches.append(cache)
        return x, tuple(caches)

    def backward(self, params, cache, dout):
        grads = {}
        for k in reversed(range(len(self.layers))):
            dout, grads[str(k)] = self.layers[k].backward(params[str(k)], cache[k], dout)
        return dout, grads

    @staticmethod
    def example(rng):
        return Sequential(Linear(3, 4), Tanh(), Linear(4, 2)), as_rng(rng).normal((2, 3)), {}


class Residual(Layer):
    def __init__(self, layer):
        self.layer = layer

    def init(self, rng, *, dtype=None, backend=None):
        return self.layer.init(rng, dtype=dtype, backend=backend)

    def forward(self, params, x):
        y, cache = self.layer.forward(params, x)
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"{self.name}: inner {self.layer.name} maps x of shape {tuple(x.shape)} "
                             f"to shape {tuple(y.shape)}; expected the shape of x")
        return x + y, cache

    def backward(self, params, cache, dout):
        dx, grads = self.layer.backward(params, cache, dout)
        return dout + dx, grads

    @staticmethod
    def example(rng):
        return Residual(Sequential(Linear(3, 3), Tanh())), as_rng(rng).normal((2, 5, 3)), {}
