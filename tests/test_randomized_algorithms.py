"""Exact properties of P8 (arXiv:2408.10818): the relaxed adversarial objective, the memory
game's minimax value, amplification and the cow path. Float64; the objective on every
backend. Tolerances: EXACT = 1e-12 for identities computed in another order (rounding
~1e-16), LP = 1e-8 for values returned by the HiGHS solver (its tolerances are ~1e-9).
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray, to_numpy
from tinynim.random import RNG
from tinynim.gradcheck import numerical_grad
from tasks.randomized_algorithms import (best_response_value, cow_path, cow_path_values, deterministic_value,
                                         lp_value, majority_vote, majority_vote_monte_carlo, memory_game,
                                         power_mean_risk, recall_losses, recall_profile, repeat_until_verified,
                                         stored)
from helpers import FD_TOL, HAS_TORCH, TORCH_TOL, assert_close, host

EXACT = 1e-12
LP = 1e-8

seeds = st.integers(0, 2**16)
qs = st.one_of(st.sampled_from([1.0, 2.0, 16.0, 100.0]), st.floats(1.0, 50.0))


def _losses(seed, n, m, batch=()):
    rng = np.random.default_rng(seed)
    return rng.exponential(1.0, batch + (n, m)) * (rng.random(batch + (n, 1)) < 0.8)   # some inputs at 0


def _plain(losses, q):
    """The definition, written directly (host float64)."""
    mean = losses.mean(axis=-1)
    return mean.max(axis=-1) if math.isinf(q) else np.mean(mean ** q, axis=-1) ** (1 / q)


# -- the objective ---------------------------------------------------------------------------------

@given(n=st.integers(1, 6), m=st.integers(1, 5), batch=st.sampled_from([(), (3,)]), q=qs, seed=seeds)
def test_power_mean_is_the_definition(backend, n, m, batch, q, seed):
    """Log-space value = (1/n Σ ℓ̄_i^q)^(1/q) on moderate numbers; q = 1 is the mean (ERM)."""
    L = _losses(seed, n, m, batch)
    value, _ = power_mean_risk(asarray(L), q)
    assert_close(value, _plain(L, q), EXACT, "R_q vs definition")
    assert_close(power_mean_risk(asarray(L), 1.0)[0], L.mean(axis=(-2, -1)), EXACT, "R_1 vs mean")
    assert_close(power_mean_risk(asarray(L), math.inf)[0], L.mean(axis=-1).max(axis=-1), EXACT, "R_inf vs max")


@given(n=st.integers(1, 6), m=st.integers(1, 5), q1=qs, q2=qs, seed=seeds)
def test_power_mean_is_monotone_and_bracketed(backend, n, m, q1, q2, seed):
    """R_q is non-decreasing in q, between the mean (q = 1) and the worst case (q = ∞), and
    R_∞ n^(−1/q) ≤ R_q: it converges to the worst case as q → ∞."""
    L = asarray(_losses(seed, n, m))
    lo, hi = sorted((q1, q2))
    r_lo, r_hi = (float(power_mean_risk(L, q)[0]) for q in (lo, hi))
    r1, rinf = float(power_mean_risk(L, 1.0)[0]), float(power_mean_risk(L, math.inf)[0])
    tol = EXACT * max(rinf, 1e-300)
    assert r1 - tol <= r_lo <= r_hi + tol <= rinf + 2 * tol
    assert rinf * n ** (-1 / hi) <= r_hi + tol


@given(n=st.integers(1, 6), scale=st.sampled_from([1e-300, 1e-150, 1.0, 1e150, 1e300]), q=st.sampled_from([2.0, 64.0, 1e4]),
       seed=seeds)
def test_power_mean_is_stable(f64, n, scale, q, seed):
    """No overflow or underflow for extreme losses and large q: homogeneous of degree 1,
    R_q(c ℓ) = c R_q(ℓ), and its gradient is scale-free (degree 0)."""
    L = _losses(seed, n, 2) + 0.1
    value, grad = power_mean_risk(asarray(L * scale), q)
    ref, ref_grad = power_mean_risk(asarray(L), q)
    assert np.isfinite(host(value)).all() and np.isfinite(host(grad)).all()
    assert_close(host(value) / scale, ref, 1e-12, "R_q(cℓ)/c")
    assert_close(grad, ref_grad, 1e-12, "gradient at cℓ")


def test_power_mean_at_zero_and_bad_input(f64):
    """All-zero losses: value 0 and the q = 1 gradient 1/(nm) (no NaN); bad shapes and q name
    the function, the expected and the actual."""
    value, grad = power_mean_risk(asarray(np.zeros((3, 2))), 8.0)
    assert float(value) == 0.0 and np.all(host(grad) == 1 / 6)
    with pytest.raises(ValueError, match=r"power_mean_risk: losses must be \(..., n_inputs, m_seeds\), got shape \(3,\)"):
        power_mean_risk(asarray(np.ones(3)), 2.0)
    with pytest.raises(ValueError, match=r"power_mean_risk: q must be a number in \[1, inf\], got 0.5"):
        power_mean_risk(asarray(np.ones((3, 2))), 0.5)


@given(n=st.integers(1, 5), m=st.integers(1, 4), q=st.sampled_from([1.0, 2.0, 7.5, 16.0]), seed=seeds)
def test_power_mean_gradient(backend, n, m, q, seed):
    """Hand-derived ∂R/∂ℓ vs central differences (float64, FD_TOL) and torch autograd of the
    same code (TORCH_TOL); losses kept away from 0, where R is not differentiable for q > 1."""
    L = _losses(seed, n, m) + 0.05
    _, grad = power_mean_risk(asarray(L), q)
    fd = numerical_grad(lambda x: float(power_mean_risk(asarray(x), q)[0]), L)
    assert_close(grad, fd, FD_TOL, "dR/dℓ vs finite differences")
    if HAS_TORCH:
        import torch
        t = torch.tensor(L, requires_grad=True)
        power_mean_risk(t, q)[0].backward()
        assert_close(grad, t.grad.numpy(), TORCH_TOL, "dR/dℓ vs torch autograd")


@given(n=st.integers(1, 5), m=st.integers(1, 5), seed=seeds)
def test_power_mean_worst_case_subgradient(f64, n, m, seed):
    """q = ∞: the gradient is 1/m on the seeds of the worst input (ties share it), 0 elsewhere."""
    L = _losses(seed, n, m) + 0.05
    L[-1] = L[0] if n > 1 else L[-1]                                         # a tie when n > 1
    _, grad = power_mean_risk(asarray(L), math.inf)
    mean = L.mean(axis=1)
    hit = mean == mean.max()
    assert np.allclose(host(grad), np.where(hit[:, None], 1 / (m * hit.sum()), 0.0), rtol=0, atol=EXACT)


@given(n=st.integers(1, 6), m=st.integers(2, 6), q=qs, seed=seeds)
def test_one_seed_per_input_charges_the_seed_variance(f64, n, m, q, seed):
    """Jensen: with one seed per input (m = 1) the objective averaged over seeds is at least
    the m-seed objective, (1/m) Σ_j R̂_{q,1}^{(j)q} ≥ R̂_{q,m}^q, with equality iff the losses
    do not depend on the seed: m = 1 rewards determinism."""
    L = _losses(seed, n, m) + 0.05
    one_seed = np.mean([float(power_mean_risk(asarray(L[:, j:j + 1]), q)[0]) ** q for j in range(m)])
    many = float(power_mean_risk(asarray(L), q)[0]) ** q
    assert one_seed >= many * (1 - EXACT)
    flat = np.repeat(L[:, :1], m, axis=1)                                    # seed-independent losses
    equal = np.mean([float(power_mean_risk(asarray(flat[:, j:j + 1]), q)[0]) ** q for j in range(m)])
    assert equal == pytest.approx(float(power_mean_risk(asarray(flat), q)[0]) ** q, rel=EXACT)


# -- the memory game -----------------------------------------------------------------------------

@given(N=st.integers(2, 7), data=st.data())
def test_memory_game_minimax(N, data):
    """LP value = 1 − M/N, attained by the uniform mixture over M-subsets; every pure
    strategy loses for some query (value 1)."""
    M = data.draw(st.integers(1, N - 1))
    A, subsets = memory_game(N, M)
    assert len(subsets) == math.comb(N, M) and np.all(A.sum(axis=0) == N - M)
    value, x = lp_value(A)
    assert abs(value - (1 - M / N)) <= LP and abs(x.sum() - 1) <= LP and np.all(x >= -LP)
    assert np.max(A @ x) <= value + LP
    assert abs(np.max(A @ np.full(len(subsets), 1 / len(subsets))) - (1 - M / N)) <= EXACT
    assert deterministic_value(A) == 1.0


@given(N=st.integers(2, 7), data=st.data(), seed=seeds)
def test_derandomisation(N, data, seed):
    """Against a fixed query distribution p, mixing never helps: the LP optimum equals the
    best pure strategy (the M most likely items), min_S pᵀA[:, S] = 1 − (sum of the M largest p)."""
    M = data.draw(st.integers(1, N - 1))
    A, _ = memory_game(N, M)
    p = np.random.default_rng(seed).dirichlet(np.ones(N))
    value, x = best_response_value(A, p)
    best_pure = np.min(p @ A)
    assert abs(value - best_pure) <= LP
    assert abs(best_pure - (1 - np.sort(p)[-M:].sum())) <= EXACT


def test_lp_value_on_a_known_game():
    """Matching pennies (value ½ at x = (½, ½)) and rock-paper-scissors losses (value 1/3)."""
    value, x = lp_value(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert abs(value - 0.5) <= LP and np.allclose(x, 0.5, atol=LP)
    rps = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    assert abs(lp_value(rps)[0] - 0.5) <= LP
    with pytest.raises(ValueError, match="memory_game: need 1 <= M < N, got N=3, M=3"):
        memory_game(3, 3)


# -- amplification and the cow path ---------------------------------------------------------------

@given(p=st.floats(0.0, 1.0), k=st.integers(1, 12))
def test_majority_vote_formula(p, k):
    """Small cases written out: k = 1 → p, k = 2 → p² + p(1 − p) = p (a tie is a coin),
    k = 3 → p³ + 3p²(1 − p); symmetry P(p) + P(1 − p) = 1; verified repetition
    1 − (1 − p)^k ≥ the majority vote (one right run suffices)."""
    assert majority_vote(p, 1) == pytest.approx(p, abs=EXACT)
    assert majority_vote(p, 2) == pytest.approx(p, abs=EXACT)
    assert majority_vote(p, 3) == pytest.approx(p ** 3 + 3 * p ** 2 * (1 - p), abs=EXACT)
    assert majority_vote(p, k) + majority_vote(1 - p, k) == pytest.approx(1.0, abs=EXACT)
    assert repeat_until_verified(p, k) >= majority_vote(p, k) - EXACT


@pytest.mark.parametrize("p, k", [(0.6, 9), (0.4, 5), (0.75, 4), (0.9, 15)])
def test_majority_vote_vs_monte_carlo(p, k):
    """The formula vs 2·10⁵ simulated votes: standard error ≤ √(¼/2·10⁵) = 1.1e-3; the
    tolerance 5.6e-3 is 5 s.e. (a false failure has probability < 1e-6 per case)."""
    mc = majority_vote_monte_carlo(p, k, 200_000, np.random.default_rng(k))
    assert abs(mc - majority_vote(p, k)) <= 5.6e-3


@given(L=st.integers(1, 25))
def test_cow_path_values(L):
    """Deterministic worst case 3L, randomized (LP over the two sweeps) 2L at the 50/50
    mixture, equal averages over a uniform goal ((L + 1)/2 + L both)."""
    A, goals = cow_path(L)
    assert A.shape == (2 * L, 2) and 0 not in goals
    v = cow_path_values(L)
    assert v["deterministic_worst"] == 3 * L
    assert abs(v["randomized_worst"] - 2 * L) <= LP * L
    assert v["deterministic_average"] == (L + 1) / 2 + L
    assert abs(v["randomized_average"] - v["deterministic_average"]) <= LP * L
    assert np.max(A @ np.array([0.5, 0.5])) == 2 * L


# -- the learned storage policy ---------------------------------------------------------------------

@given(N=st.integers(2, 7), m=st.integers(1, 5), P=st.integers(1, 3), data=st.data(), seed=seeds)
def test_stored_keeps_the_top_M_items(backend, N, m, P, data, seed):
    """For every seed exactly M items are kept, the M largest scores U r + b (written out with
    numpy's argsort); a population (leading axis) gives each member's own selection."""
    M = data.draw(st.integers(1, N - 1))
    rng = np.random.default_rng(seed)
    U, b, r = rng.standard_normal((P, N, 3)), rng.standard_normal((P, N)), rng.standard_normal((m, 3))
    kept = host(stored({"U": asarray(U), "b": asarray(b)}, asarray(r), M))          # (P, m, N)
    assert kept.shape == (P, m, N) and np.all(kept.sum(axis=-1) == M)
    for k in range(P):
        top = np.argsort(r @ U[k].T + b[k], axis=-1)[:, N - M:]
        expected = np.zeros((m, N))
        np.put_along_axis(expected, top, 1.0, axis=-1)
        assert np.array_equal(kept[k], expected)
        one = host(stored({"U": asarray(U[k]), "b": asarray(b[k])}, asarray(r), M))
        assert np.array_equal(one, expected)
    losses = host(recall_losses({"U": asarray(U), "b": asarray(b)}, asarray(r), M))
    assert np.array_equal(losses, 1 - np.swapaxes(kept, -1, -2))


def test_stored_bad_memory_size(f64):
    p = {"U": asarray(np.zeros((4, 2))), "b": asarray(np.zeros(4))}
    with pytest.raises(ValueError, match="stored: need 1 <= M < N, got M=4, N=4"):
        stored(p, asarray(np.zeros((1, 2))), 4)


def test_uniform_random_policy_recall_profile(f64):
    """A policy with U = I (item i scored by seed coordinate i) and b = 0 is exchangeable over items: with 2·10⁴
    fresh seeds every item's recall is M/N within 5 s.e. (s.e. = √(c(1 − c)/n) ≤ 3.5e-3)."""
    N, M, n = 6, 2, 20_000
    p = {"U": asarray(np.eye(N)), "b": asarray(np.zeros(N))}
    recall = recall_profile(p, M, n, seed=3)
    c = M / N
    assert np.all(np.abs(recall - c) <= 5 * np.sqrt(c * (1 - c) / n)) and abs(recall.mean() - c) < 1e-12


# -- graph colouring: equivariance and gradients ---------------------------------------------------

from tasks.graph_colouring import GraphLinear, circulant, colouring_net, expected_conflicts   # noqa: E402
from helpers import assert_gradients                                                            # noqa: E402

graphs = st.sampled_from([(5, (1,)), (8, (1,)), (12, (1, 2)), (9, (1, 3)), (10, (2, 5))])


@given(graph=graphs, seed=seeds)
def test_deterministic_equivariant_net_colours_every_node_alike(backend, graph, seed):
    """Test 4. Identical node inputs on a vertex-transitive graph (circulants): every node gets
    the same logits (spread 0 up to the rounding of sums of equal terms in another order,
    ≤ 1e-12 relative), so the expected conflicts per edge are Σ_c p(c)² ≥ 1/C. With i.i.d.
    node noise the rows differ. A node relabelling Π permutes the output: f(Πz, ΠAΠᵀ) = Πf(z, A)."""
    n, jumps = graph
    A = circulant(n, jumps)
    model = colouring_net(3, 6, 2, 3)
    params = model.init(RNG(seed))
    rng = np.random.default_rng(seed)
    same = np.broadcast_to(rng.standard_normal((2, 1, 3)), (2, n, 3)).copy()
    logits = host(model(params, asarray(same), adj=asarray(A)))
    assert np.max(np.abs(logits - logits[:, :1])) <= 1e-12 * np.max(np.abs(logits))
    value, _ = expected_conflicts(asarray(logits), asarray(A))
    assert float(value) >= 1 / 3 - 1e-12
    z = rng.standard_normal((2, n, 3))
    noisy = host(model(params, asarray(z), adj=asarray(A)))
    assert np.max(np.abs(noisy - noisy[:, :1])) > 1e-6
    perm = rng.permutation(n)
    P = np.eye(n)[perm]
    relabelled = host(model(params, asarray(z[:, perm]), adj=asarray(P @ A @ P.T)))
    assert_close(relabelled, noisy[:, perm], 1e-12, "f(Πz, ΠAΠᵀ) vs Πf(z, A)")


@given(n=st.integers(3, 8), B=st.integers(1, 3), seed=seeds)
def test_expected_conflicts_is_the_edge_sum(backend, n, B, seed):
    """E = 1/(B|E|) Σ_b Σ_{edges} p_u · p_v written out edge by edge; its gradient vs central
    differences (FD_TOL) and torch autograd of the same code (TORCH_TOL)."""
    A = circulant(n)
    logits = np.random.default_rng(seed).standard_normal((B, n, 3))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    edges = np.argwhere(np.triu(A) > 0)
    ref = sum(p[b, u] @ p[b, v] for b in range(B) for u, v in edges) / (B * len(edges))
    value, grad = expected_conflicts(asarray(logits), asarray(A))
    assert abs(float(value) - ref) <= 1e-12
    fd = numerical_grad(lambda x: float(expected_conflicts(asarray(x), asarray(A))[0]), logits)
    assert_close(grad, fd, FD_TOL, "dE/dlogits vs finite differences")
    if HAS_TORCH:
        import torch
        t = torch.tensor(logits, requires_grad=True)
        expected_conflicts(t, torch.tensor(A))[0].backward()
        assert_close(grad, t.grad.numpy(), TORCH_TOL, "dE/dlogits vs torch autograd")


def test_colouring_layers_gradients(backend):
    """GraphLinear (its examples) and the whole colouring net: FD + torch autograd."""
    for _, (layer, x, kw) in GraphLinear.examples(RNG(0)).items():
        assert_gradients(layer, layer.init(RNG(1)), x, kw)
    model = colouring_net(3, 5, 2, 3)
    assert_gradients(model, model.init(RNG(2)), RNG(3).normal((2, 6, 3)), {"adj": asarray(circulant(6, (1, 2)))})


def test_colouring_bad_input(f64):
    layer = GraphLinear(3, 2)
    with pytest.raises(ValueError, match=r"GraphLinear: expected adj of shape \(5, 5\), got \(4, 4\)"):
        layer.forward(layer.init(RNG(0)), RNG(1).normal((2, 5, 3)), adj=asarray(circulant(4)))
    with pytest.raises(ValueError, match=r"circulant: need n >= 3 and jumps in \[1, n//2\], got n=6, jumps=\(4,\)"):
        circulant(6, (4,))


@given(L=st.integers(1, 12), m=st.integers(1, 5), P=st.integers(1, 3), seed=seeds)
def test_cow_losses_follow_the_chosen_sweep(backend, L, m, P, seed):
    """Each seed picks a sweep (left first iff wᵀr + b > 0); the losses are that sweep's steps
    to every goal ÷ 3L (the cow_path matrix column), for a single policy and a population."""
    from tasks.randomized_algorithms import cow_losses, left_first
    rng = np.random.default_rng(seed)
    w, b, r = rng.standard_normal((P, 3)), rng.standard_normal((P, 1)), rng.standard_normal((m, 3))
    A, _ = cow_path(L)
    left = (r @ w.T + b[:, 0]).T > 0                                                    # (P, m)
    expected = np.where(left[:, None, :], A[None, :, 1:], A[None, :, :1]) / (3 * L)     # (P, 2L, m)
    pop = {"w": asarray(w), "b": asarray(b)}
    assert np.array_equal(host(left_first(pop, asarray(r))), left.astype(float))
    assert_close(cow_losses(pop, asarray(r), L), expected, EXACT, "cow losses")
    assert_close(cow_losses({"w": asarray(w[0]), "b": asarray(b[0])}, asarray(r), L), expected[0], EXACT, "one policy")


def test_cow_metrics_of_a_deterministic_sweep(f64):
    """Always left first (w = 0, b > 0), L = 10: goals at −d cost d, at +d cost 2L + d, so the
    steps ÷ L are 0.1..1.0 and 2.1..3.0: worst 3, average 1.55, 95th percentile over the 20
    goals 2.9 + 0.05 · 0.1 = 2.905 (np.percentile's linear rule at rank 0.95 · 19 = 18.05)."""
    from tasks.randomized_algorithms import CowRun, cow_metrics
    run = CowRun(q=16.0, m=1, n_eval=100)
    m = cow_metrics(run.init(RNG(0)), run, quick_mode=False)
    assert abs(m["worst_over_L"] - 3) <= EXACT and abs(m["average_over_L"] - 1.55) <= EXACT
    assert abs(m["p95_over_L"] - 2.905) <= EXACT and m["p_left"] == 1


@given(n=st.integers(3, 9), jumps=st.sampled_from([(1,), (1, 2)]), B=st.integers(1, 4), seed=seeds)
def test_edge_conflicts_edge_by_edge(f64, n, jumps, B, seed):
    """Per-edge conflict probability 1/B Σ_b p_{b,u} · p_{b,v}, written out by a loop over the
    edges u < v; its mean is expected_conflicts' value (EXACT: the same sums in another order)."""
    from tasks.graph_colouring import edge_conflicts
    if max(jumps) > n // 2:
        jumps = (1,)
    A = circulant(n, jumps)
    p = np.random.default_rng(seed).dirichlet(np.ones(3), size=(B, n))           # (B, n, 3)
    ref = [np.mean([p[b, u] @ p[b, v] for b in range(B)]) for u in range(n) for v in range(u + 1, n) if A[u, v]]
    got = edge_conflicts(p, A)
    assert_close(got, np.array(ref), EXACT, "per-edge conflicts")
    value, _ = expected_conflicts(asarray(np.log(p)), asarray(A))
    assert abs(float(value) - got.mean()) <= EXACT


# -- routing of the experiments --------------------------------------------------------------------

def test_measure_routes_each_experiment(monkeypatch):
    """measure sends every measurement and every experiment to its own trainer and metrics
    (stand-ins that name their route; the expected route is read from the experiment's name,
    so a swapped or dropped branch fails), and rejects an unknown name."""
    import tasks.randomized_algorithms as ra
    for fn in ("reference_errors", "amplification_monte_carlo", "flat_objective_errors"):
        monkeypatch.setattr(ra, fn, lambda seed, fn=fn: {"route": fn})
    monkeypatch.setattr(ra, "train_recall", lambda run, **kw: ("recall", ("params", run), None))
    monkeypatch.setattr(ra, "train_colouring", lambda run, **kw: ("colour", ("params", run), None))
    monkeypatch.setattr(ra, "train_policy", lambda run, **kw: (("params", run), None))
    for fn in ("recall_metrics", "colouring_metrics"):
        monkeypatch.setattr(ra, fn, lambda model, params, run, **kw: {"route": model, "params": params, "run": run})
    for fn, route in (("policy_metrics", "memory"), ("cow_metrics", "cow"), ("grid_metrics", "grid"),
                      ("explore_metrics", "explore")):
        monkeypatch.setattr(ra, fn, lambda params, run, route=route, **kw: {"route": route, "params": params, "run": run})
    for name in ra.MEASUREMENTS:
        expected = {"references": "reference_errors", "amplification": "amplification_monte_carlo",
                    "flat_objective": "flat_objective_errors"}[name]
        assert ra.measure(name, quick_mode=True) == {"route": expected}
    for name, run in ra.EXPERIMENTS.items():
        expected = {"route": name.split("_")[0], "params": ("params", run), "run": run}
        assert ra.measure(name, quick_mode=True) == expected, name
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        ra.measure("nope")
