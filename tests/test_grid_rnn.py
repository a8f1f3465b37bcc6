"""Explore-then-exploit in the 3 × 3 grid (tasks/grid_rnn.py; arXiv:2408.10818's grid-world
task, setting ours): exact references against independent searches over move sequences, the
batched population rollout against GatedLinearRNN.forward run member by member, and a
hand-built recurrent policy (two mirror-image spirals chosen by the seed's sign, then the
shortest way back) with hand-computed costs and metrics."""
import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tasks.grid_exploration import MOVES
from tasks.grid_rnn import ExploreRun, explore_costs, explore_metrics, explore_rollout, explore_values, total_cost
from tasks.matrix_games import lp_value
from tinynim.random import RNG

GOALS = [(i, j) for i in range(3) for j in range(3) if (i, j) != (0, 0)]
D, U, R, L = range(4)                                           # indices into MOVES
# the spiral down first, (0,0) (1,0) (2,0) (2,1) (2,2) (1,2) (1,1) (0,1) (0,2), and its mirror image
SPIRAL = {(0, 0): D, (1, 0): D, (2, 0): R, (2, 1): R, (2, 2): U, (1, 2): L, (1, 1): U, (0, 1): R}
MIRROR = {(j, i): {D: R, R: D, U: L, L: U}[a] for (i, j), a in SPIRAL.items()}
# their costs by hand, goals row-major: first visit (1..8 along the spiral) + Manhattan distance back
SPIRAL_COSTS = [7 + 1, 8 + 2, 1 + 1, 6 + 2, 5 + 3, 2 + 2, 3 + 3, 4 + 4]
MIRROR_COSTS = [1 + 1, 2 + 2, 7 + 1, 6 + 2, 3 + 3, 8 + 2, 5 + 3, 4 + 4]


def _step(cell, a):
    i, j = cell[0] + MOVES[a][0], cell[1] + MOVES[a][1]
    return (i, j) if 0 <= i < 3 and 0 <= j < 3 else cell


def _walk_costs(moves):
    """Two-episode costs of a deterministic cell -> move walk with the shortest return."""
    cell, first = (0, 0), {}
    for t in range(1, 9):
        cell = _step(cell, moves[cell])
        first.setdefault(cell, t)
    return [first[g] + g[0] + g[1] for g in GOALS]


def test_spirals_by_hand():
    """The hand-written costs are the simulated ones; their 50/50 mixture costs ≤ 8 for
    every goal, so the randomized value is ≤ 8."""
    assert _walk_costs(SPIRAL) == SPIRAL_COSTS and _walk_costs(MIRROR) == MIRROR_COSTS
    assert max((a + b) / 2 for a, b in zip(SPIRAL_COSTS, MIRROR_COSTS)) == 8


def _deadline_walk_exists(K):
    """Is there a walk (a move sequence on the grid, not a first-visit order) that reaches
    every goal g for the first time by step K − d(g)? Depth-first search with pruning."""
    deadline = {g: K - g[0] - g[1] for g in GOALS}

    def search(cell, seen, t):
        if len(seen) == 9:
            return True
        if any(t >= deadline[g] for g in GOALS if g not in seen):
            return False
        return any(search(nxt, seen | {nxt}, t + 1) for nxt in {_step(cell, a) for a in range(4)} - {cell})
    return search((0, 0), frozenset({(0, 0)}), 0)


def _best_expected_cost(p):
    """min over every walk of Σ_g p_g (first visit of g + d(g)): Dijkstra over (cell, visited
    set), a step costing the mass of the goals not yet visited (E τ = Σ_t P(τ > t))."""
    mass = dict(zip(GOALS, p))
    start = ((0, 0), frozenset({(0, 0)}))
    best, heap, count = {start: 0.0}, [(0.0, 0, start)], itertools.count(1)
    while heap:
        cost, _, (cell, seen) = heapq.heappop(heap)
        if len(seen) == 9:
            return cost + sum(mass[g] * (g[0] + g[1]) for g in GOALS)
        if cost > best[(cell, seen)]:
            continue
        step_cost = sum(mass[g] for g in GOALS if g not in seen)
        for nxt in {_step(cell, a) for a in range(4)} - {cell}:
            state = (nxt, seen | {nxt})
            if cost + step_cost < best.get(state, np.inf):
                best[state] = cost + step_cost
                heapq.heappush(heap, (cost + step_cost, next(count), state))


def test_explore_values_against_independent_searches():
    """Deterministic 10: a move sequence meeting every deadline K − d(g) exists for K = 10,
    none for K = 9 (search over moves, not walk_costs' orders). Randomized 8: ≤ 8 by the
    spiral mixture, ≥ 8 because the adversary's LP mixture p (solved on the goal side) costs
    every walk ≥ 8 (Dijkstra over all walks). Average 6.75 = min over walks under uniform p.
    LP to 1e-8 (HiGHS tolerances)."""
    v = explore_values(3)
    assert _deadline_walk_exists(10) and not _deadline_walk_exists(9)
    assert v["deterministic_worst"] == 10
    C, goals = explore_costs(3)
    assert goals == GOALS
    _, p = lp_value(-C.T)                                        # max_p min_s pᵀC, as min_p max_s (−Cᵀp)_s
    assert _best_expected_cost(p) >= 8 - 1e-8
    assert abs(v["randomized_worst"] - 8) <= 1e-8
    assert abs(_best_expected_cost(np.full(8, 1 / 8)) - 6.75) <= 1e-12 and v["deterministic_average"] == 6.75


# -- a hand-built recurrent policy -----------------------------------------------------------------

SPIRAL_RUN = ExploreRun(q=256.0, m=1, d_seed=1, n_hidden=20, n_out_gates=18 + 81, recurrence="direct", n_eval=2000)


def spiral_policy(first=SPIRAL, second=MIRROR):
    """GatedLinearRNN ("direct" λ, inputs: 9 cells, at-goal, episode 2, seed r (1), 1):
    units 0–8 the current cell (λ = 0), 9–17 the goal's cell (λ = 1, written when the at-goal
    flag is on), 18 r·(1 − episode 2) and 19 (1 − episode 2) (λ = 0). Output gates (episode 1):
    [cell c]·unit 18 votes first[c] − second[c] where the walks differ (the seed's sign picks
    the walk), [cell c]·unit 19 votes their common move where they agree; (episode 2)
    [cell c]·[goal k] votes the first move of a shortest path from c to k (0 before the find)."""
    layer = SPIRAL_RUN.layer
    Wx_in, Wg_in = np.zeros((13, 20)), np.zeros((13, 20))
    for c in range(9):
        Wx_in[c, c] = Wg_in[12, c] = 1.0                          # cell now: x_c · 1
        Wx_in[c, 9 + c] = Wg_in[9, 9 + c] = 1.0                   # goal memory: x_c · at-goal
    Wx_in[11, 18], Wx_in[12, 19] = 1.0, 1.0                       # r, 1
    Wg_in[12, 18:] = 1.0
    Wg_in[10, 18:] = -1.0                                         # times (1 − episode 2)
    lam = np.array([0.0] * 9 + [1.0] * 9 + [0.0, 0.0])
    Wx_out, Wg_out, Dout = np.zeros((20, 99)), np.zeros((20, 99)), np.zeros((99, 4))
    for c in range(9):
        Wx_out[c, c], Wg_out[18, c] = 1.0, 1.0                    # gate c: [cell c] · r(1 − ep2)
        Wx_out[c, 9 + c], Wg_out[19, 9 + c] = 1.0, 1.0            # gate 9 + c: [cell c] · (1 − ep2)
        cell = divmod(c, 3)
        if cell in first and first[cell] == second.get(cell):
            Dout[9 + c, first[cell]] = 1.0
        else:
            if cell in first:
                Dout[c, first[cell]] += 1.0
            if cell in second:
                Dout[c, second[cell]] -= 1.0
        for k in range(9):
            gate, goal = 18 + 9 * c + k, divmod(k, 3)
            Wx_out[c, gate], Wg_out[9 + k, gate] = 1.0, 1.0
            if goal[0] != cell[0]:
                Dout[gate, D if goal[0] > cell[0] else U] = 10.0
            elif goal[1] != cell[1]:
                Dout[gate, R if goal[1] > cell[1] else L] = 10.0
    params = {"Wx_in": Wx_in, "Wg_in": Wg_in, "lam": lam, "Wx_out": Wx_out, "Wg_out": Wg_out, "D": Dout}
    return layer, params


def test_hand_built_policy_costs():
    """Seed r > 0 walks the spiral, r < 0 its mirror; both find every goal and walk straight
    back: the hand-computed costs, for a population of 2 (the second member never moves:
    up or left by the seed's sign, both walls in the corner, so nothing is found and every goal costs T1 + 1 + T2 + 1)."""
    layer, params = spiral_policy()
    _, still = spiral_policy({cell: U for cell in SPIRAL}, {cell: L for cell in SPIRAL})
    pop = {k: np.stack([params[k], still[k]]) for k in params}
    find, back = explore_rollout(layer, pop, np.array([[1.0], [-0.5]]), 3, (10, 5))
    cost = total_cost(find, back, (10, 5))
    assert cost.shape == (2, 2, 8)
    assert cost[0, 0].tolist() == SPIRAL_COSTS and cost[0, 1].tolist() == MIRROR_COSTS
    assert np.all(find[1] == 11) and np.all(back[1] == 6) and np.all(cost[1] == 10 + 1 + 5 + 1)
    assert back[0].tolist() == [[g[0] + g[1] for g in GOALS]] * 2     # the shortest way back


def test_rollout_takes_arrays_of_the_active_backend(backend):
    """ES hands the rollout its population and seeds on the active backend (torch, strict,
    ...): they are brought to the host, so the costs are those of the host arrays."""
    layer, params = spiral_policy()
    r = np.array([[1.0], [-0.5]])
    host_cost = total_cost(*explore_rollout(layer, {k: v[None] for k, v in params.items()}, r, 3, (10, 5)), (10, 5))
    pop = {k: backend.asarray(v[None]) for k, v in params.items()}
    cost = total_cost(*explore_rollout(layer, pop, backend.asarray(r), 3, (10, 5)), (10, 5))
    assert np.array_equal(cost, host_cost) and cost[0, 0].tolist() == SPIRAL_COSTS


def test_hand_built_policy_metrics():
    """The 50/50 spirals are a randomized optimum: with a fraction π̂ of fresh seeds > 0 the
    per-goal costs are π̂ S + (1 − π̂) M, two goals cost 8 for every π̂ and the others
    ≤ 4 + 6π̂ < 8 (π̂ ≈ ½ from 2000 seeds, s.e. 0.011): worst 8 = the optimum, ratio 0.8 to
    the deterministic 10; the average is 54/8 = 6.75 for every π̂; the 95th percentile
    (linear, rank 6.65 of 8 sorted) lies between two 8s; nothing is left unfound."""
    layer, params = spiral_policy()
    m = explore_metrics(params, SPIRAL_RUN, seed=3, quick_mode=False)
    assert m["worst_steps"] == 8 and m["steps_p95"] == 8 and m["never_found"] == 0
    assert abs(m["average_steps"] - 6.75) <= 1e-12
    assert abs(m["worst_over_randomized"] - 1) <= 1e-8 and m["worst_over_deterministic"] == 0.8
    pi = (m["steps"][1] - 4) / 6                                  # goal (0, 2) costs 4 + 6π̂
    assert abs(pi - 0.5) <= 0.05
    assert np.allclose(m["steps"], pi * np.array(SPIRAL_COSTS) + (1 - pi) * np.array(MIRROR_COSTS))


# -- the batched rollout against the layer's own forward ---------------------------------------------

def loop_rollout(layer, params, r, horizons):
    """Each member, seed and goal on its own: GatedLinearRNN.forward one step at a time
    ((x, h) -> (out, h) with return_state), the goal known from the start."""
    T1, T2 = horizons
    obs = lambda cell, flag, ep2, rj: np.concatenate([np.eye(9)[cell], [flag, ep2], rj])[None, None, :]
    find = np.zeros((len(params["D"]), len(r), 8), dtype=int)
    back = np.zeros_like(find)
    for p, j, g in itertools.product(range(len(params["D"])), range(len(r)), range(8)):
        member = {k: v[p] for k, v in params.items()}
        goal, cell, h = g + 1, 0, np.zeros((1, layer.n_hidden), dtype=np.float32)
        step = lambda x, h: layer.forward(member, (x.astype(np.float32), h), return_state=True)[0]
        find[p, j, g], back[p, j, g] = T1 + 1, T2 + 1
        for t in range(1, T1 + 1):
            out, h = step(obs(cell, 0.0, 0.0, r[j]), h)
            cell = int(np.ravel_multi_index(_step(divmod(cell, 3), int(np.argmax(out))), (3, 3)))
            if cell == goal:
                find[p, j, g] = t
                _, h = step(obs(cell, 1.0, 0.0, r[j]), h)
                break
        if find[p, j, g] > T1:
            continue
        cell = 0
        for t in range(1, T2 + 1):
            out, h = step(obs(cell, 0.0, 1.0, r[j]), h)
            cell = int(np.ravel_multi_index(_step(divmod(cell, 3), int(np.argmax(out))), (3, 3)))
            if cell == goal:
                back[p, j, g] = t
                break
    return find, back


@settings(max_examples=6)
@given(seed=st.integers(0, 2**16), P=st.integers(1, 3), m=st.integers(1, 3), std=st.sampled_from([0.5, 2.0]))
def test_population_rollout_matches_forward(seed, P, m, std):
    """Random members (the layer's init scaled by std, so that walks wander and goals are
    found at different times or not at all) and seeds: the goal-free batched rollout gives
    exactly the find and return steps of the per-member, per-goal loop over the layer's
    forward (both float32; an argmax tie within rounding has probability ~1e-7 per step)."""
    run = ExploreRun(q=256.0, m=m)
    layer = run.layer
    members = [run.init(RNG(seed + p)) for p in range(P)]
    params = {k: (std * np.stack([np.asarray(mb[k]) for mb in members])).astype(np.float32) for k in members[0]}
    r = np.random.default_rng(seed).standard_normal((m, run.d_seed)).astype(np.float32)
    find, back = explore_rollout(layer, params, r, 3, (run.T1, run.T2))
    want_find, want_back = loop_rollout(layer, params, r, (run.T1, run.T2))
    assert np.array_equal(find, want_find) and np.array_equal(back, want_back)
    assert tuple(run.risk(params, r).shape) == (P,)


def test_explore_rollout_rejects_bad_inputs():
    """Seeds of the wrong width and parameters without the member axis: a ValueError naming
    the function, the expected and the actual shape."""
    run = ExploreRun(q=256.0, m=2)
    params = run.init(RNG(0))
    pop = {k: np.asarray(v)[None] for k, v in params.items()}
    with pytest.raises(ValueError, match=r"explore_rollout: expected seeds r of shape \(m, 4\).*got shape \(2, 3\)"):
        explore_rollout(run.layer, pop, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"explore_rollout: expected params\['Wx_in'\] of shape \(P, \*\(16, 16\)\), got \(16, 16\)"):
        explore_rollout(run.layer, {k: np.asarray(v) for k, v in params.items()}, np.zeros((2, 4)))


def test_init_ignores_the_seed():
    """The initial policy is deterministic (the seed's input weights are 0): every seed walks
    the same way, while the other input weights are the layer's random ones."""
    run = ExploreRun(q=256.0, m=5)
    params = run.init(RNG(1))
    pop = {k: np.asarray(v)[None] for k, v in params.items()}
    find, back = explore_rollout(run.layer, pop, np.random.default_rng(0).standard_normal((5, run.d_seed)))
    assert np.all(find == find[:, :1]) and np.all(back == back[:, :1])
    assert np.all(np.asarray(params["Wx_in"])[11:15] == 0) and np.all(np.asarray(params["Wg_in"])[11:15] == 0)
    assert np.all(np.asarray(params["Wx_in"])[[0, 10, 15]] != 0)


def test_train_policy_reads_rank_shaping(monkeypatch):
    """train_policy hands each run's rank_shaping to the ES estimator: on for ExploreRun
    (its default), off for the one-episode GridRun."""
    import tasks.randomized_algorithms as ra
    from tasks.grid_exploration import GridRun
    seen = []
    monkeypatch.setattr(ra, "es_loss_and_grads", lambda loss, **kw: seen.append(kw["rank_shaping"]))
    monkeypatch.setattr(ra, "fit", lambda f, params, *a, **kw: (params, {}))
    ra.train_policy(ExploreRun(q=256.0, m=2, steps=1))
    ra.train_policy(GridRun(q=256.0, m=2, steps=1))
    assert seen == [True, False]
