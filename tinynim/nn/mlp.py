"""Multi-layer perceptron: Linear layers with an activation between them, none after the last.

Forward, for ``sizes = [d₀, d₁, ..., d_L]``::

    h₀ = x                                 x: (..., d₀)
    hₖ = φ(hₖ₋₁ Wₖ + bₖ),  k < L           Wₖ: (dₖ₋₁, dₖ)
    out = h_{L-1} W_L + b_L                out: (..., d_L)

It is a :class:`~tinynim.nn.containers.Sequential` of ``Linear, φ, Linear, φ, ..., Linear``,
so params are ``{"0": {"W", "b"}, "1": {}, "2": {"W", "b"}, ...}`` (keys are positions in
that chain; activations have empty params) and the backward is Sequential's chain rule
through the Linear and activation backwards.

``parametrization="ntk"`` builds every Linear in the NTK parametrisation (Jacot et al.,
arXiv:1806.07572): ``hₖ = φ(hₖ₋₁ Wₖ / √dₖ₋₁ + bₖ)`` with Wₖ ~ N(0, 1), bₖ = 0. The readout
(W_L, b_L) then starts symmetric about 0: W_L ~ N(0, 1) and b_L = 0, so the network at
initialisation is odd in its readout, f(x; W, −W_L, −b_L) = −f(x; W, W_L, b_L), while every
per-example gradient's Gram (the empirical NTK) is even in it. Deep-ensemble analyses rely on
that symmetry (e.g. antithetic members).
"""
from __future__ import annotations

from tinynim.nn.activations import ACTIVATIONS
from tinynim.nn.containers import Sequential
from tinynim.nn.linear import PARAMETRIZATIONS, Linear
from tinynim.random import as_rng


class MLP(Sequential):
    def __init__(self, sizes, activation: str = "relu", bias: bool = True, parametrization: str = "standard"):
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes must be [d_in, ..., d_out] with at least 2 entries, got {list(sizes)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP: unknown activation {activation!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"MLP: parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
        self.check_sizes(**{f"sizes[{i}]": n for i, n in enumerate(sizes)})
        self.sizes, self.activation, self.parametrization = list(sizes), activation, parametrization
        linears = [Linear(a, b, bias=bias, parametrization=parametrization) for a, b in zip(sizes[:-1], sizes[1:])]
        chain = [layer for lin in linears[:-1] for layer in (lin, ACTIVATIONS[activation]())]
        super().__init__(*chain, linears[-1])

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"tanh": (MLP([3, 5, 4, 2], activation="tanh"), rng.normal((2, 3)), {}),
                "no_bias": (MLP([3, 4, 2], activation="gelu", bias=False), rng.normal((5, 3)), {}),
                "ntk": (MLP([3, 6, 1], activation="softplus", parametrization="ntk"), rng.normal((4, 3)), {})}
