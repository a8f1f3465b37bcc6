"""Evolution strategies on quadratics L(θ) = ½ θᵀAθ − bᵀθ, where ∇L = Aθ − b is known.

For a quadratic the antithetic difference is exact: L(θ+σε) − L(θ−σε) = 2σ εᵀg with
g = ∇L(θ), so one pair gives ε εᵀg, whose j-th coordinate has mean g_j and variance
E[ε_j²(εᵀg)²] − g_j² = ‖g‖² + g_j². The mean of M estimates of n pairs each therefore has
standard error SE_j = √((‖g‖² + g_j²)/(nM)) per coordinate: that is the yardstick below.
"""
import math

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from tinynim.es import centered_ranks, es_gradient, es_gradient_population, es_loss_and_grads
from tinynim.optim import Adam
from tinynim.random import RNG
from tinynim.train import fit
from helpers import host


def _quadratic(backend, D, seed=0):
    """(loss_fn on {"x": θ}, θ0 tree, true gradient at θ0, minimiser, minimum) with A SPD,
    eigenvalues in [1, ~5]."""
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((D, D))
    A, b, x0 = Q @ Q.T / D + np.eye(D), rng.standard_normal(D), rng.standard_normal(D)
    A_, b_ = backend.asarray(A), backend.asarray(b)

    def loss(p):
        x = p["x"]
        return 0.5 * (x @ (A_ @ x)) - b_ @ x
    x_star = np.linalg.solve(A, b)
    return loss, {"x": backend.asarray(x0)}, A @ x0 - b, x_star, -0.5 * b @ x_star


def test_plain_estimator_is_unbiased_with_the_predicted_variance(f64):
    """Mean of M = 2000 estimates (n = 8 pairs): |mean − g_j| ≤ 4·SE_j for every coordinate
    (a 4-sigma bound: two-sided normal tail 6e-5 per coordinate). The empirical variance of
    the estimates matches (‖g‖² + g_j²)/n within ±20%: the relative standard error of a
    sample variance of M = 2000 draws with kurtosis ≲ 4 is √(3/2000) ≈ 4%, so 20% is 5 SE."""
    D, n, M = 5, 8, 2000
    loss, theta, g, _, _ = _quadratic(f64, D)
    ests = np.stack([host(es_gradient(loss, theta, RNG(i), sigma=0.5, n_pairs=n, rank_shaping=False)[0]["x"])
                     for i in range(M)])
    var = (g @ g + g ** 2) / n
    se = np.sqrt(var / M)
    z = (ests.mean(axis=0) - g) / se
    assert np.all(np.abs(z) <= 4), f"bias in SE units: {z}"
    ratio = ests.var(axis=0) / var
    assert np.all((0.8 <= ratio) & (ratio <= 1.25)), f"variance / predicted: {ratio}"


def test_rank_shaped_estimate_points_along_the_gradient(f64):
    """Rank shaping estimates a direction. For σ small the loss is locally linear, the
    antithetic ranks are an odd increasing function of z = εᵀĝ (≈ 2Φ(z) − 1), and by Gaussian
    symmetry the estimate's mean is along g. Its cosine with g is then about
    1/√(1 + (D−1)π/(3n)) (E[(2Φ(z)−1)z] = 1/√π, E[(2Φ(z)−1)²] = 1/3): 0.917 for D = 10,
    n = 50. A single cosine has standard deviation ≈ 0.045 (measured over 2000 seeds), so
    the mean of 20 lies within 0.01 of 0.917; we require ≥ 0.85 (6 SE of slack)."""
    D, n = 10, 50
    loss, theta, g, _, _ = _quadratic(f64, D)
    cosines = []
    for i in range(20):
        est = host(es_gradient(loss, theta, RNG(i), sigma=1e-3, n_pairs=n)[0]["x"])
        cosines.append(est @ g / (np.linalg.norm(est) * np.linalg.norm(g)))
    assert np.mean(cosines) >= 0.85, cosines


@given(seed=st.integers(0, 2**16), shaping=st.booleans())
@example(seed=6143, shaping=False)           # on torch a loss of 1.7e-5 is 1 ulp off: rtol 7e-12
def test_same_seed_same_estimate_on_every_backend(backend, seed, shaping):
    """Noise is drawn on the host: the estimate and the losses match numpy's to rounding.
    Both are compared with rtol 1e-12 and atol 1e-12: a loss ½xᵀAx − bᵀx (D = 4, terms of
    order 1-10) computed with another summation order differs by a few ulps of its terms,
    ~1e-15 absolute (worst seen over 3000 seeds × torch/array-api-strict: 2.2e-16 on the
    losses, 1.4e-14 on the estimate), which is a large *relative* error when the loss is
    near 0 (seed 6143 on torch: 6.6e-12 at a loss of 1.7e-5, so rtol alone cried wolf;
    pinned as an example). A wrong ε, σ or sign would change the losses by O(σ) = 0.1,
    eleven orders above the atol."""
    from tinynim.backend import use_backend
    loss, theta, _, _, _ = _quadratic(backend, 4, seed % 7)
    ours, info = es_gradient(loss, theta, RNG(seed), sigma=0.1, n_pairs=3, rank_shaping=shaping)
    with use_backend("numpy", dtype="float64") as ref_backend:
        ref_loss, ref_theta, _, _, _ = _quadratic(ref_backend, 4, seed % 7)
        ref, ref_info = es_gradient(ref_loss, ref_theta, RNG(seed), sigma=0.1, n_pairs=3, rank_shaping=shaping)
    np.testing.assert_allclose(host(ours["x"]), ref["x"], rtol=1e-12, atol=1e-12)
    assert info["losses"].shape == (2, 3) and info["loss"] == pytest.approx(info["losses"].mean())
    np.testing.assert_allclose(info["losses"], ref_info["losses"], rtol=1e-12, atol=1e-12)


@given(D=st.integers(1, 5), n=st.integers(1, 6), shaping=st.booleans(), seed=st.integers(0, 2**16))
def test_population_estimate_equals_the_loop(backend, D, n, shaping, seed):
    """es_gradient_population (all 2n members in one call, leaves with a leading population
    axis) = es_gradient (a loop over members) for the same rng: same ε, same losses up to
    the order of a matmul's sums (1e-12), same estimate. The population loss is written
    for a batch of parameter sets; a wrong member order or sign would change losses by O(σ)."""
    loss, theta, _, _, _ = _quadratic(backend, D, seed % 7)
    xp = backend.xp

    def population_loss(p):                              # p["x"]: (2n, D)
        return xp.stack([loss({"x": p["x"][k, :]}) for k in range(p["x"].shape[0])])
    ours, info = es_gradient_population(population_loss, theta, RNG(seed), sigma=0.1, n_pairs=n, rank_shaping=shaping)
    ref, ref_info = es_gradient(loss, theta, RNG(seed), sigma=0.1, n_pairs=n, rank_shaping=shaping)
    np.testing.assert_allclose(info["losses"], ref_info["losses"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(ours["x"]), host(ref["x"]), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=rf"es_gradient_population: population_loss_fn must return \({2 * n},\) "
                                         rf"losses, got shape \(1,\)"):
        es_gradient_population(lambda p: xp.ones(1), theta, RNG(seed), sigma=0.1, n_pairs=n)


def test_rank_shaping_is_invariant_to_increasing_transforms(f64):
    loss, theta, _, _, _ = _quadratic(f64, 6)
    a, _ = es_gradient(loss, theta, RNG(5), sigma=0.3, n_pairs=10)
    b, _ = es_gradient(lambda p: math.exp(float(loss(p)) / 3) - 100, theta, RNG(5), sigma=0.3, n_pairs=10)
    np.testing.assert_array_equal(a["x"], b["x"])


def test_centered_ranks():
    np.testing.assert_allclose(centered_ranks(np.array([3.0, -1.0, 10.0, 0.5])), [1 / 6, -0.5, 0.5, -1 / 6])
    np.testing.assert_allclose(centered_ranks(np.array([2.0, 1.0, 2.0, 0.0])), [1 / 3, -1 / 6, 1 / 3, -0.5])
    with pytest.raises(ValueError, match=r"centered_ranks: need at least 2 losses, got shape \(1,\)"):
        centered_ranks(np.array([1.0]))


@given(n=st.integers(2, 40), levels=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_centered_ranks_average_ties(backend, n, levels, seed):
    """Losses drawn from a few values (many ties): the ranks are scipy's average ranks,
    rescaled; they sum to 0 and relabelling the members relabels the ranks (no dependence
    on position). Exact: half-integers over n − 1 (tolerance 1e-12 for the division)."""
    from scipy.stats import rankdata
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, (2, n)).astype(np.float64)
    got = host(centered_ranks(backend.asarray(x)))
    np.testing.assert_allclose(got, (rankdata(x.ravel(), method="average").reshape(2, n) - 1) / (2 * n - 1) - 0.5,
                               rtol=0, atol=1e-12)
    assert abs(got.sum()) <= 1e-12
    perm = rng.permutation(2 * n)
    np.testing.assert_allclose(host(centered_ranks(backend.asarray(x.ravel()[perm]))), got.ravel()[perm], rtol=0, atol=1e-12)


def test_all_tied_population_gets_no_gradient(f64):
    """A constant loss: every member ties, every centred rank is 0, the rank-shaped estimate is
    exactly 0 (it was a spurious direction when ties were broken by position)."""
    theta = {"x": f64.asarray(np.arange(5.0))}
    grads, _ = es_gradient(lambda p: 1.0, theta, RNG(0), sigma=0.1, n_pairs=6)
    np.testing.assert_array_equal(host(grads["x"]), np.zeros(5))


def test_centered_ranks_trace_under_jit():
    """Traceable: the same ranks from jax.jit (no value-dependent Python branch)."""
    jax = pytest.importorskip("jax")
    x = np.array([0.5, 2.0, 0.5, -1.0, 2.0, 2.0])
    got = np.asarray(jax.jit(centered_ranks)(jax.numpy.asarray(x)))
    np.testing.assert_allclose(got, centered_ranks(x), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_es_with_adam_minimises_a_quadratic(f64):
    """fit + ES (rank shaped, 8 pairs) + Adam(0.05), 300 steps, D = 5: the optimality gap
    must shrink 100-fold (1.7 -> ≤ 0.017). Near θ* the rank-shaped gradients change sign from
    step to step, Adam's first moment averages them out and the iterate settles well inside
    the lr scale: the observed gap is 6e-5 to 5e-4 (seeds 0-3), ≥ 30× below the bound."""
    loss, theta, _, x_star, l_star = _quadratic(f64, 5)
    f = es_loss_and_grads(lambda p, batch: loss(p), sigma=0.1, n_pairs=8, seed=1)
    params, history = fit(f, theta, Adam(0.05), steps=300, log=None)
    gap0, gap = float(loss(theta)) - l_star, float(loss(params)) - l_star
    assert gap <= 1e-2 * gap0, (gap0, gap)
    assert len(history["loss"]) == 300


def test_errors(f64):
    loss, theta, _, _, _ = _quadratic(f64, 3)
    with pytest.raises(ValueError, match="es_gradient: need sigma > 0 and n_pairs >= 1, got sigma=0, n_pairs=4"):
        es_gradient(loss, theta, 0, sigma=0, n_pairs=4)
    calls = iter([1.0, float("nan")] + [1.0] * 10)
    with pytest.raises(FloatingPointError, match="es_gradient: loss is nan at perturbation -ε_0"):
        es_gradient(lambda p: next(calls), theta, 0, sigma=0.1, n_pairs=3)
