"""Linear hypernetworks: layers whose weights are a linear function of a code z.

A *linear hypernetwork* maps a code z ∈ R^M to the weights of a target layer as a linear
combination of M modules (templates) Θ_m, and the target layer then runs on its input::

    W(z) = Σ_m z_m Θ_m                   z: (..., M)   Θ: (M, d_in, d_out)   W: (..., d_in, d_out)
    out  = s · x W(z)                    x: (..., B, d_in)                 out: (..., B, d_out)

with s = 1/√d_in (the NTK parametrisation: the 1/√fan_in of the *generated* layer sits in the
forward pass, so that generated weights of O(1) variance give O(1) pre-activations; this is
``ReparametrizedLinear`` of the hypernetwork papers, e.g. Schug et al., arXiv:2312.15001).
Each leading index (a task) has its own code and its own B inputs: ``x.shape[:-2]`` equals
``z.shape[:-1]``. The generated weights are part of the forward; the backward returns the
gradients of the input, the code and the modules. With T tasks (leading dims flattened),
P = d_in·d_out and G = dL/d(out) (T, B, d_out)::

    dW = s Xᵀ G                       (T, d_in, d_out)   (Linear's dW, per task)
    dx = s G W(z)ᵀ                    (T, B, d_in)
    dz = vec(dW) vec(Θ)ᵀ              (T, M)     dz_{t,m} = ⟨dW_t, Θ_m⟩ (W is linear in z)
    dΘ = Zᵀ vec(dW)                   (M, P)     dΘ_m = Σ_t z_{t,m} dW_t

:class:`HyperMLP` stacks such layers into f(x; z), a multi-layer perceptron some of whose
layers are generated from the one code z (the others are shared :class:`~tinynim.nn.Linear`
layers in the NTK parametrisation), e.g. the teacher and student of arXiv:2312.15001,
f(x; z) = ReLU(x W(z)/√n) A/√h. Its backward sums dz over the generated layers.

Caches: ``HyperLinearCache(x, z, W, lead)``; ``HyperMLPCache(layers, activations)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from tinynim.backend import namespace
from tinynim.nn.activations import ACTIVATIONS
from tinynim.nn.base import Layer
from tinynim.nn.linear import Linear
from tinynim.random import as_rng


class HyperLinearCache(NamedTuple):
    x: object           # (T, B, d_in) the input, leading dims flattened to T
    z: object           # (T, M) the code
    W: object           # (T, d_in, d_out) the generated weights W(z), unscaled
    lead: tuple         # the leading dims of the inputs (T = their product)


class HyperLinear(Layer):
    """out = x W(z) / √d_in with W(z) = Σ_m z_m Θ_m (module docstring). Input ``(x, z)``."""

    def __init__(self, d_code: int, d_in: int, d_out: int, *, init_std: float = 1.0):
        self.check_sizes(d_code=d_code, d_in=d_in, d_out=d_out)
        self.d_code, self.d_in, self.d_out, self.init_std = d_code, d_in, d_out, init_std
        self.scale = 1.0 / math.sqrt(d_in)                                  # s

    @property
    def param_shapes(self):
        return {"Theta": (self.d_code, self.d_in, self.d_out)}

    def init(self, rng, *, dtype=None, backend=None):
        """Θ ~ N(0, init_std²), init_std = 1 (the NTK parametrisation)."""
        return {"Theta": as_rng(rng).normal(self.param_shapes["Theta"], std=self.init_std, dtype=dtype,
                                            backend=backend)}

    def weights(self, params, z):
        """The generated weights W(z) = Σ_m z_m Θ_m, without the forward's 1/√d_in.  (..., d_in, d_out)"""
        self.check_input(z, min_ndim=1, last=self.d_code, what="z")
        self.check_params(params, z)
        xp = namespace(z)
        Z = xp.reshape(z, (-1, self.d_code))                                    # (T, M)
        W = Z @ xp.reshape(params["Theta"], (self.d_code, self.d_in * self.d_out))   # (T, P)
        return xp.reshape(W, tuple(z.shape[:-1]) + (self.d_in, self.d_out))

    def _split(self, x):
        if not isinstance(x, tuple) or len(x) != 2:
            raise TypeError(f"{self.name}: expected x = (inputs, z), got {type(x).__name__}")
        inputs, z = x
        self.check_input(inputs, min_ndim=2, last=self.d_in, what="inputs")
        self.check_input(z, min_ndim=1, last=self.d_code, what="z", like=inputs)
        if tuple(inputs.shape[:-2]) != tuple(z.shape[:-1]):
            raise ValueError(f"{self.name}: expected inputs (..., B, {self.d_in}) and z (..., {self.d_code}) "
                             f"with the same leading dims, got shapes {tuple(inputs.shape)} and {tuple(z.shape)}")
        return inputs, z

    def forward(self, params, x):
        inputs, z = self._split(x)
        self.check_params(params, inputs)
        xp = namespace(inputs)
        X = xp.reshape(inputs, (-1,) + tuple(inputs.shape[-2:]))               # (T, B, d_in)
        W = xp.reshape(self.weights(params, z), (X.shape[0], self.d_in, self.d_out))   # (T, d_in, d_out)
        out = self.scale * (X @ W)                                             # (T, B, d_out)
        return (xp.reshape(out, tuple(inputs.shape[:-1]) + (self.d_out,)),
                HyperLinearCache(X, xp.reshape(z, (-1, self.d_code)), W, tuple(inputs.shape[:-2])))

    def backward(self, params, cache, dout):
        X, Z, W, lead = cache
        self.check_dout(dout, lead + (X.shape[1], self.d_out))
        xp = namespace(dout)
        G = xp.reshape(dout, (X.shape[0], X.shape[1], self.d_out))             # (T, B, d_out)
        dW = self.scale * (xp.matrix_transpose(X) @ G)                         # (T, d_in, d_out)
        dx = self.scale * (G @ xp.matrix_transpose(W))                         # (T, B, d_in)
        P = self.d_in * self.d_out
        dW = xp.reshape(dW, (X.shape[0], P))                                   # (T, P)
        Theta = xp.reshape(params["Theta"], (self.d_code, P))                  # (M, P)
        dz = dW @ Theta.T                                                      # (T, M)
        dTheta = xp.reshape(Z.T @ dW, (self.d_code, self.d_in, self.d_out))    # (M, d_in, d_out)
        return ((xp.reshape(dx, lead + (X.shape[1], self.d_in)), xp.reshape(dz, lead + (self.d_code,))),
                {"Theta": dTheta})

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"tasks": (HyperLinear(3, 4, 2), (rng.normal((5, 6, 4)), rng.normal((5, 3))), {}),
                "small_init": (HyperLinear(2, 3, 4, init_std=0.5), (rng.normal((3, 7, 3)), rng.normal((3, 2))), {}),
                "nested": (HyperLinear(4, 2, 3), (rng.normal((2, 3, 5, 2)), rng.normal((2, 3, 4))), {})}


class HyperMLPCache(NamedTuple):
    layers: tuple           # each affine layer's cache
    activations: tuple      # each activation's cache (one fewer)


class HyperMLP(Layer):
    """f(x; z): an MLP on ``sizes = [d₀, ..., d_L]`` whose layer l is generated from the code z
    (a :class:`HyperLinear`) where ``generated[l]`` and a shared NTK :class:`Linear` elsewhere;
    `activation` between layers, none after the last. Input ``(x, z)``, x (..., B, d₀),
    z (..., M); output (..., B, d_L). Params ``{"0": ..., ..., "L-1": ...}`` (``{"Theta"}`` or
    ``{"W"[, "b"]}``). Backward: the chain rule through the layers, with
    dz = Σ over the generated layers of their dz."""

    def __init__(self, d_code: int, sizes, *, generated=None, activation: str = "relu", bias: bool = False,
                 init_std: float = 1.0):
        if len(sizes) < 2:
            raise ValueError(f"HyperMLP: sizes must be [d_in, ..., d_out] with at least 2 entries, got {list(sizes)}")
        self.check_sizes(d_code=d_code, **{f"sizes[{i}]": n for i, n in enumerate(sizes)})
        generated = (True,) * (len(sizes) - 1) if generated is None else tuple(bool(g) for g in generated)
        if len(generated) != len(sizes) - 1 or not any(generated):
            raise ValueError(f"HyperMLP: generated must flag each of the {len(sizes) - 1} layers, at least one "
                             f"True, got {generated}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"HyperMLP: unknown activation {activation!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        self.d_code, self.sizes, self.generated, self.activation = d_code, list(sizes), generated, activation
        self.layers = [HyperLinear(d_code, a, b, init_std=init_std) if g else
                       Linear(a, b, bias=bias, init_std=init_std, parametrization="ntk")
                       for a, b, g in zip(sizes[:-1], sizes[1:], generated)]
        self.act = ACTIVATIONS[activation]()

    @property
    def param_shapes(self):
        return {str(i): layer.param_shapes for i, layer in enumerate(self.layers)}

    def init(self, rng, *, dtype=None, backend=None):
        rng = as_rng(rng)
        return {str(i): layer.init(rng, dtype=dtype, backend=backend) for i, layer in enumerate(self.layers)}

    def forward(self, params, x):
        if not isinstance(x, tuple) or len(x) != 2:
            raise TypeError(f"{self.name}: expected x = (inputs, z), got {type(x).__name__}")
        h, z = x
        self.check_input(h, min_ndim=2, last=self.sizes[0], what="inputs")
        self.check_params(params, h)
        caches, acts = [], []
        for i, (layer, g) in enumerate(zip(self.layers, self.generated)):
            if i:
                h, c = self.act.forward({}, h)
                acts.append(c)
            h, c = layer.forward(params[str(i)], (h, z) if g else h)
            caches.append(c)
        return h, HyperMLPCache(tuple(caches), tuple(acts))

    def backward(self, params, cache, dout):
        layers, acts = cache
        dz, grads = None, {}
        for i in reversed(range(len(self.layers))):
            dout, grads[str(i)] = self.layers[i].backward(params[str(i)], layers[i], dout)
            if self.generated[i]:
                dout, dz_i = dout
                dz = dz_i if dz is None else dz + dz_i
            if i:
                dout, _ = self.act.backward({}, acts[i - 1], dout)
        return (dout, dz), {str(i): grads[str(i)] for i in range(len(self.layers))}

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"first_generated": (HyperMLP(3, [4, 5, 2], generated=(True, False), activation="tanh"),
                                    (rng.normal((2, 6, 4)), rng.normal((2, 3))), {}),
                "middle_generated": (HyperMLP(2, [3, 4, 4, 2], generated=(False, True, False), activation="softplus",
                                              bias=True), (rng.normal((3, 5, 3)), rng.normal((3, 2))), {}),
                "all_generated": (HyperMLP(2, [3, 4, 2], activation="gelu"),
                                  (rng.normal((4, 5, 3)), rng.normal((4, 2))), {})}
