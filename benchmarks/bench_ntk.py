"""Per-example Jacobians and the empirical NTK of an MLP (ReLU, NTK parametrisation, biases).

* **NTK**: Θ̂(X, X) (N × N) of MLP [2, 1024, 1024, 1] on N = 256 points. tinynim:
  ``tinynim.ntk``, one forward and one ``backward_gram`` of the batch; every Linear layer
  contributes s²(X Xᵀ) ⊙ (G Gᵀ) + G Gᵀ from its input and output cotangent rows, so no
  Jacobian is ever formed (memory O(N·width + N²)). torch: ``torch.func.vmap(jacrev(f))``
  over the examples, then Θ̂ = Σ_leaves J Jᵀ by einsum (the PyTorch NTK tutorial's "Jacobian
  contraction"); JAX: ``jit(vmap(jacrev(f)))`` and the same einsum. Both form the
  N × P Jacobian (P ≈ 1.05 M parameters: 1 GiB in float32).
* **Jacobian**: the per-example parameter Jacobian of MLP [2, 256, 256, 1] on N = 256 points:
  ``tinynim.jacobian(..., wrt="params")`` (one forward and one ``backward_per_example`` of
  the batch with one-hot cotangents) against the same vmap(jacrev).

A step returns ``(Σ entries, {name: array})`` so that the runner compares the sum and the
norm of Θ̂ (or of J) across implementations.
"""
from __future__ import annotations

import math

import numpy as np

import tinynim
from benchmarks.common import F32, Case, TinynimStep, f32, host_flat
from tinynim.backend import asarray, namespace
from tinynim.nn.mlp import MLP
from tinynim.random import RNG
from tinynim.tree import leaves_with_paths

NTK_SIZES, JAC_SIZES, N = [2, 1024, 1024, 1], [2, 256, 256, 1], 256


def _forward(p, x, sizes, relu):
    """One example x (d,) through the NTK-parametrised MLP with tinynim's keys ("2k/W")."""
    h = x
    for k, d_in in enumerate(sizes[:-1]):
        h = h @ p[f"{2 * k}/W"] * (1.0 / math.sqrt(d_in)) + p[f"{2 * k}/b"]
        if k < len(sizes) - 2:
            h = relu(h)
    return h                                                                  # (1,)


def _problem(sizes):
    model = MLP(sizes, activation="relu", parametrization="ntk")
    params = model.init(RNG(0))
    x = np.random.default_rng(1).standard_normal((N, sizes[0]))
    return model, params, x


def _setup(sizes, what, impl):
    model, params, x = _problem(sizes)
    if impl == "tinynim":
        def ntk(params, xs, step):
            theta = tinynim.ntk(model, params, xs)[:, :, 0, 0]
            return namespace(theta).sum(theta), {"ntk": theta}

        def jacobian(params, xs, step):
            return _summed(tinynim.jacobian(model, params, xs, wrt="params"))
        return TinynimStep(ntk if what == "ntk" else jacobian, params, asarray(x))
    flat = {k: f32(v) for k, v in host_flat(params).items()}
    if impl == "torch":
        import torch
        from torch.func import jacrev, vmap
        p = {k: torch.as_tensor(v) for k, v in flat.items()}
        xt = torch.as_tensor(f32(x))
        jac = vmap(jacrev(lambda p, xi: _forward(p, xi, sizes, torch.relu)), in_dims=(None, 0))

        def step():
            with torch.no_grad():
                J = jac(p, xt)
            if what == "jacobian":
                return sum(v.sum() for v in J.values()), J
            theta = sum(torch.einsum("np,mp->nm", v.reshape(N, -1), v.reshape(N, -1)) for v in J.values())
            return theta.sum(), {"ntk": theta}
        return step
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        p = {k: jnp.asarray(v) for k, v in flat.items()}
        xj = jnp.asarray(f32(x))
        jac = jax.vmap(jax.jacrev(lambda p, xi: _forward(p, xi, sizes, jax.nn.relu)), in_axes=(None, 0))

        def ntk(p, x):
            J = jac(p, x)
            theta = sum(jnp.einsum("np,mp->nm", v.reshape(N, -1), v.reshape(N, -1)) for v in J.values())
            return theta.sum(), {"ntk": theta}

        def jacobian(p, x):
            J = jac(p, x)
            return sum(v.sum() for v in J.values()), J
        f = jax.jit(ntk if what == "ntk" else jacobian)
        return lambda: f(p, xj)
    raise ValueError(impl)


def _summed(J):
    return sum(namespace(g).sum(g) for _, g in leaves_with_paths(J)), J


def _counts(sizes, what):
    """Textbook counts (benchmarks/common.py) of the Jacobian route the libraries take: the
    per-example Jacobian J (N × P) from a forward and a backward per example, ~3·N·P
    multiply-adds, written once; for the NTK also its contraction J Jᵀ, N²·P multiply-adds,
    reading J once. tinynim's Gram route never forms J, so it can beat this roofline."""
    P = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    macs = 3 * N * P + (N * N * P if what == "ntk" else 0)
    return 2 * macs, F32 * (2 * N * P + N * sizes[0] + 2 * P + (N * N if what == "ntk" else 0))


CASES = [Case("NTK", lambda impl: _setup(NTK_SIZES, "ntk", impl),
              info=f"MLP {NTK_SIZES} ReLU NTK-param, Θ̂(X, X), N={N}",
              flops=_counts(NTK_SIZES, "ntk")[0], bytes=_counts(NTK_SIZES, "ntk")[1],
              goal_vs_torch=0.5),          # structure-aware: Gram factors instead of the Jacobian
         Case("Jacobian", lambda impl: _setup(JAC_SIZES, "jacobian", impl),
              info=f"MLP {JAC_SIZES} ReLU NTK-param, per-example params Jacobian, N={N}",
              flops=_counts(JAC_SIZES, "jacobian")[0], bytes=_counts(JAC_SIZES, "jacobian")[1],
              goal_vs_torch=1.0)]          # the same Jacobian, one batched backward vs vmap
