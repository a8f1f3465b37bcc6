"""One evolution-strategies step (P8, arXiv:2408.10818), two cases. The memory-game storage policy of
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

The second case is the same step for the associative-recall model of
``tasks.associative_recall`` (the seeded linear-attention memory, N = 8 keys, state M = 4,
12-bit values, B = 16 value draws × m = 16 seeds, R̂_{16,16} of the exact-recall failure):
tinynim ``population_risk_fast`` (every member in one batched forward; it uses that the gates
depend on the seed only, so the (seed × draw) batch is never tiled and the read is one GEMM,
tested equal to the plain ``population_risk``), torch by broadcasting over a (64, D) member
matrix, JAX ``jit(vmap)`` of the one-member risk (both on the tiled batch, as the plain path).

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


# -- associative recall ----------------------------------------------------------------------------

RN, RM, RD, RB = 8, 4, 12, 16          # keys, state dimension, value bits, value draws (seed dim DS, m = SEEDS)
SIZES = {"A": (RM, RN), "Q": (RM, RN), "U": (RN, DS), "b": (RN,)}     # tinynim's flatten order (sorted keys)


def _recall_data():
    rng = np.random.default_rng(0)
    slots = np.repeat(np.eye(RM), RN // RM, axis=1) * 3.0                 # near the randomized optimum (a
    w = np.repeat(rng.standard_normal((RM, DS)), RN // RM, axis=0)        # recall ≈ ½ for every key): the
    w[1::2] *= -1                                                          # losses differ across members
    params = {"A": slots + rng.normal(0, 0.3, (RM, RN)), "Q": slots + rng.normal(0, 0.3, (RM, RN)),
              "U": 3 * w + rng.normal(0, 0.3, (RN, DS)), "b": rng.normal(0, 0.3, RN)}
    values = np.sign(rng.standard_normal((RB, RN, RD)))
    seeds = rng.standard_normal((SEEDS, DS))
    from tinynim.random import RNG
    eps = RNG(1).normal((PAIRS, sum(int(np.prod(s)) for s in SIZES.values())), host=True)
    tiled = np.broadcast_to(values[None], (SEEDS,) + values.shape).reshape(-1, RN, RD)    # row j·B + b
    r = np.broadcast_to(seeds[:, None], (SEEDS, RB, DS)).reshape(-1, DS)
    return {k: f32(v) for k, v in params.items()}, f32(values), f32(seeds), f32(eps), f32(tiled), f32(r)


def _split(members):
    """(P, D) flat members -> A, Q, U, b with a leading population axis."""
    out, start = [], 0
    for shape in SIZES.values():
        size = int(np.prod(shape))
        out.append(members[:, start:start + size].reshape((-1,) + shape))
        start += size
    return out


def _recall_risk(A, C, U, b, V, r, lib):
    """R̂_{q,m} of exact-recall failure for members with leading axes (torch or jax.numpy);
    C is the query embedding (tinynim's params["Q"]; Q is the exponent q here)."""
    g = 1 / (1 + lib.exp(-(r @ lib.swapaxes(U, -1, -2) + b[..., None, :])))      # (..., mB, N)
    G = lib.swapaxes(C, -1, -2) @ A                                               # (..., N, N) query c_i · key a_t
    y = g[..., None] * (G[..., None, :, :] @ (g[..., None] * V))                 # (..., mB, N, d)
    log_p = -lib.logaddexp(lib.zeros_like(y), -V * y).sum(-1)                    # (..., mB, N)
    fail = -lib.expm1(log_p)
    L = fail.reshape(fail.shape[:-2] + (SEEDS, RB, RN)).mean(-2).mean(-2)        # (..., N) ℓ̄ (seeds and draws)
    t = lib.amax(L, -1, keepdims=True)
    return (t * ((L / t) ** Q).mean(-1, keepdims=True) ** (1 / Q))[..., 0]


def setup_recall(impl):
    params, values, seeds, eps, tiled, r = _recall_data()
    if impl == "torch":
        import torch
        theta = torch.cat([torch.as_tensor(params[k]).reshape(-1) for k in SIZES])
        e, V, rt = (torch.as_tensor(a) for a in (eps, tiled, r))

        def step():
            with torch.no_grad():
                risk = _recall_risk(*_split(theta[None, :] + SIGMA * torch.cat([e, -e], 0)), V, rt, torch)
                w = (risk[:PAIRS] - risk[PAIRS:]) / (2 * PAIRS * SIGMA)
            return risk.mean(), {"theta": w @ e}
        return step
    if impl == "jax":
        import jax
        import jax.numpy as jnp
        theta = jnp.concatenate([jnp.asarray(params[k]).reshape(-1) for k in SIZES])
        e, V, rt = (jnp.asarray(a) for a in (eps, tiled, r))

        @jax.jit
        def step_jit(theta, e, V, rt):                                   # data as arguments: no constant folding
            one = lambda t: _recall_risk(*(a[0] for a in _split(t[None, :])), V, rt, jnp)   # noqa: E731
            risk = jax.vmap(one)(theta[None, :] + SIGMA * jnp.concatenate([e, -e], 0))
            w = (risk[:PAIRS] - risk[PAIRS:]) / (2 * PAIRS * SIGMA)
            return risk.mean(), {"theta": w @ e}
        return lambda: step_jit(theta, e, V, rt)
    from tasks.associative_recall import population_risk_fast
    from tinynim.backend import asarray
    from tinynim.es import es_gradient_population
    from tinynim.random import RNG
    p, vs, ss = {k: asarray(v) for k, v in params.items()}, asarray(values), asarray(seeds)

    def step():
        grads, info = es_gradient_population(lambda pop: population_risk_fast(pop, vs, ss, Q), p, RNG(1), sigma=SIGMA,
                                             n_pairs=PAIRS, rank_shaping=False)
        return info["loss"], grads
    return step


HOST = {"tinynim-jit": "an ES step draws its noise and reads the losses on the host (tinynim.es), so it is not one "
                      "traceable function; the batched population forward inside it is"}
CASES = [Case("ES step (memory game)", setup, skip=HOST,
              info=f"population {2 * PAIRS} antithetic, N={N}, M={M}, seed dim {DS}, m={SEEDS}, q={Q:g}"),
         Case("ES step (associative recall)", setup_recall, skip=HOST,
              info=f"population {2 * PAIRS} antithetic, N={RN}, M={RM}, d={RD}, B={RB}, m={SEEDS}, q={Q:g}")]
