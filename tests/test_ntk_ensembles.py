"""Deep ensembles in the NTK regime (arXiv:2210.09818): exact properties, float64, every backend.

References are independent of the code under test: plain GD iterations on the linearised
model, numpy linear algebra on host copies, known special values of the arc-cosine kernels,
and brute-force pair counting for the AUROC. The statistical claims (width scaling, trained
ensembles, OOD) are run by tests/test_claims.py.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from tasks import ntk_ensembles as nt
from tinynim.backend import asarray
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

SEEDS = st.integers(0, 2**16)


def problem(seed, N, T=4, width=32):
    """A random regression problem: network inputs X (N, 3), targets Y, test inputs x (T, 3)."""
    g = np.random.default_rng([seed, 9])
    X, x = (nt.features(asarray(g.standard_normal((k, 2)))) for k in (N, T))
    model = nt.network(width)
    return model, model.init(RNG(seed)), X, asarray(g.standard_normal(N)), x


@given(seed=SEEDS, N=st.integers(1, 5), steps=st.integers(1, 200))
def test_gd_on_the_linear_model_is_the_finite_t_formula(backend, seed, N, steps):
    """t plain GD steps on ½‖f_lin(X) − Y‖² from θ₀ give f₀(x) − Θ̂(x,X)S_t r₀ at test inputs
    and at the training inputs, and θ_t − θ₀ = −Jᵀ S_t r₀ (rel. 1e-12); the init + kernel
    terms of the same t add up to that prediction."""
    model, params, X, Y, x = problem(seed, N)
    (f0X, J), (f0x, Jx) = nt.linearize(model, params, X), nt.linearize(model, params, x)
    tXX, txX = J @ J.T, Jx @ J.T
    eta = 1.0 / float(np.linalg.eigvalsh(host(tXX))[-1])
    delta = nt.gd_linear(J, f0X - Y, eta, steps)
    S = nt.gd_filter(tXX, eta, steps)
    assert_close(delta, -(J.T @ (S @ (f0X - Y))), 1e-12, "θ_t − θ₀")
    predicted = nt.gd_predict(f0x, txX, tXX, f0X, Y, eta, steps)
    assert_close(f0x + Jx @ delta, predicted, 1e-12, "f_t(x)")
    assert_close(f0X + J @ delta, nt.gd_predict(f0X, tXX, tXX, f0X, Y, eta, steps), 1e-12, "f_t(X)")
    init, kernel = nt.decompose(f0x, txX, tXX, f0X, Y, eta, steps)
    assert_close(init + kernel, predicted, 1e-12, "init + kernel")


@given(seed=SEEDS, N=st.integers(1, 4))
def test_gd_converges_to_the_min_norm_interpolant(f64, seed, N):
    """Long GD on f_lin (η = 1/λ_max, 40κ steps: the slowest mode decays by e^-40) reaches
    the t = ∞ closed form f₀ + Θ̂(x,X)Θ̂⁻¹(Y − f₀(X)) (1e-10) and θ_∞ − θ₀ is the minimum-norm
    solution of J δ = Y − f₀(X), Jᵀ(JJᵀ)⁻¹(Y − f₀) by numpy's lstsq (1e-10)."""
    model, params, X, Y, x = problem(seed, N, width=64)
    (f0X, J), (f0x, Jx) = nt.linearize(model, params, X), nt.linearize(model, params, x)
    lam = np.linalg.eigvalsh(host(J @ J.T))
    assume(lam[0] > 1e-3 * lam[-1])                       # κ ≤ 1000: at most 4·10⁴ steps
    delta = nt.gd_linear(J, f0X - Y, 1.0 / lam[-1], int(40 * lam[-1] / lam[0]))
    assert_close(f0x + Jx @ delta, nt.gd_predict(f0x, Jx @ J.T, J @ J.T, f0X, Y), 1e-10, "f_∞")
    min_norm = np.linalg.lstsq(host(J), host(Y - f0X), rcond=None)[0]
    assert_close(delta, min_norm, 1e-10, "θ_∞ − θ₀")


def test_spectral_filter_limits(backend):
    """(1 − (1 − ηλ)^t)/λ: ηt at λ = 0 (and for |λ| below rounding), the plain formula
    elsewhere (host numpy in float64 at moderate λ), 1/λ once (1 − ηλ)^t underflows."""
    xp = backend.xp
    lam = xp.asarray([0.0, 1e-300, 1e-9, 0.2, 1.0, 1.7], dtype=xp.float64)
    got = host(nt.spectral_filter(lam, 1.0, 500))
    assert got[0] == 500.0 and abs(got[1] - 500.0) < 1e-9
    assert abs(got[2] - 500.0 * (1 - 499 * 1e-9 / 2)) < 1e-9                          # Taylor to second order
    assert_close(got[3:], np.array([(1 - (1 - v) ** 500) / v for v in (0.2, 1.0, 1.7)]), 1e-14, "filter")


def test_gd_filter_handles_a_singular_kernel(f64):
    """A duplicated training input makes Θ̂ singular (t = ∞ has no solve); the finite-t
    formula still equals plain GD."""
    model, params, X, Y, x = problem(3, 3)
    X = asarray(np.concatenate([host(X), host(X)[:1]]))
    Y = asarray(np.concatenate([host(Y), [0.3]]))
    f0X, J = nt.linearize(model, params, X)
    assert np.linalg.eigvalsh(host(J @ J.T))[0] < 1e-12
    eta = 1.0 / float(np.linalg.eigvalsh(host(J @ J.T))[-1])
    delta = nt.gd_linear(J, f0X - Y, eta, 300)
    assert_close(delta, -(J.T @ (nt.gd_filter(J @ J.T, eta, 300) @ (f0X - Y))), 1e-11, "singular Θ̂")


@given(seed=SEEDS, pairs=st.integers(1, 4), width=st.sampled_from([8, 32]), steps=st.sampled_from([50, 1000]))
def test_antithetic_ensembles_decompose_exactly(backend, seed, pairs, width, steps):
    """Pairs (W, v), (W, −v): the init term flips sign and the kernel term is unchanged, bit
    for bit; so the sample mean of the init term and its sample covariance with the kernel
    term are exactly 0 and Var f = Var init + Var kernel (1e-12)."""
    model, _, X, Y, x = problem(seed, 3, T=5, width=width)
    members = nt.ensemble(model, 2 * pairs, seed)
    eta = 0.5 / max(float(np.linalg.eigvalsh(host(nt.empirical_ntk(model, p, X)))[-1]) for p in members)
    I, K = (host(a) for a in nt.ensemble_terms(model, members, X, Y, x, eta=eta, steps=steps))
    assert np.array_equal(I[0::2], -I[1::2]) and np.array_equal(K[0::2], K[1::2])
    st_ = {k: host(v) for k, v in nt.ensemble_stats(asarray(I), asarray(K), paired=True).items()}
    assert np.all(st_["mean_init"] == 0) and np.all(st_["cov"] == 0)
    assert_close(st_["var_total"], st_["var_init"] + st_["var_kernel"], 1e-12, "variance additivity")
    assert_close(st_["var_init"], np.mean(I * I, axis=0), 1e-12, "Var init (mean 0)")


@given(seed=SEEDS, N=st.integers(1, 5), M=st.integers(1, 4))
def test_readout_only_init_term_is_the_gp_posterior(backend, seed, N, M):
    """Readout-only training with the hidden weights fixed: the init term at x is aᵀv with
    a = φ(x) − ΦᵀK̂⁻¹k̂(x), so Var_v init = aᵀa = K̂(x,x) − k̂ᵀK̂⁻¹k̂ (host numpy, 1e-10); with
    the hidden weights shared across members, the kernel term is the same for all (exactly)."""
    model, params, X, Y, x = problem(seed, N, width=32)
    Phi, phi = host(nt.readout_features(model, params, X)), host(nt.readout_features(model, params, x))
    assume(np.linalg.eigvalsh(Phi @ Phi.T)[0] > 1e-8)
    a = phi - np.linalg.solve(Phi @ Phi.T, Phi @ phi.T).T @ Phi                     # (T, n)
    post = np.sum(phi * phi, 1) - np.sum((Phi @ phi.T) * np.linalg.solve(Phi @ Phi.T, Phi @ phi.T), 0)
    assert_close(np.sum(a * a, 1), post, 1e-10, "aᵀa")
    init, _ = nt.member_terms(model, params, X, Y, x, readout_only=True)
    assert_close(init, a @ host(params["2"]["W"])[:, 0], 1e-10, "init = aᵀv")
    assert_close(nt.readout_kernel(model, params, X), Phi @ Phi.T, 1e-12, "K̂")
    I, K = nt.ensemble_terms(model, nt.ensemble(model, M, seed, "shared_hidden"), X, Y, x, readout_only=True)
    assert np.all(host(K) == host(K)[:1])


@given(seed=SEEDS, N=st.integers(1, 4))
def test_centring_removes_the_init_term(backend, seed, N):
    """g = f − f(·; θ₀) at θ₀: g₀ ≡ 0, the same Jacobian and NTK as f; the init term is exactly
    0 and the prediction is f's kernel term (1e-12)."""
    model, params, X, Y, x = problem(seed, N, width=32)
    g = nt.Centred(model, params)
    assert np.all(host(g(params, x)) == 0)
    eta = 0.5 / float(np.linalg.eigvalsh(host(nt.empirical_ntk(model, params, X)))[-1])
    init, kernel = nt.member_terms(g, params, X, Y, x, eta=eta, steps=100)
    assert np.all(host(init) == 0)
    assert_close(kernel, nt.member_terms(model, params, X, Y, x, eta=eta, steps=100)[1], 1e-12, "kernel term")


def test_centred_gradients_away_from_theta0(f64):
    """Centred at parameters θ ≠ θ₀ (where the caches at θ and θ₀ differ; at θ = θ₀ a mix-up
    of the two is invisible): its backward (grads of f at θ, dx = dx_f(θ) − dx_f(θ₀)) vs
    central differences and torch autograd of its forward, tests/helpers.py tolerances."""
    model, params0, X, _, _ = problem(3, 4, width=8)
    assert_gradients(nt.Centred(model, params0), model.init(RNG(4)), X)


def test_closed_form_kernels_special_values(backend):
    """From E relu(z)² = ½, E relu(z) relu(z') = 1/(2π) for independent z, z' and
    relu(z) relu(−z) = 0: θ = 0: K = ‖x‖²/(2d), Θ = ‖x‖²/d; θ = π/2: K = ‖x‖‖x'‖/(2πd) and
    Θ = K (x·x' = 0); θ = π: K = Θ = 0. Plus one generic angle against the formula."""
    X1 = asarray(np.array([[1.0, 2.0, 2.0]]))                                          # ‖x‖ = 3
    X2 = asarray(np.array([[2.0, 1.0, 2.0], [-2.0, 2.0, -1.0], [-1.0, -2.0, -2.0]]))  # θ = acos(8/9), π/2, π
    K, T = host(nt.relu_nngp(X1, X2))[0], host(nt.relu_ntk(X1, X2))[0]
    assert_close(host(nt.relu_nngp(X1, X1)), np.array([[9 / 6]]), 1e-15, "K(x, x)")
    assert_close(host(nt.relu_ntk(X1, X1)), np.array([[9 / 3]]), 1e-15, "Θ(x, x)")
    assert_close(K[1:], np.array([9 / (6 * math.pi), 0.0]), 1e-15, "K at π/2, π")
    assert_close(T[1:], np.array([9 / (6 * math.pi), 0.0]), 1e-15, "Θ at π/2, π")
    th = math.acos(8 / 9)
    k = 9 * (math.sin(th) + (math.pi - th) * 8 / 9) / (6 * math.pi)
    assert_close(K[:1], np.array([k]), 1e-14, "K at acos(8/9)")
    assert_close(T[:1], np.array([k + 8 / 3 * (math.pi - th) / (2 * math.pi)]), 1e-14, "Θ at acos(8/9)")


@given(seed=SEEDS)
def test_closed_form_kernels_are_psd_and_monte_carlo_close(f64, seed):
    """Θ and K are symmetric PSD; a width-20000 network's Θ̂ and K̂ are within 5 % (rel.
    norm error; s.e. ≈ 1/√n ≈ 0.7 %, the bound is ~7 s.e.) of them."""
    X = nt.features(asarray(np.random.default_rng(seed).standard_normal((6, 2))))
    for kernel in (nt.relu_ntk, nt.relu_nngp):
        M = host(kernel(X, X))
        assert_close(M, M.T, 1e-15, "symmetry")
        assert np.linalg.eigvalsh(M)[0] > -1e-12
    model = nt.network(20_000)
    params = model.init(RNG(seed))
    assert_close(nt.empirical_ntk(model, params, X), host(nt.relu_ntk(X, X)), 0.05, "Θ̂ vs Θ")
    assert_close(nt.readout_kernel(model, params, X), host(nt.relu_nngp(X, X)), 0.05, "K̂ vs K")


@given(a=st.lists(st.integers(0, 5), min_size=1, max_size=20), b=st.lists(st.integers(0, 5), min_size=1, max_size=20))
def test_auroc_is_pair_counting(a, b):
    """AUROC = P(out > in) + ½ P(out = in) over all pairs, ties included (brute force), and
    scipy's Mann–Whitney U / (n_in n_out)."""
    a, b = np.array(a, float), np.array(b, float)
    brute = (np.sum(b[:, None] > a[None, :]) + 0.5 * np.sum(b[:, None] == a[None, :])) / (a.size * b.size)
    assert abs(nt.auroc(a, b) - brute) < 1e-12
    scipy_stats = pytest.importorskip("scipy.stats")
    assert abs(nt.auroc(a, b) - scipy_stats.mannwhitneyu(b, a).statistic / (a.size * b.size)) < 1e-12


def test_auroc_edges_and_errors():
    assert nt.auroc([0.0, 1.0], [2.0, 3.0]) == 1.0 and nt.auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert nt.auroc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="auroc: expected non-empty score sets, got sizes 0 and 1"):
        nt.auroc([], [1.0])


def test_ensemble_kinds_and_errors(f64):
    """iid members differ; antithetic pairs share the hidden weights and negate the readout;
    shared-hidden members share the hidden weights and draw new readouts."""
    model = nt.network(4)
    iid, anti, shared = (nt.ensemble(model, 4, 0, k) for k in ("iid", "antithetic", "shared_hidden"))
    W = lambda p: host(p["0"]["W"])                                                  # noqa: E731
    v = lambda p: host(p["2"]["W"])                                                  # noqa: E731
    assert not np.array_equal(W(iid[0]), W(iid[1]))
    assert np.array_equal(W(anti[0]), W(anti[1])) and np.array_equal(v(anti[0]), -v(anti[1]))
    assert not np.array_equal(W(anti[0]), W(anti[2]))
    assert all(np.array_equal(W(p), W(shared[0])) for p in shared)
    assert not np.array_equal(v(shared[0]), v(shared[1]))
    with pytest.raises(ValueError, match="ensemble: antithetic ensembles need an even size, got M=3"):
        nt.ensemble(model, 3)
    with pytest.raises(ValueError, match="ensemble: kind must be"):
        nt.ensemble(model, 2, kind="bagging")


def test_toy_data_layout():
    """Training targets ±1 per cluster; far points are the in-distribution ones scaled by FAR,
    rotated ones have the same norm (2-D part) and are perpendicular to them."""
    d = nt.toy_data(0, n_test=7)
    assert host(d["X"]).shape == (2 * nt.PER_CLUSTER, 3) and np.all(host(d["X"])[:, 2] == 1)
    assert np.array_equal(host(d["Y"]), np.repeat([1.0, -1.0], nt.PER_CLUSTER))
    ind, far, rot = (host(d[k])[:, :2] for k in ("id", "far", "rotated"))
    assert_close(far, nt.FAR * ind, 1e-15, "far")
    assert_close(np.linalg.norm(rot, axis=1), np.linalg.norm(ind, axis=1), 1e-15, "rotated norm")
    assert np.max(np.abs(np.sum(rot * ind, axis=1))) < 1e-12


@pytest.mark.parametrize("degrees", [90.0, 30.0, -135.0])
def test_rotate_is_counter_clockwise(degrees):
    """Rotation by a positive angle is counter-clockwise: (x, y) as x + iy times e^{iα}."""
    pts = np.random.default_rng(0).standard_normal((5, 2))
    z = (pts[:, 0] + 1j * pts[:, 1]) * np.exp(1j * math.radians(degrees))
    assert_close(nt.rotate(pts, degrees), np.stack([z.real, z.imag], axis=1), 1e-14, "rotate")


def test_centred_variance_is_the_kernel_variance(f64):
    """Centring removes the init term and keeps the NTK, so the centred ensemble's variance is
    the kernel-noise variance of the antithetic ensemble at every input (float64, 1e-10)."""
    d = nt.toy_data(0, n_test=5)
    v = nt.variance_sources(d, nt.evaluation_inputs(d), 32, 4, 0)
    assert np.all(v["kernel"] > 0) and np.all(v["init"] > 0)
    assert_close(v["centred"], v["kernel"], 1e-10, "centred vs kernel variance")


def test_ood_auroc_compares_each_test_set_with_the_in_distribution_one(monkeypatch):
    """On given variances (100 in-distribution points, then 100 far, then 100 rotated): AUROC
    by counting pairs, per source and OOD set."""
    v_id, v_far, v_rot = np.arange(100.0), np.arange(100.0) + 95.0, np.arange(100.0)[::-1] - 10.0
    given_v = {"init": np.concatenate([v_id, v_far, v_rot]), "kernel": np.concatenate([v_id, v_rot, v_far])}
    monkeypatch.setattr(nt, "variance_sources", lambda *a, **k: given_v)
    pairs = lambda a, b: (np.sum(b[None, :] > a[:, None]) + 0.5 * np.sum(b[None, :] == a[:, None])) / (a.size * b.size)
    m = nt.ood_auroc(quick_mode=True)
    assert m["auroc/init/far"] == pytest.approx(pairs(v_id, v_far)) and m["auroc/kernel/far"] == pytest.approx(pairs(v_id, v_rot))
    assert m["auroc/init/rotated"] == pytest.approx(pairs(v_id, v_rot))
    assert m["init_minus_kernel_far"] == pytest.approx(pairs(v_id, v_far) - pairs(v_id, v_rot))


def test_ood_auroc_scores_each_test_set(monkeypatch):
    """ood_auroc compares the in-distribution block of each variance with the far and the
    rotated block, by the brute-force pair count P(out > in) + ½ P(out = in): checked with
    stand-in variances whose blocks are known (the last ID point is the largest score, so a
    block boundary off by one changes the result)."""
    n = 2 * 50                                                # toy_data's test points: 2 clusters × 50
    g = np.random.default_rng(4)
    ident, far, rot = g.normal(0, 1, n), g.normal(1, 1, n), g.normal(0.5, 1, n)
    ident[-1] = 10.0
    v = np.concatenate([ident, far, rot])
    monkeypatch.setattr(nt, "variance_sources", lambda *a, **k: {"init": v, "kernel": -v})

    def pairs(s_in, s_out):
        return float(np.mean((s_out[:, None] > s_in[None]) + 0.5 * (s_out[:, None] == s_in[None])))

    m = nt.ood_auroc(quick_mode=True)
    for name, s in (("init", v), ("kernel", -v)):
        assert m[f"auroc/{name}/far"] == pytest.approx(pairs(s[:n], s[n:2 * n]), abs=1e-12)
        assert m[f"auroc/{name}/rotated"] == pytest.approx(pairs(s[:n], s[2 * n:]), abs=1e-12)
    assert m["init_minus_kernel_far"] == pytest.approx(m["auroc/init/far"] - m["auroc/kernel/far"], abs=1e-15)


def test_width_scaling_reports_every_width():
    """A 4-member run of :func:`tasks.ntk_ensembles.width_scaling` (the trained claims use 512,
    in tests/test_claims.py): the member count, a finite positive Var[kernel]·n and
    Var[init] error per width, and the spread ratio max/min of the Var[kernel]·n values."""
    m = nt.width_scaling(0, M=4, quick_mode=False)
    assert m["members"] == 4
    values = [m[f"kernel_var_x_width/{n}"] for n in nt.WIDTHS]
    assert all(np.isfinite(v) and v > 0 for v in values)
    assert all(np.isfinite(m[f"init_var_error/{n}"]) for n in nt.WIDTHS)
    assert math.isclose(m["kernel_var_x_width_ratio"], max(values) / min(values), rel_tol=1e-12)
