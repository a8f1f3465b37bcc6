"""Exact properties of tasks.noisy_regression (arXiv:2402.14180; float64, relative error ≤ 1e-10).

The references are explicit per-sequence numpy formulas, another layer (the plain diagonal
path of LinearSelfAttention) or arXiv:2212.07677's GD / GD++ (tasks.icl_regression), never
the code under test.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tasks import icl_regression as icl, noisy_regression as nr
from tinynim.backend import asarray, use_backend
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

TOL = 1e-10   # the identities hold to ~1e-15 in float64 (4 layers included)


def data(seed, B=4, n=5, d=3, sigma_max=2.0):
    return nr.sample(RNG(seed), B, n, d, sigma_max=sigma_max)


def per_task(tokens, d):
    """Host (X (B, n, d), y (B, n), x_t (B, d)) of a token batch with one output."""
    T = host(tokens)
    return T[:, :-1, :d], T[:, :-1, d], T[:, -1, :d]


# -- Theorem 4.1 / Lemma 4.3 -------------------------------------------------------------------

@given(d=st.integers(1, 3), d_out=st.integers(1, 2), n=st.integers(1, 6), L=st.integers(1, 4),
       heads=st.integers(1, 2), form=st.sampled_from(["merged", "full", "diagonal", "omega"]),
       seed=st.integers(0, 2**16))
def test_lemma43_reproduces_every_token(backend, d, d_out, n, L, heads, form, seed):
    """For every layer l and every token i (the query too): x_i^l = M^l x_i + u^l y_i and
    y_i^l = a^l y_i + w^lᵀ x_i, with (M, u, a, w) from the context statistics alone; the
    prediction is −w^Lᵀ x_t. Random unshared multi-head stacks of every form."""
    rng = RNG(seed)
    if form == "omega":
        model = icl.LinearTransformer(d, d_out, L, shared=False, layer=nr.OmegaLSA(d, d_out, init_std=0.1))
    else:
        model = icl.LinearTransformer(d, d_out, L, shared=False, form=form, n_heads=heads, init_std=0.15)
    params = model.init(rng)
    tokens = rng.normal((3, n + 1, d + d_out))
    tokens = icl.with_initial_guess(tokens, asarray(np.zeros((d_out, d))))      # query y = 0
    pred, states = nr.lemma43(model, params, tokens)
    T = host(tokens)
    X, Y = T[..., :d], T[..., d:]
    for l, (H, s) in enumerate(zip(model.stream(params, tokens), states)):
        M, u, a, w = (host(s[k]) for k in ("M", "u", "a", "w"))
        want_x = np.einsum("bij,btj->bti", M, X) + np.einsum("bij,btj->bti", u, Y)
        want_y = np.einsum("bij,btj->bti", a, Y) + np.einsum("bji,btj->bti", w, X)
        assert_close(H, np.concatenate([want_x, want_y], axis=-1), TOL, f"tokens after layer {l}")
    assert_close(pred, -np.einsum("bji,bj->bi", host(states[-1]["w"]), X[:, -1]), TOL, "ŷ = −wᵀx_t")
    assert_close(pred, model(params, tokens), TOL, "prediction")


# -- the ω layer ---------------------------------------------------------------------------------

@given(d=st.integers(1, 3), d_y=st.integers(1, 2), heads=st.integers(1, 3), n=st.integers(1, 5),
       last_only=st.booleans(), seed=st.integers(0, 2**16))
def test_omega_layer_equals_diagonal_heads(backend, d, d_y, heads, n, last_only, seed):
    """OmegaLSA with ω_ab = Σ_k p_a,k q_b,k equals LinearSelfAttention(form="diagonal") with
    those heads (its plain path); and OmegaLSA.products is such a set of heads."""
    rng = RNG(seed)
    lsa = LinearSelfAttention(d + d_y, heads, form="diagonal", d_y=d_y, fast=False, init_std=0.7)
    p = lsa.init(rng)
    x = rng.normal((2, n + 1, d + d_y))
    layer = nr.OmegaLSA(d, d_y)
    kw = {"n_context": n, "last_only": last_only}
    assert_close(layer(nr.omega_of_heads(p), x, **kw), lsa(p, x, **kw), TOL, "ω layer vs heads")
    scaled = nr.OmegaLSA(d, d_y, scales={"xx": 2.0, "xy": 0.5, "yx": 3.0, "yy": 0.1}, init_std=0.5)
    theta = scaled.init(rng)
    Q, P = scaled.products(theta)
    D = d + d_y
    heads2 = {"q_x": Q[:, 0, 0], "q_y": Q[:, D - 1, D - 1], "p_x": P[:, 0, 0], "p_y": P[:, D - 1, D - 1]}
    two = LinearSelfAttention(D, 2, form="diagonal", d_y=d_y, fast=False)
    assert_close(scaled(theta, x, **kw), two(heads2, x, **kw), TOL, "products")


@given(seed=st.integers(0, 2**16), heads=st.integers(1, 3))
def test_single_head_omega_identity(backend, seed, heads):
    """One head: ω_xx ω_yy = ω_xy ω_yx (both are p_x q_x p_y q_y); several heads break it."""
    p = LinearSelfAttention(4, heads, form="diagonal", d_y=1, init_std=1.0).init(RNG(seed))
    w = {k: float(host(v)[0]) for k, v in nr.omega_of_heads(p).items()}
    gap = abs(w["xx"] * w["yy"] - w["xy"] * w["yx"])
    scale = abs(w["xx"] * w["yy"]) + abs(w["xy"] * w["yx"])
    if heads == 1:
        assert gap <= 1e-14 * max(scale, 1e-300)
    else:
        assert gap > 1e-6 * scale


@given(d=st.integers(1, 4), n=st.integers(1, 6), L=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_gdpp_stack_against_explicit_recursion(backend, d, n, L, seed):
    """GD++ (ω_xy = ω_yy = 0) with per-layer ω's = the explicit per-task numpy recursion
    X ← X + ω_xx X Σ, y ← y + ω_yx X α (every token), and each layer maps Σ to
    (I + ω_xx Σ) Σ (I + ω_xx Σ)."""
    rng = RNG(seed)
    model = nr.gdpp_model(L, d=d, n_context=n, init_std=0.5)
    params = model.init(rng)
    tokens, _, _ = data(seed, n=n, d=d)
    T = host(tokens)
    X, y = T[..., :d], T[..., d]
    stream = model.stream(params, tokens)
    for l, w in enumerate(nr.omegas(model, params)):
        S = np.einsum("bni,bnj->bij", X[:, :n], X[:, :n])
        a = np.einsum("bni,bn->bi", X[:, :n], y[:, :n])
        X, y = X + w[0] * X @ S, y + w[2] * np.einsum("bti,bi->bt", X, a)
        I = np.eye(d) + w[0] * S
        assert_close(np.einsum("bni,bnj->bij", X[:, :n], X[:, :n]), I @ S @ I, TOL, f"Σ after layer {l}")
        assert_close(stream[l + 1], np.concatenate([X, y[..., None]], axis=-1), TOL, f"tokens after layer {l}")


@given(eta=st.floats(0.01, 1.0), gamma=st.floats(0.0, 0.1), K=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_gd_and_gdpp_of_arxiv_2212_07677(backend, eta, gamma, K, seed):
    """One layer with only ω_yx = −η is one GD step from 0 on the unnormalised loss, i.e.
    P1's gd_predict with its (mean-loss) step η·n; GD++ layers with ω_xx = −γ, ω_yx = −η/n
    are P1's GD++."""
    n, d = 6, 3
    tokens, _, _ = data(seed, n=n, d=d)
    one = icl.LinearTransformer(d, 1, 1, shared=False, layer=nr.OmegaLSA(d, terms=("yx",)))
    assert_close(one([{"yx": asarray(np.array([-eta]))}], tokens), icl.gd_predict(tokens, eta * n), TOL, "GD")
    X, y, xq = per_task(tokens, d)
    assert_close(nr.gd_one_step(tokens, eta), eta * np.einsum("bn,bni,bi->b", y, X, xq)[:, None], TOL, "gd_one_step")
    pp = icl.LinearTransformer(d, 1, K, shared=False, layer=nr.OmegaLSA(d, terms=nr.GDPP))
    theta = {"xx": asarray(np.array([-gamma])), "yx": asarray(np.array([-eta / n]))}
    assert_close(pp([theta] * K, tokens), icl.gdpp_predict(tokens, eta, gamma, K), TOL, "GD++")


# -- baselines -------------------------------------------------------------------------------

@given(seed=st.integers(0, 2**16), lam=st.floats(0.0, 10.0), sigma_max=st.floats(0.1, 5.0))
def test_ridge_baselines_against_explicit_solves(backend, seed, lam, sigma_max):
    """Ridge from the eigenbasis = np.linalg.solve per task; σ̂² = the OLS residual / (n − d);
    AdaRR, TunedRR (λ = factor · min(σ̂², cap)), ConstRR and the oracle are ridge at those λ."""
    n, d = 7, 3
    tokens, targets, sigma = data(seed, B=5, n=n, d=d, sigma_max=sigma_max)
    X, y, xq = per_task(tokens, d)

    def solve(lams):
        return np.array([[xq[b] @ np.linalg.solve(X[b].T @ X[b] + lams[b] * np.eye(d), X[b].T @ y[b])]
                         for b in range(len(X))])
    resid = np.array([np.sum((y[b] - X[b] @ np.linalg.lstsq(X[b], y[b], rcond=None)[0]) ** 2) for b in range(len(X))])
    s2 = resid / (n - d)
    assert_close(nr.ridge(tokens, lam), solve([lam] * len(X)), TOL, "ridge")
    assert_close(nr.constant_ridge(tokens, lam), solve([lam] * len(X)), TOL, "ConstRR")
    assert_close(nr.ols_noise(tokens), s2, 1e-8, "σ̂²")           # λ − αᵀΣ⁻¹α: a difference, conditioning ~1e2
    assert_close(nr.adaptive_ridge(tokens), solve(s2), 1e-8, "AdaRR")
    assert_close(nr.tuned_ridge(tokens, 1.5, 0.7), solve(0.7 * np.minimum(s2, 1.5)), 1e-8, "TunedRR")
    assert_close(nr.oracle_ridge(tokens, sigma), solve(host(sigma) ** 2), TOL, "oracle")
    assert nr.adjusted_loss(nr.oracle_ridge(tokens, sigma), targets, tokens, sigma) == 0.0
    zero = 0 * targets
    assert nr.adjusted_loss(zero, targets, tokens, sigma) == pytest.approx(
        0.5 * np.mean(host(targets) ** 2) - 0.5 * np.mean((solve(host(sigma) ** 2) - host(targets)) ** 2), rel=1e-9)


def test_tuned_baselines_are_optima(f64):
    """Tuned one-step GD is the exact least-squares η; ConstRR's and TunedRR's grid optima are
    no worse than nearby points (and ConstRR's λ is near the mean noise variance)."""
    tokens, targets, sigma = nr.sample(RNG(1), 4000, 20, 10, sigma_max=5.0)
    (hp, value) = nr.tune_gd_one_step(tokens, targets)
    u, t = host(nr.gd_one_step(tokens, 1.0))[:, 0], host(targets)[:, 0]
    assert hp["eta"] == pytest.approx(u @ t / (u @ u), rel=1e-12)
    assert value == pytest.approx(0.5 * np.mean((hp["eta"] * u - t) ** 2), rel=1e-12)
    (c, cval) = nr.tune_constant_ridge(tokens, targets)
    for f in (0.8, 1.25):
        assert cval <= icl.loss(nr.constant_ridge(tokens, c["lam"] * f), targets)
    assert 2.0 < c["lam"] < 30.0                                   # E σ² = 25/3 for σ ~ U(0, 5)
    (tr, tval) = nr.tune_tuned_ridge(tokens, targets)
    assert tval <= icl.loss(nr.adaptive_ridge(tokens), targets) + 1e-12   # cap ∞, factor 1 is in the box
    assert tval <= icl.loss(nr.tuned_ridge(tokens, tr["cap"], tr["factor"] * 1.1), targets)


def test_one_step_gd_optimum_without_noise(f64):
    """σ = 0, x ~ N(0, I): the best one-step GD is η = E tr Σ / E tr Σ² = 1/(n + d + 1), with
    ½-MSE ½ (d − n d / (n + d + 1)) (Wishart moments). Monte Carlo on 50k sequences (n = 5,
    d = 3): over 8 seeds η·(n+d+1) had std 0.7 % and the loss ratio 1.4 %; tolerances 4 % and
    6 % (≥ 4 std)."""
    n, d = 5, 3
    tokens, targets, _ = nr.sample(RNG(0), 50_000, n, d, sigma_max=0.0)
    hp, value = nr.tune_gd_one_step(tokens, targets)
    assert hp["eta"] == pytest.approx(1 / (n + d + 1), rel=0.04)
    assert value == pytest.approx(0.5 * (d - n * d / (n + d + 1)), rel=0.06)


# -- data --------------------------------------------------------------------------------------

def test_sample_law(f64):
    """Shapes; σ in [0, σ_max] (or the given levels, each used); the context y is ⟨w, x⟩ plus
    σ ξ (σ_max = 0: exact, so OLS on the context predicts the noise-free target exactly); the
    query slot is 0; the noise has std σ per sequence."""
    tokens, targets, sigma = nr.sample(RNG(3), 400, 12, 4, sigma_max=3.0)
    assert tokens.shape == (400, 13, 5) and targets.shape == (400, 1) and sigma.shape == (400,)
    s = host(sigma)
    assert s.min() >= 0 and s.max() <= 3.0 and s.max() > 2.9
    assert np.all(host(tokens)[:, -1, -1] == 0)
    _, _, lv = nr.sample(RNG(3), 400, 12, 4, sigma_levels=(1.0, 3.0))
    assert set(np.unique(host(lv))) == {1.0, 3.0}
    clean, t0, _ = nr.sample(RNG(3), 50, 12, 4, sigma_max=0.0)
    X, y, xq = per_task(clean, 4)
    w = np.array([np.linalg.lstsq(X[b], y[b], rcond=None)[0] for b in range(50)])
    np.testing.assert_allclose(np.einsum("bd,bd->b", w, xq), host(t0)[:, 0], rtol=1e-9, atol=1e-9)
    x, w, sig, xi = nr.draw(RNG(5), 2000, 12, 4, sigma_max=3.0)
    noisy, _ = nr.make_tokens(x, w, sig[:, None] * xi)
    resid = host(noisy)[:, :-1, -1] - np.einsum("bnd,bd->bn", x[:, :-1], w)
    np.testing.assert_allclose(resid, sig[:, None] * xi, rtol=1e-12, atol=1e-12)
    assert 0.95 < np.std(resid / sig[:, None]) < 1.05                # 24k draws of N(0, 1): ±5 % is > 10 s.e.


def test_sample_same_on_every_backend(backend):
    a = host(nr.sample(RNG(7), 3, 4, 2)[0])
    with use_backend("numpy", dtype="float64"):
        b = host(nr.sample(RNG(7), 3, 4, 2)[0])
    np.testing.assert_array_equal(a, b)


# -- models: gradients, fast path, readout -----------------------------------------------------

model_settings = st.fixed_dictionaries(dict(
    d=st.integers(1, 3), n=st.integers(1, 4), L=st.integers(1, 3),
    kind=st.sampled_from(["diag", "gdpp", "diagonal_heads", "full"]), seed=st.integers(0, 2**16)))


def build(c, fast=True):
    if c["kind"] == "diagonal_heads":
        model = icl.LinearTransformer(c["d"], 1, c["L"], shared=False, form="diagonal", n_heads=2,
                                      init_std=0.4, fast=fast)
    elif c["kind"] == "full":
        model = nr.full_model(c["L"], d=c["d"], init_std=0.4)
        model.fast = fast
    else:
        model = nr.diag_model(c["L"], terms=nr.OMEGAS if c["kind"] == "diag" else nr.GDPP, d=c["d"],
                              n_context=c["n"], init_std=0.5)
        model.fast = fast
    rng = RNG(c["seed"])
    return model, model.init(rng), data(c["seed"], B=3, n=c["n"], d=c["d"])[0]


@given(c=model_settings, fast=st.booleans())
def test_stack_gradients(backend, c, fast):
    """DIAG / GD++ (OmegaLSA), diagonal-head and FULL (unshared merged P, Q) stacks:
    hand-derived backward vs finite differences and torch autograd."""
    model, params, tokens = build(c, fast)
    assert_gradients(model, params, tokens)


@given(c=model_settings)
def test_fast_stack_equals_plain(backend, c):
    """The last-layer-query-only stack gives the plain stack's predictions and gradients."""
    fast, params, tokens = build(c)
    plain, _, _ = build(c, fast=False)
    (pf, cf), (pp, cp) = fast.forward(params, tokens), plain.forward(params, tokens)
    assert_close(pf, pp, TOL, "predictions")
    R = RNG(1).normal(tuple(pf.shape))
    (dxf, gf), (dxp, gp) = fast.backward(params, cf, R), plain.backward(params, cp, R)
    assert_close(dxf, dxp, TOL, "dtokens")
    for gl_f, gl_p in zip(gf, gp):
        for k in gl_f:
            assert_close(gl_f[k], gl_p[k], TOL, f"grad {k}")


def test_readout_of_a_known_stack(f64):
    """readout() on GD++ with known ω's: step = −ω_yx, precond = ω_xx · mean tr Σ^l / d
    (layer 1 sees the input statistics), no rescaling (ω_yy = 0)."""
    ev = nr.Evaluation(300, n_context=6, d=3)
    model = nr.gdpp_model(2, d=3, n_context=6)
    sc = model.lsa.scales
    params = [{"xx": asarray(np.array([-0.01 / sc["xx"]])), "yx": asarray(np.array([-0.05 / sc["yx"]]))},
              {"xx": asarray(np.array([0.0])), "yx": asarray(np.array([-0.02 / sc["yx"]]))}]
    rows = nr.readout(model, params, ev)
    X = host(ev.tokens)[:, :6, :3]
    assert [r["step"] for r in rows] == pytest.approx([0.05, 0.02], rel=1e-12)
    assert rows[0]["precond"] == pytest.approx(-0.01 * np.mean(np.sum(X * X, axis=(1, 2))) / 3, rel=1e-5)
    assert all(r["rescale_low"] == 0 and r["rescale_high"] == 0 for r in rows)


def test_noise_response_of_linear_and_adaptive_predictors(f64):
    """noise_response: a predictor times c answers c in every bin; bins go from quiet to noisy."""
    ev = nr.Evaluation(300, n_context=8, d=3)
    o = nr.ridge(ev.clean_spec, 0.0)
    assert ev.noise_response(2 * o, o) == pytest.approx([2.0, 2.0, 2.0], rel=1e-12)
    noise = np.sort(host(ev.noise))
    assert noise[99] <= noise[100] and noise[199] <= noise[200]


def test_errors(f64):
    with pytest.raises(ValueError, match=r"OmegaLSA: terms must be distinct names from"):
        nr.OmegaLSA(3, terms=("xx", "zz"))
    with pytest.raises(ValueError, match=r"OmegaLSA: scales must be keyed by"):
        nr.OmegaLSA(3, scales={"q": 1.0})
    layer = nr.OmegaLSA(3)
    p = layer.init(0)
    with pytest.raises(ValueError, match=r"OmegaLSA: expected x of shape \(\.\.\., 4\), got shape \(2, 5, 3\)"):
        layer.forward(p, RNG(0).normal((2, 5, 3)))
    with pytest.raises(ValueError, match=r"OmegaLSA: n_context must be in \[1, 5\]"):
        layer.forward(p, RNG(0).normal((2, 5, 4)), n_context=6)
    _, cache = layer.forward(p, RNG(0).normal((2, 5, 4)), last_only=True)
    with pytest.raises(ValueError, match=r"OmegaLSA: expected dout of shape \(2, 1, 4\), got shape \(2, 5, 4\)"):
        layer.backward(p, cache, RNG(0).normal((2, 5, 4)))
    with pytest.raises(ValueError, match=r"LinearTransformer: layer must have d_model = d \+ d_out = 5, got 4"):
        icl.LinearTransformer(4, 1, 2, layer=layer)
    with pytest.raises(ValueError, match=r"ols_noise: needs more context points than dimensions, got n = 3, d = 3"):
        nr.ols_noise(nr.sample(RNG(0), 2, 3, 3)[0])
    with pytest.raises(ValueError, match=r"sample: sigma_max must be ≥ 0, got -1"):
        nr.sample(RNG(0), 2, sigma_max=-1.0)
    with pytest.raises(ValueError, match=r"sample: sigma_levels must be a non-empty list"):
        nr.sample(RNG(0), 2, sigma_levels=())


# -- the example's --paper preset ----------------------------------------------------------------

def test_paper_grid(f64):
    """The preset is the paper's grid: FULL, DIAG, GD++ at 1–7 layers for σ_max ∈ {1, 3, 5, 7},
    200k steps at batch 2048 of n = 20, d = 10 sequences."""
    grid = nr.paper_experiments()
    assert len(grid) == 3 * 7 * 4 and {k[0] for k in grid} == {"FULL", "DIAG", "GD++"}
    exp = grid["DIAG", 7, 7.0]
    tokens, targets = exp.data(RNG(0), 0)
    assert exp.steps == 200_000 and tokens.shape == (2048, 21, 11) and targets.shape == (2048, 1)
    assert exp.model().n_layers == 7 and exp.model().lsa.scales == nr.omega_scales(20, 10, 7.0)


@pytest.mark.slow
def test_paper_preset_starts_on_cpu():
    """`examples/04_noisy_regression.py --paper` (meant for a GPU) starts on the CPU and trains:
    3 steps (30 ÷ 10 in quick mode, whose evaluation sets have 10k sequences instead of 100k)
    of its first run at the paper's batch size, then prints the adjusted loss beside Table 1's."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYNIM_")}
    env.update(MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(root / "examples" / "04_noisy_regression.py"), "--paper", "--quick",
                           "--steps", "30", "--runs", "1"], capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "GD++, 1 layer(s), σ_max = 1" in proc.stdout and "step 3/3" in proc.stdout
    assert "| GD++ | 1 | 1 |" in proc.stdout and "| 1.639 |" in proc.stdout      # Table 1's 1-layer entry beside it


def test_table1_lookup_and_closing_table():
    """Table 1 by row and σ_max (any 1-layer model is the "1 layer" row; no entry: None), and
    the closing table puts the paper's σ_max = 5 entry, the reproduction and this run side by side."""
    assert nr.table1("DIAG 3") == 0.118 and nr.table1("GD++ 1", 3.0) == 1.175 and nr.table1("FULL 7", 7.0) == 0.057
    assert nr.table1("GD++ 4") is None and nr.table1("DIAG 2", 0.0) is None
    text = nr.closing_table({"diag2": {"adjusted": 0.25}, "baselines": {"adarr": 0.07}})
    assert "| DIAG, 2 layers | 0.242 | – | 0.25 |" in text and "| AdaRR | 0.068 | 0.0692 | 0.07 |" in text
    assert "| FULL, 7 layers | 0.047 | – | not run" in text and "| GD++, 3 layers | 0.344 | – | – |" in text


def test_omega_scales_normalise_the_data(f64):
    """ω of each term makes its block of the context statistics O(1) on the data it is made
    for [ours]: ω_xx Σ_i x_ij² → 1 and ω_yy Σ_i y_i² → 1 (s_y² = d + σ_max²/3 is E[y²]); ω_yx
    = ω_xx and ω_xy = √(ω_xx ω_yy) (the geometric mean of the two blocks it joins). Monte Carlo
    over 4000 sequences × 20 tokens: the relative standard error of each mean is < 1 %, the
    tolerance 5 % (a missing 1/n or 1/s_y² is off by a factor ≥ 4)."""
    n, d, smax = 20, 4, 3.0
    om = nr.omega_scales(n, d, smax)
    tokens, _, _ = nr.sample(RNG(11), 4000, n, d, sigma_max=smax)
    ctx = host(tokens)[:, :n]                                            # (B, n, d+1)
    x2 = np.mean(np.sum(ctx[..., :d] ** 2, axis=1))                      # E Σ_i x_ij²
    y2 = np.mean(np.sum(ctx[..., d] ** 2, axis=1))                       # E Σ_i y_i²
    assert abs(om["xx"] * x2 - 1) < 0.05 and abs(om["yy"] * y2 - 1) < 0.05, (om, x2, y2)
    assert om["yx"] == om["xx"]
    assert math.isclose(om["xy"], math.sqrt(om["xx"] * om["yy"]), rel_tol=1e-12)


def test_measure_routes_each_experiment(monkeypatch):
    """measure sends "constructions" to the exact errors, "baselines" to the baseline metrics
    and every trained experiment to train (checked with stand-ins that name their route)."""
    monkeypatch.setattr(nr, "exact_errors", lambda: {"route": "constructions"})
    monkeypatch.setattr(nr, "baseline_metrics", lambda quick_mode: {"route": "baselines"})
    monkeypatch.setattr(nr, "train", lambda name, **kw: ({"route": name}, None))
    for name in ("constructions", "baselines", *nr.EXPERIMENTS):
        assert nr.measure(name, quick_mode=True) == {"route": name}


def test_baseline_noise_responses_compare_noisy_with_noiseless_predictions(monkeypatch):
    """baseline_metrics' noise response of each baseline (oracle, AdaRR, ConstRR) is
    noise_response(its prediction on the noisy set, its prediction on the noiseless twin),
    reported as last bin's slope / first bin's (stand-ins that name what they predict on)."""
    calls = []

    class Ev:
        spec, clean_spec, sigma = "noisy", "clean", 1.0

        def baselines(self):
            return {}

        def tune(self, kind, clean=False):
            return {"eta": 0.5, "lam": 0.3}, 0.1

        def noise_response(self, pred, clean_pred):
            calls.append((pred, clean_pred))
            return np.array([2.0, 1.5, 0.5])
    monkeypatch.setattr(nr, "evaluation", lambda quick_mode: Ev())
    monkeypatch.setattr(nr, "oracle_ridge", lambda spec, sigma: ("oracle", spec))
    monkeypatch.setattr(nr, "adaptive_ridge", lambda spec: ("adarr", spec))
    monkeypatch.setattr(nr, "ridge", lambda spec, lam: ("constrr", spec, lam))
    m = nr.baseline_metrics(quick_mode=True)
    assert sorted(calls) == sorted([(("oracle", "noisy"), ("oracle", "clean")), (("adarr", "noisy"), ("adarr", "clean")),
                                    (("constrr", "noisy", 0.3), ("constrr", "clean", 0.3))])
    assert all(m[f"{k}_noise_response"] == 0.25 for k in ("oracle", "adarr", "constrr"))


def test_model_metrics_compares_diag_with_gdpp_only(monkeypatch):
    """model_metrics: the adjusted loss over each baseline, and "over_gdpp" (the adjusted loss
    over GD++'s of the same depth, measured by its own experiment) exactly for the names of
    COMPARE; other experiments get no such key (stand-ins for the model and evaluation)."""
    asked = []
    monkeypatch.setattr(nr, "measure", lambda name, **kw: asked.append(name) or {"adjusted": 0.25})

    class Ev:
        tokens = "tokens"

        def baselines(self):
            return {"gd1": 2.0, "constrr": 4.0, "adarr": 8.0}

        def adjusted(self, pred):
            assert pred == "pred"
            return 1.0

    class Model:
        lsa = None

        def __call__(self, params, tokens):
            return "pred"

    for name in nr.EXPERIMENTS:
        m = nr.model_metrics(name, Model(), None, Ev())
        assert (m["over_gd1"], m["over_constrr"], m["over_adarr"]) == (0.5, 0.25, 0.125)
        assert ("over_gdpp" in m) == (name in nr.COMPARE), name
        if name in nr.COMPARE:
            assert m["over_gdpp"] == 4.0 and asked[-1] == nr.COMPARE[name]
    assert len(asked) == len(nr.COMPARE)
