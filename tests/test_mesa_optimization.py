"""Exact properties of the P2 setting (arXiv:2309.05858; float64, every backend): the
constructions equal the algorithms, the reference predictors equal plain numpy loops, and the
models' backward passes equal finite differences and torch autograd."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinynim.backend import asarray
from tinynim.nn import LinearSelfAttention, MesaLayer, sherman_morrison_inverses
from tinynim.random import RNG
from tasks import mesa_optimization as p2
from helpers import assert_close, assert_gradients, host

EXACT = 1e-10       # identities in float64 (observed ~1e-16); ridge solves on well-conditioned
                    # H_t ≥ I/λ with λ ≤ 10 keep cond(H_t) ≲ 10³


def sequences(seed, B, T, d, noise_std=0.1):
    return p2.sample_dynamics(RNG(seed), B, T, d, noise_std=noise_std)


dims = dict(d=st.integers(1, 4), T=st.integers(1, 12), B=st.integers(1, 3), seed=st.integers(0, 2**16))


@given(**dims, log_lam=st.floats(math.log(0.1), math.log(10.0)))
def test_mesa_construction_is_online_ridge(backend, d, T, B, seed, log_lam):
    """A mesa head with query = slot 3, key = slot 4, value = slot 2 (mesa_ridge_weights) on
    [0, s_t, s_t, s_{t−1}] predicts online ridge regression of the pairs (s_{i−1} → s_i), i ≤ t."""
    lam = math.exp(log_lam)
    s = sequences(seed, B, T, d)
    out = MesaLayer(4 * d, 1, d)(p2.mesa_ridge_weights(d, lam), p2.constructed_tokens(s))
    assert_close(p2.readout(out, d), p2.online_ridge(s, lam), EXACT, "mesa construction vs online ridge")
    assert_close(p2.RidgeSpectrum(s).predict(lam), p2.online_ridge(s, lam), EXACT, "spectral ridge vs online ridge")
    assert np.all(host(out)[..., d:] == 0)                          # only slot 1 is written


@given(**dims, eta=st.floats(0.01, 2.0))
def test_lsa_construction_is_one_gd_step(backend, d, T, B, seed, eta):
    """A causal LSA head with the same selections and output η·slot 1 (lsa_gd_weights)
    predicts one GD step from W = 0: η Σ_{i≤t} s_i s_{i−1}ᵀ s_t."""
    s = sequences(seed, B, T, d)
    out = LinearSelfAttention(4 * d, 1, d, causal=True)(p2.lsa_gd_weights(d, eta), p2.constructed_tokens(s))
    assert_close(p2.readout(out, d), p2.gd_one_step(s, eta), EXACT, "LSA construction vs one GD step")


@given(**dims, log_lam=st.floats(math.log(0.1), math.log(10.0)))
def test_reference_predictors_equal_numpy_loops(backend, d, T, B, seed, log_lam):
    """online_ridge, ridge_official (newest pair omitted, regulariser added to SᵀS) and
    gd_one_step against per-sequence numpy loops written from their definitions."""
    lam = math.exp(log_lam)
    s = sequences(seed, B, T, d)
    sh = host(s)
    ridge, official, gd = (np.zeros_like(sh) for _ in range(3))
    for b in range(B):
        X = np.concatenate([np.zeros((1, d)), sh[b, :-1]])             # keys s_{i−1}, s_0 = 0
        for t in range(T):
            fit = lambda n, reg: np.linalg.solve(X[:n].T @ X[:n] + reg * np.eye(d), X[:n].T @ sh[b, :n])
            ridge[b, t] = sh[b, t] @ fit(t + 1, 1 / lam)
            official[b, t] = sh[b, t] @ fit(t, 1 / lam)                # pairs i ≤ t − 1
            gd[b, t] = 0.3 * sum(sh[b, i] * (X[i] @ sh[b, t]) for i in range(t + 1))
    assert_close(p2.online_ridge(s, lam), ridge, EXACT, "online_ridge")
    assert_close(p2.ridge_official(s, 1 / lam), official, EXACT, "ridge_official")
    assert_close(p2.gd_one_step(s, 0.3), gd, EXACT, "gd_one_step")


@given(**dims, log_lam=st.floats(math.log(0.1), math.log(10.0)))
def test_preconditioned_inputs(backend, d, T, B, seed, log_lam):
    """H_t⁻¹ s_t by one solve per position equals R_t s_t from the Sherman–Morrison recursion."""
    lam = math.exp(log_lam)
    s = sequences(seed, B, T, d)
    R = sherman_morrison_inverses(p2.previous(s), lam)                 # (B, T, d, d)
    assert_close(p2.preconditioned_inputs(s, lam), (R @ s[..., None])[..., 0], EXACT, "H_t⁻¹ s_t")


@given(d=st.integers(1, 5), T=st.integers(2, 20), seed=st.integers(0, 2**16))
def test_dynamics_and_tokens(backend, d, T, seed):
    """Without noise ‖s_t‖ is constant (W orthogonal); s_1 ∈ [−1, 1]^d; tokens are
    [0, s_t, s_t, s_{t−1}] with s_0 = 0; split_sequence shifts by one step."""
    s = host(p2.sample_dynamics(RNG(seed), 3, T, d, noise_std=0.0))
    norms = np.linalg.norm(s, axis=-1)
    np.testing.assert_allclose(norms, norms[:, :1] * np.ones_like(norms), rtol=1e-12)
    assert np.all(np.abs(s[:, 0]) <= 1)
    e = host(p2.constructed_tokens(asarray(s)))
    prev = np.concatenate([np.zeros((3, 1, d)), s[:, :-1]], axis=1)
    np.testing.assert_array_equal(e, np.concatenate([0 * s, s, s, prev], axis=-1))
    inputs, targets = p2.split_sequence(asarray(s))
    np.testing.assert_array_equal(host(targets)[:, :-1], host(inputs)[:, 1:])


@settings(max_examples=6)
@given(mesa=st.booleans(), layers=st.integers(1, 2), heads=st.integers(1, 2), d=st.integers(1, 3),
       T=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_sequence_predictor_gradients(backend, mesa, layers, heads, d, T, seed):
    """The residual stack's backward (mesa or LSA layers) vs finite differences (at most 16
    random coordinates per array) and torch autograd (every coordinate). Few examples: the
    layers themselves are checked on every coordinate in their own tests; this is the wiring."""
    model = p2.SequencePredictor(d, layers, heads, mesa=mesa, init_std=0.4)
    params = model.init(RNG(seed))
    tokens = p2.constructed_tokens(sequences(seed + 1, 2, T, d, noise_std=0.3))
    assert_gradients(model, params, tokens, max_coords=16)


def test_sequence_predictor_stream_and_readout(f64):
    """The prediction is slot 1 of the last residual-stream entry; each entry adds one layer."""
    model = p2.SequencePredictor(2, 2, 2, init_std=0.3)
    params = model.init(RNG(0))
    tokens = p2.constructed_tokens(sequences(1, 3, 6, 2))
    stream = model.stream(params, tokens)
    assert len(stream) == 3
    assert_close(model(params, tokens), stream[-1][..., :2], 0.0, "readout")
    lsa = model.attention
    assert_close(stream[1], tokens + lsa(params[0], tokens), 1e-15, "first residual block")


def test_probe_r2(f64):
    """A target linear in the features gets R² = 1 on held-out data; an independent one ≈ 0."""
    rng = RNG(0)
    X, Xt = rng.normal((400, 3, 5), host=True), rng.normal((400, 3, 5), host=True)
    A = rng.normal((5, 2), host=True)
    np.testing.assert_allclose(p2.probe_r2(X, X @ A + 1.0, Xt, Xt @ A + 1.0), 1.0, atol=1e-9)
    noise = p2.probe_r2(X, rng.normal((400, 3, 2), host=True), Xt, rng.normal((400, 3, 2), host=True))
    assert np.all(noise < 0.05)          # 5 features, 400 samples: an overfit of ~5/400 = 1 %, plus chance


def test_train_metrics_describe_the_returned_params(monkeypatch):
    """`train` (quick: 3 steps of each model, 200 evaluation sequences) returns ``(metrics, Result)``:
    the loss curve is the returned parameters' per-position loss on the evaluation sequences
    (T_SEQ predictions each), its summaries are the mean over all and over late positions, the
    comparisons divide by the other models' summaries, and the probe gains follow their
    definitions on given R²: last minus first layer (next), best later layer minus the first
    (precond), least rise between hidden layers."""
    import dataclasses
    from tinynim.backend import use_dtype
    from tinynim.experiment import Result
    for name in ("mesa", "lsa", "deep"):
        monkeypatch.setitem(p2.EXPERIMENTS, name, dataclasses.replace(p2.EXPERIMENTS[name], steps=30))
    quiet = lambda *a: None
    metrics, result = p2.train("deep", quick_mode=True, log=quiet)
    assert isinstance(result, Result) and result.steps == 3
    ev = p2.evaluation(quick_mode=True)
    assert ev.tokens.shape[1] == p2.T_SEQ
    with use_dtype("float32"):
        curve = p2.position_losses(result.model(result.params, ev.tokens), ev.targets)
    np.testing.assert_array_equal(metrics["curve"], curve)
    assert metrics["mean"] == np.mean(curve) and metrics["late"] == np.mean(curve[p2.LATE:])
    lsa, mesa = (p2.train(n, quick_mode=True, log=quiet)[0] for n in ("lsa", "mesa"))
    assert metrics["mean_over_lsa"] == metrics["mean"] / lsa["mean"]
    assert metrics["mesa_over_deep"] == mesa["mean"] / metrics["mean"]
    assert metrics["probe_next"].shape == metrics["probe_precond"].shape == (4,)   # layers 0..3
    assert lsa["late_over_mesa"] == lsa["late"] / mesa["late"]
    # the gains on given probe R² (layer 0 the best, then layer 1): −0.2 for "precond"
    monkeypatch.setattr(p2, "probe_metrics", lambda *a: {"next": np.array([0.1, 0.2, 0.4, 0.8]),
                                                         "precond": np.array([0.9, 0.7, 0.2, 0.3])})
    given_probes = p2.train("deep", quick_mode=True, log=quiet, seed_offset=1)[0]
    assert given_probes["next_gain"] == pytest.approx(0.7) and given_probes["precond_gain"] == pytest.approx(-0.2)
    assert given_probes["precond_hidden_rise"] == pytest.approx(-0.5)
