"""Learning-aware policy gradients from samples (Meulemans et al., arXiv:2410.18636): batched
rollouts of a tabular meta agent against naive learners on the iterated prisoner's dilemma,
an exactly solvable sampled game for a Monte-Carlo test of Theorem 3.1, and the sampled
comparison of the estimators (the paper's Fig. 5A, at CPU scale; settings ours).

**Rollouts.** Arrays carry the shape (..., N, B): any leading axes (independent runs), N
co-players, each meeting the meta agent in B parallel trajectories of M episodes of T steps
(L = M T). The meta policy is *time-indexed tabular*: π(C | m, s) = σ(θ[m, s]), θ (..., M, 5),
s the own-first state of :mod:`tasks.ipd` within the episode (s0 at its start). Its score is
one-hot: ∂ log π(a | m, s)/∂θ[m', s'] = 1[m' = m, s' = s] (1[a = C] − σ(θ[m, s])), so every
estimator of :mod:`tasks.learning_aware_pg` contracts to (:func:`tabular_gradient`)::

    g[m, s] = red_b Σ_t w[b, mT + t] (1[a = C] − p)[b, mT + t] 1[s_{b, mT+t} = s]

with w the estimator's weights (Algorithm 1) and red_b its reduction over the batch (sum or
mean); :func:`full_scores` builds the plain (..., B, L, M·5) scores beside it, tested equal.

**Naive co-players** (:class:`Naive`): 5 logits ψ, P(C | s) = σ(ψ[s]) on their own-first
state (``memoryless``: always ψ[0]). After every episode each co-player learns from its whole
batch, ψ ← ψ + η Δ:

* ``"reinforce"``: Δ = 1/B Σ_b Σ_t (G_t^b − mean_b' G_t^b') (1[c = C] − q) e_s, the return-to-go
  G_t within the episode and a batch-mean baseline (the issue's tabular naive learner);
* ``"sign"``: Δ = 1/B Σ_b Σ_t ±r²_t e_s (+ when it cooperated): REINFORCE with the score
  replaced by its sign (ours). Memoryless, ψ stays on the lattice ψ₀ + (η/B) ℤ, which makes
  J̄ exactly computable (:func:`lattice_objective`).

**The exact sampled game (ours).** Against a memoryless ``"sign"`` co-player the per-step
increments k = ±r² lie in {1, −1, −2, 0} (C after C, C after D, D after C, D after D; the
co-player's action first), so an episode adds an integer in [−2T, T] per trajectory and the
batch adds the B-fold convolution of that distribution. With K_m the integer sum after m
updates (ψ_m = ψ₀ + η K_m/B), by enumerating the 4^T action sequences of one trajectory::

    J̄(θ) = Σ_m Σ_K P(K_m = K) E[Σ_t r_t | θ[m], ψ(K)],     P(K_{m+1}) = P(K_m) ⋆ f_m^{⋆B}

(a dynamic programme over the lattice, no sampling). Every operation is a polynomial in
σ(θ), so ∇J̄ is exact by the complex step (:func:`tasks.ipd.complex_step`). Theorem 3.1 needs
only that the co-player learns from the whole batch, so this game tests it at sizes where
enumerating meta-trajectories is infeasible (B = 8, M = 5, T = 3: 64^40 of them).
"""
from __future__ import annotations

import dataclasses
import itertools

import array_api_compat
import numpy as np

from tinynim.backend import asarray, namespace, to_numpy, use_dtype
from tinynim.experiment import scaled
from tinynim.optim import Adam
from tinynim.random import RNG

from tasks import ipd
from tasks.learning_aware_pg import ESTIMATORS, estimator_weights


@dataclasses.dataclass(frozen=True)
class Naive:
    """A naive co-player's learning rule (see the module docstring): "reinforce" or "sign"."""
    rule: str = "reinforce"
    eta: float = 1.0
    memoryless: bool = False

    def __post_init__(self):
        if self.rule not in ("reinforce", "sign"):
            raise ValueError(f"Naive: rule must be 'reinforce' or 'sign', got {self.rule!r}")


def _learn(naive: Naive, psi, obs, coop, rewards):
    """ψ (..., N, 5) after one episode; obs (..., N, B, T, 5) the co-player's one-hot states,
    coop its 1[c = C] (..., N, B, T), rewards its own (..., N, B, T)."""
    xp = namespace(psi)
    q = ipd.sigmoid(xp.sum(obs * psi[..., None, None, :], axis=-1))           # (..., N, B, T)
    if naive.rule == "sign":
        weight = (2 * coop - 1) * rewards
    else:
        togo = xp.flip(xp.cumulative_sum(xp.flip(rewards, axis=-1), axis=-1), axis=-1)
        weight = (togo - xp.mean(togo, axis=-2, keepdims=True)) * (coop - q)
    return psi + naive.eta * xp.mean(xp.sum(weight[..., None] * obs, axis=-2), axis=-2)


class TabularPolicy:
    """The time-indexed tabular meta policy π(C | m, s) = σ(θ[m, s]), θ (..., M, 5): the step
    interface of :func:`rollout` (no memory beyond the episode index and the state)."""

    def __init__(self, theta):
        if theta.ndim < 2 or theta.shape[-1] != 5:
            raise ValueError(f"TabularPolicy: expected θ of shape (..., M, 5), got {tuple(theta.shape)}")
        self.theta, self.M, self.lead = theta, theta.shape[-2], tuple(theta.shape[:-2])

    def start(self, shape):
        return None

    def step(self, carry, m: int, t: int, state, last, r_prev):
        """P(C) (..., N, B) at step t of episode m from the own-first state; `last` (the last
        outcome over the long history) and `r_prev` (the last reward) are not used."""
        xp = namespace(self.theta)
        th = self.theta[..., None, None, m, :]                                  # (..., 1, 1, 5)
        return ipd.sigmoid(xp.sum(ipd.observe(state, self.theta.dtype) * th, axis=-1)), None


def rollout(policy, psi, rng: RNG, *, B: int, T: int, naive: Naive):
    """Sample B meta-trajectories of M = policy.M episodes per co-player: `policy` a
    :class:`TabularPolicy` (or any object with its step interface, e.g. a sequence model),
    ψ (..., N, 5) the co-players' initial logits (broadcast with the policy's leading axes).

    Returns a dict of (..., N, B, L) arrays: "state" (the meta agent's own-first state within
    the episode, int), "outcome" (the step's joint outcome 0..3 from its view, int), "score"
    (1[a = C] − p), "reward" (the meta agent's), "naive_reward"; and "psi", the co-players'
    logits after their last update (..., N, 5).
    """
    xp = namespace(psi)
    dtype = psi.dtype
    shape = tuple(np.broadcast_shapes(policy.lead, psi.shape[:-2])) + (psi.shape[-2], B)
    zero = xp.zeros(shape, dtype=xp.int64, device=array_api_compat.device(psi))
    out = {"state": [], "outcome": [], "score": [], "reward": [], "naive_reward": []}
    carry, last, r_prev = policy.start(shape), zero, xp.zeros(shape, dtype=dtype, device=array_api_compat.device(psi))
    for m in range(policy.M):
        s_meta, s_naive = zero, zero
        episode = {"obs": [], "coop": [], "reward": []}
        for t in range(T):
            o_naive = ipd.observe(zero if naive.memoryless else s_naive, dtype)    # (..., N, B, 5)
            p, carry = policy.step(carry, m, t, s_meta, last, r_prev)              # (..., N, B)
            q = ipd.sigmoid(xp.sum(o_naive * psi[..., None, :], axis=-1))
            a = xp.astype(rng.uniform(shape) >= p, xp.int64)                       # 0 = C
            c = xp.astype(rng.uniform(shape) >= q, xp.int64)
            out["state"].append(s_meta)
            out["score"].append(xp.astype(1 - a, dtype) - p)
            s_meta, s_naive, r_prev, r2 = ipd.step(a, c)
            last = s_meta
            out["outcome"].append(s_meta - 1)
            out["reward"].append(r_prev)
            out["naive_reward"].append(r2)
            episode["obs"].append(o_naive)
            episode["coop"].append(xp.astype(1 - c, dtype))
            episode["reward"].append(r2)
        psi = _learn(naive, psi, xp.stack(episode["obs"], axis=-2), xp.stack(episode["coop"], axis=-1),
                     xp.stack(episode["reward"], axis=-1))
    return {**{k: xp.stack(v, axis=-1) for k, v in out.items()}, "psi": psi}


def _const(table, like):
    """A host table as an array of `like`'s dtype on its device."""
    return namespace(like).asarray(table, dtype=like.dtype, device=array_api_compat.device(like))


def full_scores(states, score, M: int):
    """The plain scores ∂ log π/∂θ (..., B, L, M·5) of the tabular policy (one-hot in (m, s))."""
    xp = namespace(score)
    L = score.shape[-1]
    T = L // M
    onehot = ipd.observe(states, score.dtype) * score[..., None]                # (..., B, L, 5)
    eye = _const(np.kron(np.eye(M), np.ones((T, 1))), score)                  # (L, M): episode of l
    return xp.reshape(onehot[..., None, :] * eye[:, :, None], score.shape + (M * 5,))


def tabular_gradient(name, states, score, rewards, T: int):
    """Estimator `name` for the time-indexed tabular policy: (..., M, 5) from the rollout's
    "state", "score", "reward" (..., B, L); equals :func:`tasks.learning_aware_pg.policy_gradient`
    on :func:`full_scores` (tested)."""
    xp = namespace(score, rewards)
    w = estimator_weights(name, rewards, T) * score                           # (..., B, L)
    per = w[..., None] * ipd.observe(states, score.dtype)                      # (..., B, L, 5)
    per = xp.sum(xp.reshape(per, per.shape[:-2] + (per.shape[-2] // T, T, 5)), axis=-2)   # (..., B, M, 5)
    return (xp.sum if ESTIMATORS[name][2] == "sum" else xp.mean)(per, axis=-3)


# -- the exact lattice game --------------------------------------------------------------------

def _sequences(T: int):
    """Host tables of the 4^T joint action sequences of one episode: the meta agent's state
    one-hot (n, T, 5), its actions' C-indicator (n, T), the co-player's number of C, the
    increment Σ k − (−2T) as an index in [0, 3T] and the meta agent's reward sum (n,)."""
    seqs = np.array(list(itertools.product(range(2), range(2), repeat=T))).reshape(-1, T, 2)   # (n, T, 2)
    a, c = seqs[..., 0], seqs[..., 1]
    s = np.concatenate([np.zeros((len(seqs), 1), int), 1 + 2 * a[:, :-1] + c[:, :-1]], axis=1)
    R, S, Tp, P = ipd.PAYOFFS
    own = np.array([[R, S], [Tp, P]])
    k = np.where(c == 0, own[c, a], -own[c, a])                                 # ±r², co-player first
    return (np.eye(5)[s], 1.0 - a, (1 - c).sum(axis=1), (k.sum(axis=1) + 2 * T).astype(int),
            own[a, c].sum(axis=1).astype(float))


def _conv_table(n: int, m: int):
    """Host (n·m, n + m − 1): the 0/1 map of an outer product onto a convolution."""
    E = np.zeros((n, m, n + m - 1))
    for i in range(n):
        E[i, np.arange(m), i + np.arange(m)] = 1.0
    return E.reshape(n * m, n + m - 1)


def _convolve(f, g):
    """Batched convolution over the last axis by one matmul with a host 0/1 table."""
    xp = namespace(f, g)
    outer = xp.reshape(f[..., :, None] * g[..., None, :], f.shape[:-1] + (f.shape[-1] * g.shape[-1],))
    return outer @ _const(_conv_table(f.shape[-1], g.shape[-1]), f)


def _power(f, B: int):
    """f^{⋆B}: the distribution of a sum of B independent draws (binary powering)."""
    result, base = None, f
    while B:
        if B & 1:
            result = base if result is None else _convolve(result, base)
        B >>= 1
        if B:
            base = _convolve(base, base)
    return result


def lattice_objective(theta, psi0: float, *, B: int, T: int, eta: float):
    """J̄(θ) = E[1/B Σ_b Σ_l r_l^b] of the meta agent against a memoryless "sign" co-player
    (ψ₀ a float), exactly, by the dynamic programme of the module docstring. θ (..., M, 5),
    real or complex (for the complex step).                                              (...)"""
    if theta.ndim < 2 or theta.shape[-1] != 5:
        raise ValueError(f"lattice_objective: expected θ of shape (..., M, 5), got {tuple(theta.shape)}")
    xp = namespace(theta)
    M = theta.shape[-2]
    s_onehot, a_coop, n_coop, k_index, reward = _sequences(T)
    span = 3 * T * B                                                            # range of one batch sum
    G = span * (M - 1) + 1                                                      # reachable K after M − 1 updates
    K = np.arange(G) - 2 * T * B * (M - 1)
    q = 0.5 + 0.5 * np.tanh(0.5 * (psi0 + eta * K / B))                        # (G,) real
    naive = q[:, None] ** n_coop * (1 - q[:, None]) ** (T - n_coop)            # (G, n)
    to_k = np.eye(3 * T + 1)[k_index]                                           # (n, 3T + 1)
    zeros = lambda n: xp.zeros(theta.shape[:-2] + (n,), dtype=theta.dtype, device=array_api_compat.device(theta))
    P = _const(np.eye(G)[2 * T * B * (M - 1)], theta) + zeros(G)               # (..., G): K_0 = 0
    total = 0.0
    for m in range(M):
        p = ipd.sigmoid(theta[..., m, :])                                       # (..., 5)
        p_st = xp.sum(_const(s_onehot, theta) * p[..., None, None, :], axis=-1)   # (..., n, T)
        coop = _const(a_coop, theta)
        meta = xp.prod(coop * p_st + (1 - coop) * (1 - p_st), axis=-1)          # (..., n)
        prob = meta[..., None, :] * _const(naive, theta)                     # (..., G, n)
        total = total + xp.sum(P * (prob @ _const(reward, theta)), axis=-1)
        if m == M - 1:
            break
        step = _power(prob @ _const(to_k, theta), B)              # (..., G, span + 1)
        weighted = P[..., None] * step
        # K + d for d = j − 2TB: shift column j by j − 2TB; K stays inside the grid (reachable only)
        pad = lambda x, lo, hi: xp.concat([zeros(lo), x, zeros(hi)], axis=-1)
        lo_K = 2 * T * B * (M - 1 - m)                                           # first reachable index now
        hi_K = lo_K + span * m + 1
        P = sum(pad(weighted[..., lo_K:hi_K, j], lo_K + j - 2 * T * B, G - hi_K - j + 2 * T * B)
                for j in range(span + 1))
    return total


def lattice_gradient(theta, psi0: float, *, B: int, T: int, eta: float):
    """∇J̄ (M, 5) of :func:`lattice_objective` at θ (M, 5), by the complex step."""
    xp = namespace(theta)
    M = theta.shape[-2]
    objective = lambda x: lattice_objective(xp.reshape(x, x.shape[:-1] + (M, 5)), psi0, B=B, T=T, eta=eta)
    return xp.reshape(ipd.complex_step(objective, xp.reshape(theta, (M * 5,))), (M, 5))


def unbiasedness(seed=0, *, B=8, M=5, T=3, eta=0.5, samples=32_000, chunk=2_000, quick_mode=None) -> dict:
    """Monte-Carlo test of Theorem 3.1 on the exact lattice game (float64, active backend).

    At θ ~ N(0, 1) (M, 5) and ψ₀ ~ N(0, 1) from `seed`, each estimator's mean over `samples`
    independent batches of B meta-trajectories is compared with the exact ∇J̄
    (:func:`lattice_gradient`): z = (mean − ∇J̄)/s.e. per coordinate (s.e. from the sample
    variance). Returns the max |z| over the M·5 coordinates per estimator ("<name>_max_z"),
    the max |bias| (the mean's error), and "objective_z": the sampled J̄ against the exact one.
    Quick mode: ``scaled(samples)`` samples.
    """
    samples = scaled(samples, quick_mode=quick_mode)
    chunk = min(chunk, samples)
    with use_dtype("float64"):
        host = np.random.default_rng(seed)
        theta, psi0 = asarray(host.normal(size=(M, 5))), float(host.normal())
        exact = to_numpy(lattice_gradient(theta, psi0, B=B, T=T, eta=eta))
        J = float(to_numpy(lattice_objective(theta, psi0, B=B, T=T, eta=eta)))
        rng, naive = RNG(seed + 1), Naive("sign", eta, memoryless=True)
        psi = asarray(np.full((chunk, 5), psi0))
        grads = {name: [] for name in ESTIMATORS}
        returns = []
        for _ in range(samples // chunk):
            out = rollout(TabularPolicy(theta), psi, rng, B=B, T=T, naive=naive)
            for name in ESTIMATORS:
                grads[name].append(to_numpy(tabular_gradient(name, out["state"], out["score"], out["reward"], T)))
            returns.append(to_numpy(out["reward"]).sum(axis=-1).mean(axis=-1))
        n = chunk * (samples // chunk)
        z = lambda x, ref: (x.mean(axis=0) - ref) / (x.std(axis=0, ddof=1) / np.sqrt(n))
        m = {"objective_z": float(abs(z(np.concatenate(returns), J)))}
        for name, g in grads.items():
            g = np.concatenate(g)
            m[f"{name}_max_z"] = float(np.max(np.abs(z(g, exact))))
            m[f"{name}_bias"] = float(np.max(np.abs(g.mean(axis=0) - exact)))
        return m


# -- the sampled comparison (Fig. 5A at CPU scale) ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class SampledRun:
    """Meta-training from samples against naive "reinforce" learners; sizes ours (CPU scale).

    Every step, `n_coplayers` fresh co-players (ψ ~ N(0, 1), 5 logits) each meet the meta agent
    in B trajectories of M episodes of T steps, learning after every episode (step size η).
    One time-indexed tabular meta policy θ (M, 5) per estimator and seed, zero-initialised,
    all trained at once as one batch (the estimators see the same co-players), by Adam on the
    estimator's gradient averaged over the co-players.
    """
    n_coplayers: int = 32
    B: int = 8
    M: int = 10
    T: int = 5
    eta: float = 1.0
    lr: float = 0.05
    steps: int = 300
    seeds: int = 3
    seed: int = 0


def train_sampled(run: SampledRun, *, quick_mode=None, log=None, seed_offset=0):
    """Train θ (estimators, seeds, M, 5) for ``scaled(run.steps)`` steps (float64, active
    backend); returns (θ, per-step meta reward over training (steps, estimators, seeds))."""
    steps = scaled(run.steps, quick_mode=quick_mode)
    names = tuple(ESTIMATORS)
    naive = Naive("reinforce", run.eta)
    with use_dtype("float64"):
        rng = RNG(run.seed + 1000 * seed_offset)
        xp = namespace(rng.normal((1,)))
        theta = xp.zeros((len(names), run.seeds, run.M, 5), dtype=xp.float64, device=array_api_compat.device(rng.normal((1,))))
        opt = Adam(run.lr)
        state = opt.init(theta)
        history = []
        for step in range(steps):
            psi = rng.normal((run.seeds, run.n_coplayers, 5))
            out = rollout(TabularPolicy(theta), psi, rng, B=run.B, T=run.T, naive=naive)          # (E, S, N, B, L)
            per_run = [tabular_gradient(name, out["state"][e, ...], out["score"][e, ...], out["reward"][e, ...], run.T)
                       for e, name in enumerate(names)]                             # (S, N, M, 5) each
            grad = xp.stack([xp.mean(g, axis=-3) for g in per_run])                # (E, S, M, 5)
            theta, state = opt.update(-grad, state, theta)
            history.append(to_numpy(xp.mean(out["reward"], axis=(-3, -2, -1))))
            if log is not None and step % max(steps // 5, 1) == 0:
                log(f"step {step}: per-step meta reward " + ", ".join(
                    f"{n} {history[-1][e].mean():.3f}" for e, n in enumerate(names)))
        return theta, np.asarray(history)


def evaluate_sampled(run: SampledRun, theta, *, n_eval=4, seed_offset=0):
    """Per-step reward of trained θ, per co-player: (estimators, seeds, n_eval · N) host array,
    against `n_eval` fresh meta-batches of co-players (the same ones for every estimator)."""
    with use_dtype("float64"):
        rng = RNG(10_000 + run.seed + 1000 * seed_offset)
        xp = namespace(theta)
        naive = Naive("reinforce", run.eta)
        return np.concatenate([to_numpy(xp.mean(rollout(TabularPolicy(theta), rng.normal((run.seeds, run.n_coplayers, 5)), rng,
                                                        B=run.B, T=run.T, naive=naive)["reward"], axis=(-2, -1)))
                               for _ in range(n_eval)], axis=-1)


def sampled_comparison(run: SampledRun, *, quick_mode=None, log=None, seed_offset=0) -> dict:
    """Train (:func:`train_sampled`) and measure (:func:`sampled_metrics`)."""
    theta, _ = train_sampled(run, quick_mode=quick_mode, log=log, seed_offset=seed_offset)
    return sampled_metrics(run, theta, seed_offset=seed_offset)


def sampled_metrics(run: SampledRun, theta, *, seed_offset=0) -> dict:
    """Of trained θ (estimators, seeds, M, 5), by :func:`evaluate_sampled`: each estimator's
    per-step reward (mean over seeds and co-players), COALA-PG's smallest margin over the seeds
    against M-FOS and batch-unaware PG, and the largest standard error of one such margin
    ("margin_se", paired over the evaluation co-players)."""
    r = evaluate_sampled(run, theta, seed_offset=seed_offset)                      # (E, S, K)
    names = tuple(ESTIMATORS)
    m = {name: float(r[e].mean()) for e, name in enumerate(names)}
    diff = r[0] - r[1:]                                                            # (E − 1, S, K)
    for e, name in enumerate(names[1:]):
        m[f"coala_minus_{name}"] = float(np.min(diff[e].mean(axis=-1)))
    m["margin_se"] = float(np.max(diff.std(axis=-1, ddof=1)) / np.sqrt(r.shape[-1]))
    return m


# Fig. 5A at CPU scale (ours): 32 co-players per step, B = 8, M = 10, T = 5, η = 1, Adam lr 0.1,
# 150 steps, 3 seeds; ≈ 20 s on one core. The draft setting lr 0.05, 300 steps gives the same order.
SAMPLED = SampledRun(lr=0.1, steps=150)
