"""Exact references and the environment of P8's grid-world exploration (arXiv:2408.10818;
grid and policy ours, see tasks/grid_exploration.py). LP values to 1e-8 (HiGHS tolerances)."""
import numpy as np

from tasks.grid_exploration import MOVES, GridRun, grid_metrics, grid_values, rollout, walk_costs
from tinynim.random import RNG


def test_grid_values():
    """2 × 2 from a corner: walks 1-2-3 either way round, deterministic worst 3, the 50/50
    mixture 2 (goal by goal: (1 + 3)/2, (2 + 2)/2, (3 + 1)/2). 3 × 3: 8 (the last cell of a
    Hamiltonian path), randomized 5, best average 4.5 (= mean of 1..8)."""
    two, three = grid_values(2), grid_values(3)
    assert two["deterministic_worst"] == 3 and abs(two["randomized_worst"] - 2) <= 1e-8
    assert three["deterministic_worst"] == 8 and abs(three["randomized_worst"] - 5) <= 1e-8
    assert three["deterministic_average"] == 4.5
    A, goals = walk_costs(3)
    assert A.shape[0] == 8 and A.min() == 1 and sorted(A[:, 0]) == sorted(set(A[:, 0]))   # first visits distinct


def test_rollout_follows_the_argmax_moves():
    """A policy whose logits favour 'right' then 'down' by cell (E only): the walk and its
    first-visit times follow by hand; a wall keeps the agent in place; unvisited cells get T + 1."""
    n, T = 3, 5
    E = np.full((9, 4), -1.0)
    E[[0, 1], 2] = 1.0                     # (0,0), (0,1): right
    E[2, 0] = 1.0                          # (0,2): down
    E[5, 0] = 1.0                          # (1,2): down
    E[8, 0] = 1.0                          # (2,2): down -> wall, stays
    params = {"E": E[None], "B": np.zeros((1, 9, 4, 2)), "V": np.zeros((1, 9, 9, 4))}
    hit = rollout(params, np.zeros((2, 2)), n, T)
    expected = np.full(9, T + 1.0)
    expected[[0, 1, 2, 5, 8]] = [0, 1, 2, 3, 4]
    assert np.array_equal(hit[0, 0], expected) and np.array_equal(hit[0, 1], expected)
    assert MOVES.shape == (4, 2)


def test_seed_changes_the_walk():
    """B couples the seed to the moves: opposite seeds take different first moves."""
    B = np.zeros((1, 9, 4, 1))
    B[0, 0, 0, 0], B[0, 0, 2, 0] = 1.0, -1.0            # at the start: down if r > 0, right if r < 0
    params = {"E": np.zeros((1, 9, 4)), "B": B, "V": np.zeros((1, 9, 9, 4))}
    hit = rollout(params, np.array([[1.0], [-1.0]]), 3, 1)
    assert hit[0, 0, 3] == 1 and hit[0, 1, 1] == 1 and hit[0, 0, 1] == 2 and hit[0, 1, 3] == 2
    run = GridRun(q=16.0, m=2)
    member = {k: v[None, ...] for k, v in run.init(RNG(0)).items()}
    assert tuple(run.risk(member, np.zeros((2, run.d_seed))).shape) == (1,)


def test_rollout_keeps_members_and_seeds_apart():
    """A population of P = 2 members and m = 3 seeds (P ≠ m: the (P, m) layout of every
    per-walk array matters): member 0 walks right, right, down, down (then a wall); member 1
    down, down, right, right (then a wall), for every seed; first-visit times by hand. The
    risk has one entry per member."""
    n, T = 3, 5
    E = np.full((2, 9, 4), -1.0)
    E[0, [0, 1], 2] = E[0, [2, 5, 8], 0] = 1.0          # member 0: right at (0,0), (0,1); down after
    E[1, [0, 3], 0] = E[1, [6, 7, 8], 2] = 1.0          # member 1: down at (0,0), (1,0); right after
    params = {"E": E, "B": np.zeros((2, 9, 4, 2)), "V": np.zeros((2, 9, 9, 4))}
    hit = rollout(params, np.zeros((3, 2)), n, T)
    assert hit.shape == (2, 3, 9)
    for member, path in ((0, [0, 1, 2, 5, 8]), (1, [0, 3, 6, 7, 8])):
        expected = np.full(9, T + 1.0)
        expected[path] = [0, 1, 2, 3, 4]
        for seed in range(3):
            assert np.array_equal(hit[member, seed], expected), (member, seed)
    run = GridRun(q=16.0, m=3)
    pop = {k: np.stack([v, v]) for k, v in run.init(RNG(0)).items()}
    assert tuple(run.risk(pop, np.zeros((3, run.d_seed))).shape) == (2,)


def test_grid_metrics_of_a_snake():
    """The deterministic snake (0,0) → (0,2) → (1,2) → (1,0) → (2,0) → (2,2) reaches the 8 goals
    at steps 1..8 for every seed: worst 8 (the deterministic value, ratio 8/5 to the randomized
    optimum), average 4.5, 95th percentile over goals 7 + 0.65 = 7.65 (np.percentile's
    linear rule at rank 0.95 · 7 = 6.65 of the sorted 1..8), every goal found."""
    moves = {0: 2, 1: 2, 2: 0, 5: 3, 4: 3, 3: 0, 6: 2, 7: 2}         # cell -> right (2), down (0), left (3)
    E = np.full((9, 4), -1.0)
    for cell, a in moves.items():
        E[cell, a] = 1.0
    run = GridRun(q=16.0, m=1, d_seed=2, n_eval=50)
    m = grid_metrics({"E": E, "B": np.zeros((9, 4, 2)), "V": np.zeros((9, 9, 4))}, run, quick_mode=False)
    assert m["worst_steps"] == 8 and m["average_steps"] == 4.5 and m["never_found"] == 0
    assert abs(m["steps_p95"] - 7.65) <= 1e-12 and abs(m["p95_over_randomized"] - 7.65 / 5) <= 1e-8
    assert abs(m["worst_over_randomized"] - 1.6) <= 1e-8 and m["worst_over_deterministic"] == 1
