"""Exploration against an adversarial goal in a small grid world (the third task of
arXiv:2408.10818; grid, start, policy and training settings are ours: the paper's were not
retrieved).

An agent starts in the corner (0, 0) of an n × n grid; an oblivious adversary has hidden the
goal in one of the other cells. The agent sees only whether its cell is the goal, so until it
finds the goal its walk does not depend on where the goal is: a deterministic exploration
strategy IS a walk, and its cost for goal g is the walk's first visit to g (the exploitation
episode that follows walks straight to the remembered goal, the same for every strategy).

Exact references (NumPy/SciPy, :func:`walk_costs`, :func:`grid_values`). Any walk is
dominated, cell by cell, by the walk that visits the same cells in the same first-visit
order along shortest paths (it reaches the k-th new cell no later, and cells passed on the
way only earlier), so the first-visit orders (permutations of the n² − 1 other cells) give
every undominated deterministic strategy. Their cost matrix A[g, s] yields the best
deterministic worst case min_s max_g A and, by the LP of the memory game, the best randomized
one. 3 × 3: deterministic 8 steps (a Hamiltonian path must leave some cell last), randomized
5 steps, best deterministic average 4.5.

Learned policy (:func:`rollout`): at each of T steps the agent takes the move with the largest
logit E[p] + B[p] r + Σ_c visited_c V[p, c] (p its cell, r ~ N(0, I_d) its seed, visited the
cells seen so far: a policy over the history and the seed). argmax is not differentiable:
ES on R̂_{q,m} over the goals of the first-visit time / (T + 1) (T + 1: never found).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from tinynim.backend import asarray, to_numpy
from tinynim.experiment import scaled

from tasks.matrix_games import deterministic_value, lp_value
from tasks.relaxed_risk import power_mean_risk

MOVES = np.array([(1, 0), (-1, 0), (0, 1), (0, -1)])        # down, up, right, left


def move(pos, a, n: int):
    """The cells (row-major, any shape) after the moves a (indices into MOVES, same shape) on
    the n × n grid; a move into a wall stays in place."""
    i, j = pos // n + MOVES[a, 0], pos % n + MOVES[a, 1]
    inside = (i >= 0) & (i < n) & (j >= 0) & (j < n)
    return np.where(inside, np.clip(i, 0, n - 1) * n + np.clip(j, 0, n - 1), pos)


# -- exact references ----------------------------------------------------------------------------

def _shortest_path(a, b):
    """Cells after a on one shortest path to b (rows first, then columns)."""
    (i, j), out = a, []
    while i != b[0]:
        i += 1 if b[0] > i else -1
        out.append((i, j))
    while j != b[1]:
        j += 1 if b[1] > j else -1
        out.append((i, j))
    return out


def walk_costs(n: int):
    """First-visit times of every undominated deterministic walk from (0, 0): ``(A, goals)``,
    A[g, s] for goal g (the n² − 1 other cells, row-major) and walk s (distinct cost vectors
    of the first-visit orders; see the module docstring). (n² − 1, S)"""
    if not 2 <= n <= 3:
        raise ValueError(f"walk_costs: need 2 <= n <= 3 (the (n² − 1)! orders are enumerated), got n={n}")
    goals = [(i, j) for i in range(n) for j in range(n) if (i, j) != (0, 0)]
    cols = set()
    for order in itertools.permutations(goals):
        hit, pos, t = {}, (0, 0), 0
        for cell in order:
            if cell in hit:
                continue
            for step in _shortest_path(pos, cell):
                t += 1
                hit.setdefault(step, t)
            pos = cell
        cols.add(tuple(hit[g] for g in goals))
    return np.array(sorted(cols), dtype=np.float64).T, goals


@functools.lru_cache(maxsize=None)
def grid_values(n: int) -> dict:
    """Worst case over goals of the best deterministic walk and of the best mixture (LP), and
    the best deterministic average over uniform goals (steps). Cached: n = 3 enumerates 8!
    orders (seconds)."""
    A, _ = walk_costs(n)
    value, _ = lp_value(A)
    return {"deterministic_worst": deterministic_value(A), "randomized_worst": value,
            "deterministic_average": float(A.mean(axis=0).min())}


# -- the learned policy, trained by ES -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GridRun:
    """ES on R̂_{q,m} over the goals (our setting), trained by
    :func:`tasks.randomized_algorithms.train_policy` (antithetic, population 2·n_pairs in one
    batched rollout, Adam), like the memory game and the cow path. With 8 goals, R̂_q of
    q = 256 is within 8^(1/256) < 1.01 of the worst case; q = 16 (up to 1.14) and 1500 steps
    left the learned worst case at 1.2–1.5 × the optimum, q = 256 and 3000 steps at 1.1–1.2."""
    q: float
    m: int
    n: int = 3
    horizon: int = 12               # T steps; a goal not found costs T + 1
    d_seed: int = 4
    steps: int = 3000
    n_pairs: int = 32
    sigma: float = 0.1
    lr: float = 0.05
    rank_shaping: bool = False
    seed: int = 0
    n_eval: int = 10_000

    def init(self, rng):
        """E, V ~ N(0, ¼) (a deterministic start: B = 0, the seed is ignored)."""
        C = self.n * self.n
        return {"E": rng.normal((C, 4), std=0.5), "B": rng.normal((C, 4, self.d_seed), std=0.0),
                "V": rng.normal((C, C, 4), std=0.5)}

    def risk(self, params, r):
        hit = rollout(params, r, self.n, self.horizon)[..., 1:]                    # (P, m, goals)
        losses = np.swapaxes(hit, -1, -2) / (self.horizon + 1)                    # (P, goals, m)
        return asarray(power_mean_risk(losses, self.q)[0])


def rollout(params, r, n: int, horizon: int) -> np.ndarray:
    """First-visit time of every cell for every member and seed (host NumPy; an environment
    simulation): params leaves with a leading population axis P, r (m, d) -> (P, m, n²),
    horizon + 1 for a cell never visited, 0 for the start."""
    E, B, V, r = (np.asarray(to_numpy(a), dtype=np.float64) for a in (params["E"], params["B"], params["V"], r))
    P, m, C = E.shape[0], r.shape[0], n * n
    member, seed = np.arange(P)[:, None], np.arange(m)[None, :]
    pos = np.zeros((P, m), dtype=int)
    visited = np.zeros((P, m, C))
    visited[:, :, 0] = 1
    hit = np.full((P, m, C), horizon + 1.0)
    hit[:, :, 0] = 0
    for t in range(1, horizon + 1):
        logits = (E[member, pos] + np.einsum("pmad,md->pma", B[member, pos], r)
                  + np.einsum("pmc,pmca->pma", visited, V[member, pos]))            # (P, m, 4)
        pos = move(pos, logits.argmax(axis=-1), n)
        first = visited[member, seed, pos] == 0
        hit[member, seed, pos] = np.where(first, t, hit[member, seed, pos])
        visited[member, seed, pos] = 1
    return hit


def grid_metrics(params, run: GridRun, *, seed=0, quick_mode=None) -> dict:
    """Expected steps to each goal with fresh seeds (independent of the adversary's goal):
    worst case, 95th percentile over the goals (``np.percentile``, linear between the sorted
    goals), average, their ratios to the exact optimum, and P(never found)."""
    n_eval = scaled(run.n_eval, quick_mode=quick_mode)
    r = np.random.default_rng([seed, 501]).standard_normal((n_eval, run.d_seed))
    hit = rollout({k: v[None, ...] for k, v in params.items()}, r, run.n, run.horizon)[0, :, 1:]   # (n_eval, goals)
    steps = hit.mean(axis=0)
    ref = grid_values(run.n)
    p95 = float(np.percentile(steps, 95))
    return {"worst_steps": float(steps.max()), "steps_p95": p95, "average_steps": float(steps.mean()),
            "worst_over_randomized": float(steps.max()) / ref["randomized_worst"],
            "p95_over_randomized": p95 / ref["randomized_worst"],
            "worst_over_deterministic": float(steps.max()) / ref["deterministic_worst"],
            "never_found": float(np.mean(hit > run.horizon))}
