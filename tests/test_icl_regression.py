"""Exact properties of tasks.icl_regression (arXiv:2212.07677; float64, relative error ≤ 1e-10).

The references are explicit GD / GD++ recursions or plain numpy loops, never the model.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tasks import icl_regression as icl
from tinynim.backend import asarray
from tinynim.nn.linear_attention import LinearSelfAttention, merged_products
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

TOL = 1e-10   # exact identities hold to ~1e-15 in float64; 1e-10 leaves margin for K=3

settings_ = st.fixed_dictionaries(dict(
    d=st.integers(1, 4), N=st.integers(1, 6), d_out=st.integers(1, 3),
    eta=st.floats(0.05, 2.0), use_W0=st.booleans(), input_range=st.sampled_from([1.0, 2.0]),
    form=st.sampled_from(["merged", "full"]), seed=st.integers(0, 2**16)))


def setup(c, batch=4):
    rng = RNG(c["seed"])
    tokens, targets = icl.sample(rng, batch, c["N"], c["d"], d_out=c["d_out"], input_range=c["input_range"])
    W0 = rng.normal((c["d_out"], c["d"])) if c["use_W0"] else None
    return tokens, targets, W0


def gd_loop(tokens, d, eta, steps, W0):
    """Per-task numpy GD with an explicit sum over the context: the independent reference."""
    T = host(tokens)
    preds = []
    for task in T:
        X, Y, xq = task[:-1, :d], task[:-1, d:], task[-1, :d]
        W = np.zeros((Y.shape[1], d)) if W0 is None else host(W0).copy()
        for _ in range(steps):
            W = W - eta / len(X) * sum(np.outer(W @ x - y, x) for x, y in zip(X, Y))
        preds.append(W @ xq)
    return np.array(preds)


def model_tokens(tokens, W0):
    return tokens if W0 is None else icl.with_initial_guess(tokens, W0)


@given(c=settings_, steps=st.integers(0, 3))
def test_gd_predict_is_gradient_descent(backend, c, steps):
    tokens, _, W0 = setup(c)
    assert_close(icl.gd_predict(tokens, c["eta"], steps, W0, d_out=c["d_out"]),
                 gd_loop(tokens, c["d"], c["eta"], steps, W0), TOL, "gd_predict vs loop")


@given(c=settings_)
def test_one_layer_is_one_gd_step(backend, c):
    """The constructed layer's prediction = one GD step from W₀ (vector y too)."""
    tokens, _, W0 = setup(c)
    model = icl.LinearTransformer(c["d"], c["d_out"], 1, form=c["form"])
    params = icl.gd_weights(c["d"], c["N"], c["eta"], d_out=c["d_out"], W0=W0, form=c["form"])
    assert_close(model(params, model_tokens(tokens, W0)), gd_loop(tokens, c["d"], c["eta"], 1, W0), TOL,
                 "1 layer vs 1 GD step")


@given(c=settings_, K=st.integers(2, 3))
def test_k_shared_layers_are_k_gd_steps(backend, c, K):
    """K shared layers = K GD steps; after layer l every context y slot is
    y_i − (W_l − W₀) x_i (the GD residual when W₀ = 0), the query's is −W_l x_q, x slots fixed."""
    tokens, _, W0 = setup(c)
    d, N = c["d"], c["N"]
    model = icl.LinearTransformer(d, c["d_out"], K, form=c["form"])
    params = icl.gd_weights(d, N, c["eta"], d_out=c["d_out"], W0=W0, form=c["form"])
    stream = model.stream(params, model_tokens(tokens, W0))
    X, Y, xq = (host(a) for a in icl.split(tokens, d))
    W0h = 0 if W0 is None else host(W0)
    for l, H in enumerate(stream):
        W = host(icl.gd_solve(tokens, c["eta"], l, W0, d_out=c["d_out"]))          # (B, d_out, d)
        H = host(H)
        assert_close(H[:, :, :d], host(tokens)[:, :, :d], TOL, f"x slots after layer {l}")
        assert_close(H[:, :-1, d:], Y - X @ (W - W0h).transpose(0, 2, 1), TOL, f"context y after {l}")
        assert_close(H[:, -1, d:], -np.einsum("bod,bd->bo", W, xq), TOL, f"query y after {l}")
    assert_close(model(params, model_tokens(tokens, W0)), gd_loop(tokens, d, c["eta"], K, W0), TOL, "K layers")


@given(c=settings_, gamma=st.floats(0.0, 0.5), K=st.integers(1, 3))
def test_gdpp_construction(backend, c, gamma, K):
    """The GD++ weights reproduce the explicit GD++ recursion at every layer,
    and each layer maps Σ = Σ_i x_i x_iᵀ to (I − γΣ) Σ (I − γΣ)."""
    tokens, _, _ = setup(c)
    d, N = c["d"], c["N"]
    model = icl.LinearTransformer(d, c["d_out"], K, form=c["form"])
    params = icl.gdpp_weights(d, N, c["eta"], gamma, d_out=c["d_out"], form=c["form"])
    stream = model.stream(params, tokens)
    explicit = icl.gdpp_tokens(tokens, c["eta"], gamma, K, d_out=c["d_out"])
    for l, (H, E) in enumerate(zip(stream, explicit)):
        assert_close(H, E, TOL, f"GD++ tokens after layer {l}")
    Sig = [np.einsum("bnd,bne->bde", host(H)[:, :N, :d], host(H)[:, :N, :d]) for H in stream]
    for S, S_next in zip(Sig, Sig[1:]):
        M = np.eye(d) - gamma * S
        assert_close(S_next, M @ S @ M, TOL, "Σ update")
    assert_close(model(params, tokens), -explicit[-1][:, -1, d:], TOL, "GD++ prediction")
    assert_close(icl.gdpp_predict(tokens, c["eta"], gamma, K, d_out=c["d_out"]), -explicit[-1][:, -1, d:], TOL,
                 "GD++ from the moments Σ, α")


@given(d=st.integers(1, 3), d_out=st.integers(1, 2), K=st.integers(1, 3), heads=st.integers(1, 2),
       d_key=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_merged_equals_full_model(backend, d, d_out, K, heads, d_key, seed):
    """Random full-form params and their products P = Wv Wp, Q = Wq Wkᵀ give
    the same predictions (unshared layers, several heads)."""
    rng = RNG(seed)
    full = icl.LinearTransformer(d, d_out, K, shared=False, form="full", n_heads=heads, d_key=d_key, init_std=0.4)
    merged = icl.LinearTransformer(d, d_out, K, shared=False, form="merged", n_heads=heads)
    p = full.init(rng)
    pm = [dict(zip(("Q", "P"), merged_products(pl, "full"))) for pl in p]
    tokens, _ = icl.sample(rng, 3, 4, d, d_out=d_out)
    assert_close(merged(pm, tokens), full(p, tokens), TOL, "merged vs full")


@pytest.mark.parametrize("K", [1, 2, 3])
def test_query_must_not_be_a_key(f64, K):
    """Keys/values convention: with the query among keys/values the GD
    construction still gives GD for K = 1 from W₀ = 0 (the query's value is 0) but not for K ≥ 2."""
    d, N, eta = 4, 6, 1.3
    tokens, _ = icl.sample(RNG(K), 16, N, d)
    lsa = LinearSelfAttention(d + 1, form="merged")
    params = icl.gd_weights(d, N, eta)
    H = tokens
    for _ in range(K):
        H = H + lsa(params, H)                       # n_context = all N+1 tokens
    err = np.abs(-host(H)[:, -1, d:] - host(icl.gd_predict(tokens, eta, K))).max()
    if K == 1:
        assert err < 1e-12
    else:
        assert err > 1e-3, err


model_settings = st.fixed_dictionaries(dict(
    d=st.integers(1, 3), d_out=st.integers(1, 2), N=st.integers(1, 4), K=st.integers(1, 3),
    shared=st.booleans(), form=st.sampled_from(["merged", "full"]), heads=st.integers(1, 2),
    d_key=st.integers(1, 5), seed=st.integers(0, 2**16)))


def build_model(c, fast=True):
    """d_key < D (full form) exercises the 4-matrix backward, d_key ≥ D the products route."""
    model = icl.LinearTransformer(c["d"], c["d_out"], c["K"], shared=c["shared"], form=c["form"],
                                  n_heads=c["heads"], d_key=c["d_key"] if c["form"] == "full" else None,
                                  init_std=0.4, fast=fast)
    rng = RNG(c["seed"])
    return model, model.init(rng), icl.sample(rng, 3, c["N"], c["d"], d_out=c["d_out"], input_range=2.0)[0]


@given(c=model_settings, fast=st.booleans())
def test_linear_transformer_gradients(backend, c, fast):
    """Hand-derived backward vs finite differences and torch autograd."""
    model, params, tokens = build_model(c, fast)
    assert_gradients(model, params, tokens)


@given(c=model_settings)
def test_fast_path_equals_plain_composition(backend, c):
    """The last-layer-query-only path gives the plain stack's predictions and gradients, and
    is taken: its last residual-stream entry H_L is the query row only."""
    fast, params, tokens = build_model(c)
    assert fast._run(params, tokens, True)[0][-1].shape[1] == 1
    plain = icl.LinearTransformer(c["d"], c["d_out"], c["K"], shared=c["shared"], form=c["form"],
                                  n_heads=c["heads"], d_key=fast.lsa.d_key if c["form"] == "full" else None,
                                  fast=False)
    (pf, cf), (pp, cp) = fast.forward(params, tokens), plain.forward(params, tokens)
    assert_close(pf, pp, TOL, "predictions")
    R = RNG(1).normal(tuple(pf.shape))
    (dxf, gf), (dxp, gp) = fast.backward(params, cf, R), plain.backward(params, cp, R)
    assert_close(dxf, dxp, TOL, "dtokens")
    for (kf, a), (kp, b) in zip(_leaves(gf), _leaves(gp)):
        assert kf == kp
        assert_close(a, b, TOL, f"grad {kf}")


def _leaves(tree):
    from tinynim.tree import leaves_with_paths
    return leaves_with_paths(tree)


@given(c=settings_, K=st.integers(1, 3))
def test_sensitivity_of_gd_construction(backend, c, K):
    """∂ŷ/∂x_q from LinearTransformer.backward equals GD's analytic sensitivity W_K (ŷ is
    linear in x_q because keys and values exclude the query); alignment is then perfect:
    cosine 1 for every task with a nonzero sensitivity, distances 0."""
    tokens, _, W0 = setup(c)
    model = icl.LinearTransformer(c["d"], c["d_out"], K, form=c["form"])
    params = icl.gd_weights(c["d"], c["N"], c["eta"], d_out=c["d_out"], W0=W0, form=c["form"])
    pred, J = icl.sensitivity(model, params, model_tokens(tokens, W0), W0)
    pred_gd, J_gd = icl.gd_sensitivity(tokens, c["eta"], K, W0, d_out=c["d_out"])
    assert_close(J, J_gd, TOL, "sensitivity")
    m = icl.alignment(pred, J, pred_gd, J_gd)
    norms = np.linalg.norm(host(J).reshape(len(host(J)), -1), axis=1)
    assert m["cosine"] == pytest.approx(np.mean(norms > 0), rel=1e-10)
    assert m["model_diff"] <= TOL * norms.mean() and m["preds_diff"] <= TOL * np.abs(host(pred)).mean() + 1e-300


def test_alignment_metrics(f64):
    """Hand-computed values: orthogonal, opposite and scaled sensitivities."""
    J_a = asarray(np.array([[[1.0, 0.0]], [[0.0, 2.0]]]))           # (B=2, 1, 2)
    J_b = asarray(np.array([[[0.0, 3.0]], [[0.0, -2.0]]]))
    p_a, p_b = asarray(np.array([[1.0], [2.0]])), asarray(np.array([[4.0], [2.0]]))
    m = icl.alignment(p_a, J_a, p_b, J_b)
    assert m["cosine"] == pytest.approx(-0.5, abs=1e-8)               # mean of 0 and −1
    assert m["model_diff"] == pytest.approx((np.sqrt(10) + 4) / 2)
    assert m["preds_diff"] == pytest.approx(1.5)


@given(d=st.integers(1, 4), d_out=st.integers(1, 2), eta=st.floats(0.1, 5), form=st.sampled_from(["merged", "full"]))
def test_effective_eta_of_construction(f64, d, d_out, eta, form):
    """The GD construction implements step η for every output: its P_yy block is −(η/N) I."""
    params = icl.gd_weights(d, 7, eta, d_out=d_out, form=form)
    assert icl.effective_eta(params, d, 7, form) == pytest.approx(eta, rel=1e-12)


def test_sample_law(f64):
    """Shapes, input range, query slot 0, and y = w x: with N ≥ d noiseless points least
    squares on the context recovers w and predicts the target exactly. x ~ U(−1, 1): over
    1350 draws mean 0 (σ = 0.016) and variance 1/3 (σ = 0.008), tolerances 5σ."""
    tokens, targets = icl.sample(RNG(3), 50, 8, 3, d_out=2, input_range=2.0)
    T, y = host(tokens), host(targets)
    assert T.shape == (50, 9, 5) and y.shape == (50, 2)
    x = T[:, :, :3]
    assert x.max() <= 1.0 and x.min() >= -1.0 and x.max() > 0.9 and x.min() < -0.9
    assert abs(x.mean()) < 0.08 and abs(x.var() - 1 / 3) < 0.04
    assert np.all(T[:, -1, 3:] == 0)
    for task, target in zip(T, y):
        w, *_ = np.linalg.lstsq(task[:-1, :3], task[:-1, 3:], rcond=None)
        np.testing.assert_allclose(task[-1, :3] @ w, target, rtol=1e-9, atol=1e-9)
    noisy, _ = icl.sample(RNG(3), 50, 8, 3, d_out=2, input_range=2.0, noise_std=0.1)
    diff = host(noisy)[:, :-1, 3:] - T[:, :-1, 3:]                  # same draws, plus noise
    assert 0.08 < diff.std() < 0.12                                  # 800 draws of N(0, 0.1²): ±5 %


def test_sample_same_on_every_backend(backend):
    a = host(icl.sample(RNG(7), 3, 4, 2)[0])
    from tinynim.backend import use_backend
    with use_backend("numpy", dtype="float64"):
        b = host(icl.sample(RNG(7), 3, 4, 2)[0])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("d", [1, 10])
def test_tune_gd_finds_the_closed_form_optimum(f64, d):
    """One step from 0: ŷ = η u with u = (1/N) Σ y_i x_iᵀ x_q, so η* = Σ u y / Σ u² exactly
    (d = 1: scalar inputs, a one-row spectrum)."""
    tokens, targets = icl.sample(RNG(0), 1000, 10, d)
    T, y = host(tokens), host(targets)[:, 0]
    u = np.einsum("bn,bnd,bd->b", T[:, :-1, -1], T[:, :-1, :d], T[:, -1, :d]) / 10
    best, value = icl.tune_gd(tokens, targets, 1)
    assert best["eta"] == pytest.approx(u @ y / (u @ u), rel=1e-3)
    assert value == pytest.approx(icl.loss(icl.gd_predict(tokens, best["eta"]), targets), rel=1e-12)
    plus, value_pp = icl.tune_gd(tokens, targets, 2, plus=True)
    two, value_gd = icl.tune_gd(tokens, targets, 2)
    assert value_pp < value_gd                       # γ = 0 is in the GD++ grid: never worse


def test_linear_transformer_errors(f64):
    model = icl.LinearTransformer(3)
    p = model.init(0)
    with pytest.raises(ValueError, match=r"LinearTransformer: expected tokens of shape \(\.\.\., 4\), got shape \(2, 5, 3\)"):
        model.forward(p, RNG(0).normal((2, 5, 3)))
    with pytest.raises(ValueError, match=r"LinearTransformer: expected tokens with N ≥ 1 context tokens"):
        model.forward(p, RNG(0).normal((2, 1, 4)))
    _, cache = model.forward(p, RNG(0).normal((2, 5, 4)))
    with pytest.raises(ValueError, match=r"LinearTransformer: expected dout of shape \(2, 1\), got shape \(2, 2\)"):
        model.backward(p, cache, RNG(0).normal((2, 2)))


def test_baselines_are_tuned_gd_on_the_evaluation_set():
    """`measure("baselines")` (quick: 1000 float32 tasks): the zero predictor's loss is
    ½·mean y² (float64 here), one GD step at the reported η reaches the reported loss
    (tolerance 1e-4 relative: float32 sums), and GD++ (γ = 0 in its grid) is never worse
    than GD with as many steps."""
    from tinynim.backend import use_dtype
    base = icl.measure("baselines", quick_mode=True)
    ev = icl.evaluation(quick_mode=True)
    y = host(ev.targets).astype(np.float64)
    assert abs(base["zero"] - 0.5 * np.mean(y * y)) <= 1e-4 * base["zero"]
    with use_dtype("float32"):
        gd1 = icl.loss(icl.gd_predict(ev.tokens, base["gd1_eta_over_n"] * icl.N), ev.targets)
    assert abs(gd1 - base["gd1"]) <= 1e-4 * base["gd1"] and base["gd1"] < base["zero"]
    assert base["gdpp2"] <= base["gd2"] and base["gdpp3"] <= base["gd3"]


def test_train_metrics_describe_the_returned_params(monkeypatch):
    """`train` returns ``(metrics, Result)`` (3 steps of the one-layer model; quick evaluation
    set): its loss is the returned parameters' loss on the evaluation set and its η ratio is
    their effective η over the tuned one-step η."""
    import dataclasses
    from tinynim.backend import use_dtype
    from tinynim.experiment import Result
    monkeypatch.setitem(icl.EXPERIMENTS, "one_layer", dataclasses.replace(icl.EXPERIMENTS["one_layer"], steps=3))
    metrics, result = icl.train("one_layer", quick_mode=False, log=lambda *a: None)
    assert isinstance(result, Result) and result.steps == 3
    ev = icl.evaluation(quick_mode=False)
    with use_dtype("float32"):
        assert metrics["eval_loss"] == icl.loss(result.model(result.params, ev.tokens), ev.targets)
    eta = icl.effective_eta(result.params, icl.D, icl.N, "merged")
    assert metrics["eta_ratio"] == pytest.approx(eta / ev.tuned(1)[0]["eta"], rel=1e-12)
