"""Exact properties of the P3 constructions (arXiv:2309.01775; float64, every backend)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.random import RNG
from tasks.gated_rnn_attention import RNNRegressor, gated_rnn_from_attention, gd_gated_rnn
from tasks.icl_regression import gd_predict, gd_sensitivity, sample, sensitivity
from helpers import assert_close, host

EXACT = 1e-10     # exact identities in float64 (observed ~1e-16)


@given(D=st.integers(1, 5), H=st.integers(1, 3), d_key=st.integers(1, 4), B=st.integers(1, 3),
       T=st.integers(1, 12), form=st.sampled_from(["full", "merged"]), seed=st.integers(0, 2**16))
def test_constructed_rnn_equals_causal_lsa(backend, D, H, d_key, B, T, form, seed):
    """Every time step of the constructed gated RNN equals the causal LSA, any heads and key
    size, either LSA form; the RNN has H·(d_v·d_k + d_k) neurons and λ ∈ {0, 1}."""
    rng = RNG(seed)
    lsa = LinearSelfAttention(D, n_heads=H, d_key=d_key if form == "full" else None, causal=True, form=form)
    params = lsa.init(rng)
    rnn, rnn_params = gated_rnn_from_attention(lsa, params)
    x = rng.normal((B, T, D))
    assert_close(rnn(rnn_params, x), lsa(params, x), EXACT, "gated RNN vs causal LSA")
    k = lsa.d_key
    assert rnn.n_hidden == H * (k * k + k) and rnn.n_out_gates == H * k * k
    assert set(np.unique(host(rnn_params["lam"]))) <= {0.0, 1.0}


@given(d=st.integers(1, 6), n_context=st.integers(1, 15), d_out=st.integers(1, 3),
       eta=st.floats(0.01, 3.0), seed=st.integers(0, 2**16))
def test_compact_construction_is_one_gd_step(backend, d, n_context, d_out, eta, seed):
    """The (d·d_out + d)-neuron RNN's output at the query equals one GD step from W = 0
    (tasks.icl_regression.gd_predict), and its ∂ŷ/∂x_q (via backward) equals GD's W."""
    tokens, _ = sample(RNG(seed), 4, n_context=n_context, d=d, d_out=d_out, input_range=2.0)
    rnn, params = gd_gated_rnn(d, n_context, eta, d_out=d_out)
    assert rnn.n_hidden == d * d_out + d                 # 2d for a scalar target
    pred = rnn(params, tokens, last_only=True)
    assert_close(pred, gd_predict(tokens, eta, d_out=d_out), EXACT, "RNN vs one GD step")
    _, J = sensitivity(RNNRegressor(d, d_out, rnn=rnn), params, tokens)   # hand-derived ∂ŷ/∂x_q
    assert_close(J, gd_sensitivity(tokens, eta, d_out=d_out)[1], EXACT, "sensitivity vs GD's W")


@given(seed=st.integers(0, 2**16), recurrence=st.sampled_from(["sigmoid", "exp", "direct"]))
def test_invariances(backend, seed, recurrence):
    """The function is unchanged by (i) Wx_in[:, n]·c_n with Wg_in[:, n]/c_n, (ii) the same
    on the output gates, (iii) swapping Wx_out and Wg_out, (iv) permuting the recurrent
    neurons (columns of the input gates and λ, rows of the output gates, h0 entries) and
    (v) permuting output gates (columns of Wx_out, Wg_out and rows of D). Tolerance 1e-12:
    only rounding differs."""
    rng = RNG(seed)
    layer = GatedLinearRNN(3, 5, 2, n_out_gates=4, recurrence=recurrence)
    p = layer.init(rng)
    x, h0 = rng.normal((2, 7, 3)), rng.normal((2, 5))
    base = layer(p, (x, h0))
    scales = lambda n: asarray(rng.uniform((n,), 0.2, 5.0, host=True) * (2.0 * rng.choice(2, n, host=True) - 1))
    c, cm = scales(5), scales(4)                                 # nonzero, either sign
    perm = rng.permutation(5, host=True)
    perm_m = rng.permutation(4, host=True)
    xp = backend.xp
    take = lambda a, idx, axis: xp.take(a, asarray(idx, "int64"), axis=axis)
    variants = {
        "input scale": {**p, "Wx_in": p["Wx_in"] * c, "Wg_in": p["Wg_in"] / c},
        "output scale": {**p, "Wx_out": p["Wx_out"] * cm, "Wg_out": p["Wg_out"] / cm},
        "output swap": {**p, "Wx_out": p["Wg_out"], "Wg_out": p["Wx_out"]},
        "output-gate permutation": {**p, "Wx_out": take(p["Wx_out"], perm_m, 1),
                                    "Wg_out": take(p["Wg_out"], perm_m, 1), "D": take(p["D"], perm_m, 0)},
    }
    for name, q in variants.items():
        assert_close(layer(q, (x, h0)), base, 1e-12, name)
    permuted = {"Wx_in": take(p["Wx_in"], perm, 1), "Wg_in": take(p["Wg_in"], perm, 1),
                layer.decay_key: take(p[layer.decay_key], perm, 0),
                "Wx_out": take(p["Wx_out"], perm, 0), "Wg_out": take(p["Wg_out"], perm, 0), "D": p["D"]}
    assert_close(layer(permuted, (x, take(h0, perm, 1))), base, 1e-12, "neuron permutation")


def test_student_sizes_are_the_construction_and_twice_it():
    """The 1× student has exactly the neurons and output gates that the construction needs for
    the teacher (a one-head causal LSA, D = 3, d_k = 2); the 2× student has twice both."""
    from tasks.gated_rnn_attention import EXPERIMENTS
    lsa = LinearSelfAttention(3, n_heads=1, d_key=2, causal=True)
    rnn, _ = gated_rnn_from_attention(lsa, lsa.init(RNG(0)))
    for mult in (1, 2):
        student = EXPERIMENTS[f"student_{mult}x"].model()
        assert (student.n_hidden, student.n_out_gates) == (mult * rnn.n_hidden, mult * rnn.n_out_gates)
        assert (student.d_in, student.d_out) == (3, 3)


def test_evaluation_baselines_are_the_zero_predictor_and_tuned_gd():
    """`measure("baselines")` (quick: 2000 float32 tasks): the zero predictor's loss is
    ½·mean ‖y‖² (computed here in float64), one GD step at the tuned η reaches the reported
    loss (tasks.icl_regression.gd_predict), which is below the zero predictor's; the evaluation
    set is made once per backend. Tolerance 1e-4 relative: float32 sums over 2000 tasks."""
    from tasks.gated_rnn_attention import N_ICL, evaluation, measure
    from tasks.icl_regression import loss
    from tinynim.backend import use_dtype
    base = measure("baselines", quick_mode=True)
    ev = evaluation(quick_mode=True)
    assert ev is evaluation(quick_mode=True) and ev.tokens.shape == (2000, N_ICL + 1, 5)
    y = host(ev.targets).astype(np.float64)
    assert abs(base["zero"] - 0.5 * np.mean(np.sum(y * y, axis=-1))) <= 1e-4 * base["zero"]
    with use_dtype("float32"):
        gd = loss(gd_predict(ev.tokens, base["gd_eta_over_n"] * N_ICL), ev.targets)
    assert abs(gd - base["gd"]) <= 1e-4 * base["gd"] and base["gd"] < base["zero"]



@pytest.mark.parametrize("name", ["student_1x", "icl_lsa"])
def test_train_returns_metrics_then_result(monkeypatch, name):
    """`train` returns ``(metrics, Result)`` (3 steps; quick evaluation set): the metrics
    describe the returned parameters (the student's λ; the ICL model's loss on the evaluation
    set) and `measure` passes them on."""
    import dataclasses
    from tasks import gated_rnn_attention as p3
    from tasks.icl_regression import loss
    from tinynim.backend import use_dtype
    from tinynim.experiment import Result
    monkeypatch.setitem(p3.EXPERIMENTS, name, dataclasses.replace(p3.EXPERIMENTS[name], steps=3))
    metrics, result = p3.train(name, quick_mode=False, log=lambda *a: None)
    assert isinstance(result, Result) and result.steps == 3
    if name == "student_1x":
        assert np.array_equal(metrics["lam"], host(result.model.decay(result.params)))
    else:
        ev = p3.evaluation(quick_mode=False)
        with use_dtype("float32"):
            assert metrics["loss"] == loss(result.model(result.params, ev.tokens), ev.targets)
    assert set(p3.measure(name, quick_mode=False, log=lambda *a: None)) == set(metrics)
