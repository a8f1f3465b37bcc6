"""Explore, then exploit: a recurrent policy against an adversarial goal in a 3 × 3 grid (the
grid-world task of arXiv:2408.10818, an autoregressive agent playing an exploration episode and
then an exploitation episode; grid, horizons, costs, network and training settings are ours).

**Environment.** The agent starts in the corner (0, 0); an oblivious adversary has hidden the
goal g in one of the n² − 1 other cells. Episode 1 (explore): the agent moves (down, up, right,
left; into a wall: stay) until it stands on g, at step τ_g ≤ T1, or gives up after T1 steps.
Episode 2 (exploit): it restarts in the corner, its memory kept, and walks until it stands on g
again, at step β_g ≤ T2. Its cost::

    c_g = τ_g + β_g                  found in episode 1 (β_g = T2 + 1 if episode 2 misses g)
    c_g = (T1 + 1) + (T2 + 1)        not found in episode 1 (both episodes charged in full)

**Exact references** (:func:`explore_values`). Episode 2 costs at least d(g) = i + j (the
Manhattan distance), attained by remembering the goal; until it finds g, the agent's walk
cannot depend on g. So a deterministic strategy is an exploration walk s followed by the
shortest return, C[g, s] = A[g, s] + d(g) with A the first-visit times of
:func:`tasks.grid_exploration.walk_costs` (the undominated walks), and the best deterministic
worst case is min_s max_g C, the best randomized one the value of the matrix game C (LP). 3 × 3:
deterministic 10, randomized 8 (e.g. the two mirror-image spirals, 50/50), best deterministic
average 4.5 + 2.25 = 6.75.

**Policy.** :class:`tinynim.nn.GatedLinearRNN` (d_in = n² + 2 + d_seed inputs, 4 move logits)
over the history. At each step it reads x_t = (one-hot of its cell (n²), at-goal flag, episode-2
flag, seed r) with r ~ N(0, I_d) drawn once per (member, seed) and shared by both episodes,
updates its state h and takes the argmax move. The at-goal flag is 1 at one step only: when the
agent stands on g in episode 1 it reads that observation (the state then remembers g) and
episode 1 ends; episode 2 starts from that state.

**Batched rollout** (:func:`explore_rollout`, host NumPy: an environment simulation, like
:func:`tasks.grid_exploration.rollout`). ES evaluates a whole population (P members, each its
own parameters) on m seeds and every goal at once. Until the goal is found the walk does not
depend on it: one goal-free walk per (member, seed) gives every goal's first-visit time τ_g and
the state h_{τ_g − 1} before it; the state at the find is one more step, λ ⊙ h_{τ_g − 1} +
u(x_goal), and only episode 2 branches per goal. The layer's forward takes one parameter set
(it checks the shapes of its params and multiplies by 2-D weights), so the step for a
population, :func:`population_step`, applies the layer's gate maths with a leading member axis
(λ from the layer's own :meth:`~tinynim.nn.GatedLinearRNN.decay`); a test checks it against
``GatedLinearRNN.forward`` run member by member, step by step. The rollout computes in
float32 (only the argmax of the outputs is used; float32 GEMMs made an ES step about 2×
faster on one CPU core).

**Training.** argmax moves are not differentiable: rank-shaped ES on R̂_{q,m} over the goals
of c_g / (T1 + T2 + 2) by :func:`tasks.randomized_algorithms.train_policy` (:class:`ExploreRun`),
from a deterministic start (the seed's input weights 0). Without rank shaping (3000 steps) or
without either (2000 steps), some training seeds ended at 1.21 and 1.51 × the randomized
optimum in our trials.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tinynim.backend import asarray, to_numpy
from tinynim.experiment import scaled
from tinynim.nn import GatedLinearRNN

from tasks.grid_exploration import move, walk_costs
from tasks.matrix_games import deterministic_value, lp_value
from tasks.relaxed_risk import power_mean_risk


# -- exact references ----------------------------------------------------------------------------

def explore_costs(n: int):
    """``(C, goals)``: C[g, s] = A[g, s] + d(g), the two-episode cost of undominated walk s
    (:func:`tasks.grid_exploration.walk_costs`) followed by the shortest return. (n² − 1, S)"""
    A, goals = walk_costs(n)
    d = np.array([i + j for i, j in goals], dtype=np.float64)
    return A + d[:, None], goals


@functools.lru_cache(maxsize=None)
def explore_values(n: int) -> dict:
    """Best deterministic and best randomized (LP) worst case over goals of the two-episode
    cost, and the best deterministic average over uniform goals (steps)."""
    C, _ = explore_costs(n)
    value, _ = lp_value(C)
    return {"deterministic_worst": deterministic_value(C), "randomized_worst": value,
            "deterministic_average": float(C.mean(axis=0).min())}


# -- the policy and its batched rollout -------------------------------------------------------------

def observations(cells, at_goal: float, episode_2: float, r, n: int):
    """x = (one-hot(cell) (n²), at-goal flag, episode-2 flag, r): cells int (..., B), r (B, d)
    broadcast over the leading axes -> (..., B, n² + 2 + d)."""
    onehot = (cells[..., None] == np.arange(n * n)).astype(r.dtype)
    flags = np.broadcast_to(np.array([at_goal, episode_2], dtype=r.dtype), cells.shape + (2,))
    return np.concatenate([onehot, flags, np.broadcast_to(r, cells.shape + r.shape[-1:])], axis=-1)


def population_step(layer: GatedLinearRNN, params, x, h):
    """One step of ``layer`` for every member of a population (module docstring):
    x̃ = (x, 1), h ← λ ⊙ h + (x̃ Wx_in) ⊙ (x̃ Wg_in), out = ((h Wx_out) ⊙ (h Wg_out)) D.

    params: the layer's leaves with a leading member axis P (host float64); x (P, B, d_in);
    h (P, B, N) -> (out (P, B, d_out), h (P, B, N))."""
    xt = np.concatenate([x, np.ones_like(x[..., :1])], axis=-1) if layer.append_one else x
    N, M = layer.n_hidden, layer.n_out_gates
    ag = xt @ np.concatenate([params["Wx_in"], params["Wg_in"]], axis=-1)      # (P, B, 2N) one GEMM
    h = layer.decay(params)[:, None, :] * h + ag[..., :N] * ag[..., N:]
    oq = h @ np.concatenate([params["Wx_out"], params["Wg_out"]], axis=-1)     # (P, B, 2M)
    return (oq[..., :M] * oq[..., M:]) @ params["D"], h


def _host_population(layer: GatedLinearRNN, params, r, n: int):
    """params as host float32 with a checked leading member axis; r (m, d_seed) checked."""
    W = {k: np.asarray(to_numpy(v), dtype=np.float32) for k, v in params.items()}
    d_seed = layer.d_in - (n * n + 2)
    for key, shape in layer.param_shapes.items():
        if key not in W or W[key].ndim != len(shape) + 1 or W[key].shape[1:] != shape:
            got = W[key].shape if key in W else "missing"
            raise ValueError(f"explore_rollout: expected params[{key!r}] of shape (P, *{shape}), got {got}")
    r = np.asarray(to_numpy(r), dtype=np.float32)
    if r.ndim != 2 or r.shape[1] != d_seed:
        raise ValueError(f"explore_rollout: expected seeds r of shape (m, {d_seed}) (layer d_in = {layer.d_in} "
                         f"= {n * n} cells + 2 flags + the seed), got shape {r.shape}")
    return W, r


def explore_rollout(layer: GatedLinearRNN, params, r, n: int = 3, horizons=(12, 6)):
    """Both episodes for every member, seed and goal (module docstring): ``(find, back)``,
    τ_g (T1 + 1: not found) and β_g (T2 + 1: missed, or episode 1 failed), (P, m, n² − 1) each,
    goals row-major without the start."""
    T1, T2 = horizons
    W, r = _host_population(layer, params, r, n)
    P, m, C = W["D"].shape[0], r.shape[0], n * n
    # episode 1, goal-free: the walk and its states h_t after reading cell p_t (t < T1)
    pos, h = np.zeros((P, m), dtype=int), np.zeros((P, m, layer.n_hidden), dtype=r.dtype)
    states = np.empty((P, m, T1, layer.n_hidden), dtype=r.dtype)
    first = np.full((P, m, C), T1 + 1)                                         # first-visit step per cell
    for t in range(T1):
        out, h = population_step(layer, W, observations(pos, 0.0, 0.0, r, n), h)
        states[:, :, t] = h
        pos = move(pos, out.argmax(axis=-1), n)
        seen = np.take_along_axis(first, pos[..., None], axis=-1)
        np.put_along_axis(first, pos[..., None], np.minimum(seen, t + 1), axis=-1)
    find = first[..., 1:]                                                      # (P, m, G) τ_g
    goals = np.broadcast_to(np.arange(1, C), find.shape)
    # the find: from h_{τ−1}, read the goal cell with the at-goal flag (P, m, G, N) -> (P, m·G, N)
    before = np.take_along_axis(states, np.minimum(find - 1, T1 - 1)[..., None], axis=2)
    rg = r[:, None, :]                                                         # (m, 1, d): one seed per walk
    _, h = population_step(layer, W, observations(goals, 1.0, 0.0, rg, n).reshape(P, m * (C - 1), -1),
                           before.reshape(P, m * (C - 1), -1))
    # episode 2: from the corner, every goal its own walk (steps after arrival are ignored)
    pos, back = np.zeros((P, m * (C - 1)), dtype=int), np.full((P, m * (C - 1)), T2 + 1)
    target = goals.reshape(P, -1)
    for t in range(T2):
        x = observations(pos.reshape(P, m, C - 1), 0.0, 1.0, rg, n).reshape(P, m * (C - 1), -1)
        out, h = population_step(layer, W, x, h)
        pos = move(pos, out.argmax(axis=-1), n)
        back = np.where((back > T2) & (pos == target), t + 1, back)
    back = np.where(find <= T1, back.reshape(find.shape), T2 + 1)
    return find, back


def total_cost(find, back, horizons=(12, 6)):
    """c_g = τ_g + β_g, or (T1 + 1) + (T2 + 1) where episode 1 did not find g (module docstring)."""
    T1, T2 = horizons
    return np.where(find <= T1, find + back, T1 + T2 + 2).astype(np.float64)


# -- training and evaluation ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ExploreRun:
    """ES on R̂_{q,m} over the goals of the two-episode cost / (T1 + T2 + 2), trained by
    :func:`tasks.randomized_algorithms.train_policy` (antithetic, rank-shaped, population
    2·n_pairs in one batched rollout, Adam) from a deterministic start; our setting. With 8
    goals R̂_q of q = 256 is within 8^(1/256) < 1.01 of the worst case."""
    q: float
    m: int
    n: int = 3
    T1: int = 12                    # exploration steps (≥ 9 keeps both references within reach)
    T2: int = 6                     # exploitation steps (d(g) ≤ 4 on 3 × 3)
    n_hidden: int = 16
    n_out_gates: int | None = None  # the layer's default (n_hidden)
    recurrence: str = "sigmoid"
    d_seed: int = 4
    steps: int = 3000
    n_pairs: int = 32
    sigma: float = 0.1
    lr: float = 0.05
    rank_shaping: bool = True       # centred ranks (tinynim.es); why: the module docstring, Training
    seed: int = 0
    n_eval: int = 10_000

    @property
    def layer(self) -> GatedLinearRNN:
        return GatedLinearRNN(self.n * self.n + 2 + self.d_seed, self.n_hidden, 4, n_out_gates=self.n_out_gates,
                              recurrence=self.recurrence)

    def init(self, rng):
        """The layer's own initialisation (:meth:`GatedLinearRNN.init`) with the seed's input
        weights set to 0: a deterministic start, as for the other ES policies."""
        params = self.layer.init(rng)
        row = np.arange(self.layer.d_tilde)[:, None]                                     # (d̃, 1) rows of x̃
        seed_row = (row >= self.n * self.n + 2) & (row < self.n * self.n + 2 + self.d_seed)
        keep = asarray(1.0 - seed_row)                                                   # creation: active backend
        return {**params, "Wx_in": params["Wx_in"] * keep, "Wg_in": params["Wg_in"] * keep}

    def costs(self, params, r):
        """Two-episode cost of every member, seed and goal. (P, m, n² − 1)"""
        horizons = (self.T1, self.T2)
        return total_cost(*explore_rollout(self.layer, params, r, self.n, horizons), horizons)

    def risk(self, params, r):
        losses = np.swapaxes(self.costs(params, r), -1, -2) / (self.T1 + self.T2 + 2)   # (P, goals, m)
        return asarray(power_mean_risk(losses, self.q)[0])


def explore_metrics(params, run: ExploreRun, *, seed=0, quick_mode=None) -> dict:
    """Expected two-episode cost of each goal over fresh seeds (a stream of its own, drawn
    independently of the goal: an oblivious adversary): worst case, 95th percentile over the
    goals (``np.percentile``, linear), average, ratios to the exact randomized and
    deterministic optimum, the fraction of (seed, goal) pairs not found in episode 1, and the
    per-goal costs ``steps`` (n² − 1,)."""
    n_eval = scaled(run.n_eval, quick_mode=quick_mode)
    r = np.random.default_rng([seed, 502]).standard_normal((n_eval, run.d_seed))
    member = {k: np.asarray(to_numpy(v))[None] for k, v in params.items()}
    find, back = explore_rollout(run.layer, member, r, run.n, (run.T1, run.T2))
    steps = total_cost(find, back, (run.T1, run.T2))[0].mean(axis=0)            # (goals,)
    ref = explore_values(run.n)
    worst, p95 = float(steps.max()), float(np.percentile(steps, 95))
    return {"worst_steps": worst, "steps_p95": p95, "average_steps": float(steps.mean()),
            "worst_over_randomized": worst / ref["randomized_worst"],
            "p95_over_randomized": p95 / ref["randomized_worst"],
            "worst_over_deterministic": worst / ref["deterministic_worst"],
            "never_found": float(np.mean(find > run.T1)), "steps": steps}
