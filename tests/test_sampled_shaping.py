"""Sampled learning-aware PG (arXiv:2410.18636; tasks/sampled_shaping.py): the exact lattice
game against brute-force enumeration, its complex-step gradient against central differences,
the tabular fast path of the estimators against the plain scores, and the naive learners'
updates against explicit loops; float64 on every backend.

Tolerances: EXACT = 1e-12 relative where one number is computed two ways (rounding only);
central differences (h = 1e-6, float64) agree to ~1e-9, so 1e-7.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinynim.backend import asarray, to_numpy, use_dtype
from tinynim.random import RNG
from tasks import ipd, learning_aware_pg as lp, sampled_shaping as ss
from helpers import assert_close, host

EXACT = 1e-12
seeds = st.integers(0, 2**16)
OWN = np.array([[ipd.PAYOFFS[0], ipd.PAYOFFS[1]], [ipd.PAYOFFS[2], ipd.PAYOFFS[3]]])   # own[a, c]


def brute_force_objective(theta, psi0, B, T, eta):
    """J̄ by enumerating every joint outcome of the B trajectories, episode by episode, with
    the co-player's logit updated by its sign rule (host loops, tiny sizes only)."""
    M = theta.shape[0]
    p = 1 / (1 + np.exp(-theta))

    def from_episode(m, psi):
        if m == M:
            return 0.0
        q, total = 1 / (1 + np.exp(-psi)), 0.0
        for batch in itertools.product(itertools.product(range(2), repeat=2 * T), repeat=B):
            prob, reward, k = 1.0, 0.0, 0.0
            for seq in batch:
                s = 0
                for t in range(T):
                    a, c = seq[2 * t], seq[2 * t + 1]
                    prob *= (p[m, s] if a == 0 else 1 - p[m, s]) * (q if c == 0 else 1 - q)
                    reward += OWN[a, c] / B
                    k += OWN[c, a] if c == 0 else -OWN[c, a]
                    s = 1 + 2 * a + c
            total += prob * (reward + from_episode(m + 1, psi + eta * k / B))
        return total
    return from_episode(0, psi0)


@settings(max_examples=6)
@given(size=st.sampled_from([(1, 1, 1), (1, 2, 1), (2, 2, 1), (3, 1, 1), (1, 3, 1), (1, 2, 2), (2, 1, 2), (1, 1, 3),
                             (2, 3, 1)]), eta=st.floats(0.1, 2.0), seed=seeds)
def test_lattice_objective_is_the_enumeration(backend, size, eta, seed):
    """The dynamic programme over the co-player's lattice = the sum over all outcomes."""
    B, M, T = size
    rng = np.random.default_rng(seed)
    theta, psi0 = rng.normal(size=(M, 5)), float(rng.normal())
    got = float(host(ss.lattice_objective(asarray(theta), psi0, B=B, T=T, eta=eta)))
    assert_close(np.array([got]), np.array([brute_force_objective(theta, psi0, B, T, eta)]), EXACT, "J̄")


def test_lattice_gradient_is_the_derivative(f64):
    """The complex step through the programme vs central differences (B = 3, M = 3, T = 2)."""
    rng = np.random.default_rng(0)
    theta, psi0, kw = rng.normal(size=(3, 5)), 0.3, dict(B=3, T=2, eta=0.5)
    J = lambda th: float(host(ss.lattice_objective(asarray(th), psi0, **kw)))
    fd = np.array([(J(theta + 1e-6 * e) - J(theta - 1e-6 * e)) / 2e-6 for e in np.eye(15).reshape(15, 3, 5)])
    assert_close(ss.lattice_gradient(asarray(theta), psi0, **kw), fd.reshape(3, 5), 1e-7, "∇J̄")


@settings(max_examples=5)
@given(B=st.integers(1, 3), M=st.integers(1, 3), T=st.integers(1, 3), rule=st.sampled_from(["reinforce", "sign"]),
       seed=seeds)
def test_tabular_gradient_is_the_plain_estimator(backend, B, M, T, rule, seed):
    """The one-hot contraction = policy_gradient on the full (…, B, L, M·5) scores, every
    estimator, on a sampled rollout with a leading run axis."""
    rng = RNG(seed)
    out = ss.rollout(ss.TabularPolicy(rng.normal((2, M, 5))), rng.normal((2, 3, 5)), rng, B=B, T=T, naive=ss.Naive(rule, 0.7))
    assert tuple(out["reward"].shape) == (2, 3, B, M * T) and tuple(out["psi"].shape) == (2, 3, 5)
    scores = ss.full_scores(out["state"], out["score"], M)
    for name in lp.ESTIMATORS:
        want = host(lp.policy_gradient(name, scores, out["reward"], T)).reshape(2, 3, M, 5)
        assert_close(ss.tabular_gradient(name, out["state"], out["score"], out["reward"], T), want, EXACT, name)


@settings(max_examples=4)
@given(B=st.integers(1, 3), T=st.integers(1, 3), seed=seeds)
def test_naive_updates_are_the_explicit_sums(backend, B, T, seed):
    """One episode (M = 1): ψ' − ψ against host loops over the rollout's own samples. The
    co-player's state, action and reward are recovered from the meta agent's (own-first) view."""
    rng = RNG(seed)
    theta, psi = rng.normal((1, 5)), rng.normal((2, 5))
    for rule, memoryless in (("reinforce", False), ("sign", True)):
        out = ss.rollout(ss.TabularPolicy(theta), psi, rng, B=B, T=T, naive=ss.Naive(rule, 0.7, memoryless))
        s, r2, ps = host(out["state"]), host(out["naive_reward"]), host(psi)
        want = np.zeros_like(ps)
        for n in range(2):
            for b in range(B):
                for t in range(T):
                    c = (r2[n, b, t] in (ipd.PAYOFFS[2], ipd.PAYOFFS[3])) * 1  # D earns T or P
                    own = 0 if (memoryless or t == 0) else 1 + ipd.SWAP[int(s[n, b, t]) - 1]   # its own view
                    q = 1 / (1 + np.exp(-ps[n, own]))
                    if rule == "sign":
                        w = (1 if c == 0 else -1) * r2[n, b, t]
                    else:
                        togo = r2[n, :, t:].sum(axis=-1)
                        w = (togo[b] - togo.mean()) * ((c == 0) - q)
                    want[n, own] += 0.7 * w / B
        assert_close(out["psi"], ps + want, EXACT, rule)


def test_sampled_training_runs_on_the_backend(backend):
    """Two steps of the batched training and its metrics: shapes, and θ moved from zero."""
    run = ss.SampledRun(n_coplayers=2, B=2, M=2, T=2, steps=2, seeds=2)
    theta, history = ss.train_sampled(run, quick_mode=False)
    assert tuple(theta.shape) == (3, 2, 2, 5) and history.shape == (2, 3, 2)
    assert np.all(np.isfinite(host(theta))) and np.any(host(theta) != 0)
    m = ss.sampled_metrics(run, theta)
    assert set(m) == {*lp.ESTIMATORS, "coala_minus_mfos", "coala_minus_batch_unaware", "margin_se"}


def test_bad_inputs_name_the_function(f64):
    with pytest.raises(ValueError, match="Naive.*'a2c'"):
        ss.Naive("a2c")
    with pytest.raises(ValueError, match=r"lattice_objective.*\(4,\)"):
        ss.lattice_objective(asarray(np.zeros(4)), 0.0, B=2, T=1, eta=1.0)


def test_sampled_metrics_by_hand(monkeypatch):
    """sampled_metrics from per-(estimator, seed, co-player) rewards r (E = 3 estimators in
    ESTIMATORS order: COALA, M-FOS, batch-unaware; 2 seeds; 4 co-players), with the evaluation
    replaced by a stand-in: means, COALA's smallest margin over the seeds against each other
    estimator, and the largest paired standard error, by hand."""
    r = np.array([[[3.0, 1.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]],          # COALA: seed means 2, 1
                  [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]],          # M-FOS: 1, 0
                  [[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]])         # batch-unaware: 2, 2
    monkeypatch.setattr(ss, "evaluate_sampled", lambda run, theta, seed_offset=0: r)
    m = ss.sampled_metrics(ss.SampledRun(), None)
    assert list(lp.ESTIMATORS) == ["coala", "mfos", "batch_unaware"]
    assert m["coala"] == 1.5 and m["mfos"] == 0.5 and m["batch_unaware"] == 2.0
    assert m["coala_minus_mfos"] == 1.0                      # margins 1, 1
    assert m["coala_minus_batch_unaware"] == -1.0            # margins 0, −1
    # paired differences of seed 0 against either estimator: [2, 0, 1, 1] / [1, −1, 0, 0]: sample std √(2/3)
    assert m["margin_se"] == pytest.approx(np.sqrt(2 / 3) / 2, rel=1e-12)


def test_unbiasedness_small_run_separates_the_estimators():
    """`unbiasedness` at 2 000 samples (4 chunks, seconds) against the exact ∇J̄ computed here
    from the documented draws (θ, ψ₀ ~ N(0, 1) from the seed). COALA-PG: max |z| over the 25
    coordinates ≤ 4 (per coordinate P(|z| > 4) ≈ 6e-5, so ≈ 2e-3 for the max; the draws are
    fixed by the seed) and its max |bias| ≤ ½ max |∇J̄| (observed 0.13 of 0.55: ≈ 2 s.e.); the
    sampled objective's |z| ≤ 4 likewise; M-FOS, biased for a batch of B = 8, lies far out
    (observed |z| ≈ 58, bias 2.8)."""
    m = ss.unbiasedness(0, samples=2000, chunk=500, quick_mode=False)
    host_rng = np.random.default_rng(0)
    theta, psi0 = host_rng.normal(size=(5, 5)), float(host_rng.normal())
    with use_dtype("float64"):
        exact = to_numpy(ss.lattice_gradient(asarray(theta), psi0, B=8, T=3, eta=0.5))
    assert m["coala_max_z"] <= 4.0 and m["objective_z"] <= 4.0, m
    assert m["coala_bias"] <= 0.5 * np.max(np.abs(exact)), (m, np.max(np.abs(exact)))
    assert m["mfos_max_z"] > 10.0 and m["mfos_bias"] > np.max(np.abs(exact)), m
