"""One evolution-strategies step (P8, arXiv:2408.10818): the memory-game storage policy of
``tasks.randomized_algorithms`` (N = 8 items, M = 3 kept, 8-dimensional seeds), population
64 (32 antithetic pairs), m = 16 seeds shared by all members, objective R̂_{16,16}, plain
(not rank-shaped) antithetic estimate. The whole population is evaluated in one batched
call, no Python loop over members.

tinynim: ``tinynim.es.es_gradient_population`` with ``tasks.randomized_algorithms.risk``
(parameter leaves with a leading population axis). torch: the same maths on a (64, D)
matrix of members by broadcasting; JAX: ``jit`` of ``vmap`` over members of the one-member
objective. Same ε (drawn on the host), same seeds, so every implementation returns the same
mean loss and the same gradient estimate. A step has no backward pass: the "grads" compared
by the runner are the ES estimate.

    python -m benchmarks.run --only es
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import Case, f32

N, M, DS, PAIRS, SEEDS, SIGMA, Q = 8, 3, 8, 32, 16, 0.1, 16.0


def _data():
    rng = np.random.default_rng(0)
    U, b = rng.normal(0, 0.5, (N, DS)), rng.normal(0, 0.1, N)
    r = rng.standard_normal((SEEDS, DS))
    from tinynim.random import RNG
    eps = RNG(1).normal((PAIRS, N * DS + N), host=True)               # tinynim's draw for RNG(1)
    return f32(U), f32(b), f32(r), f32(eps)


def _torch_step(U, b, r, eps):
    """The ES estimate by broadcasting over members: θ ± σε, losses, (L⁺ − L⁻)/(2nσ) ε."""
    import torch
    theta = torch.cat([U.reshape(-1), b])
    members = theta[None, :] + SIGMA * torch.cat([eps, -eps], 0)        # (2n, D)
    Us = members[:, :N * DS].reshape(-1, N, DS)
    s = r @ Us.transpose(-1, -2) + members[:, None, N * DS:]          # (2n, m, N)
    kth = torch.sort(s, -1).values[..., N - M:N - M + 1]
    mean = 1.0 - (s >= kth).to(s.dtype).mean(1)                        # (2n, N) ℓ̄
    risk = (mean ** Q).mean(-1) ** (1 / Q)                             # (2n,)
    w = (risk[:PAIRS] - risk[PAIRS:]) / (2 * PAIRS * SIGMA)
    return risk.mean(), w @ eps


def setup(impl):
    U, b, r, eps = _data()
    if impl == "torch":
        import torch
        t = [torch.as_tensor(a) for a in (U, b, r, eps)]

        def step():
            with torch.no_grad():
                loss, g = _torch_step(*t)
            return loss, {"theta": g}
        return step
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        Uj, bj, rj, ej = (jnp.asarray(a) for a in (U, b, r, eps))

        def one(theta, r):                                             # R̂ of one member
            s = r @ theta[:N * DS].reshape(N, DS).T + theta[N * DS:]     # (m, N)
            kth = jnp.sort(s, -1)[:, N - M:N - M + 1]
            mean = 1.0 - (s >= kth).astype(s.dtype).mean(0)
            return (mean ** Q).mean() ** (1 / Q)

        @jax.jit
        def step_jit(U, b, r, e):                                      # data as arguments: no constant folding
            theta = jnp.concatenate([U.reshape(-1), b])
            risk = jax.vmap(lambda t: one(t, r))(theta[None, :] + SIGMA * jnp.concatenate([e, -e], 0))
            w = (risk[:PAIRS] - risk[PAIRS:]) / (2 * PAIRS * SIGMA)
            return risk.mean(), {"theta": w @ e}
        return lambda: step_jit(Uj, bj, rj, ej)
    from tasks.randomized_algorithms import MemoryRun, risk
    from tinynim.backend import asarray
    from tinynim.es import es_gradient_population
    from tinynim.random import RNG
    run = MemoryRun(q=Q, m=SEEDS, N=N, M=M, d_seed=DS)
    params, rs = {"U": asarray(U), "b": asarray(b)}, asarray(r)

    def step():
        grads, info = es_gradient_population(lambda p: risk(p, rs, run), params, RNG(1), sigma=SIGMA,
                                             n_pairs=PAIRS, rank_shaping=False)
        return info["loss"], grads
    return step


CASES = [Case("ES step (memory game)", setup,
              info=f"population {2 * PAIRS} antithetic, N={N}, M={M}, seed dim {DS}, m={SEEDS}, q={Q:g}")]
