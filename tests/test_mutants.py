"""Tests written for mutants that survived the suite (issue 19, tools/mutate.py): each one
fails with that single-line bug and passes on the correct code.

* the two clippings of ``Optimizer.clip`` swapped (global norm before element-wise): see
  ``tests/test_optim.py::test_clip_order_element_wise_then_global_norm``;
* a mean over heads instead of the sum in ``tasks.icl_regression.effective_eta``;
* the two decays swapped in ``tasks.state_soup.split_predictions`` (invisible with equal
  halves);
* the max subtraction dropped from the unmasked softmax fast path: see
  ``tests/test_routes.py::test_softmax_unmasked_fast_path_equals_masked_path``;
* found by the harness: an output-gate index ``g0 − a·d_k + b`` instead of ``g0 + a·d_k + b``
  in ``gated_rnn_from_attention`` (a permutation within one head, a collision across heads
  when d_v ≥ 2);
* init scales (the documented LeCun-normal standard deviations) and fit's history timing.
"""
import numpy as np
import pytest

import tasks.icl_regression as icl
from tasks.gated_rnn_attention import (RNNRegressor, ablation, gated_rnn_from_attention, gd_alignment,
                                       gd_gated_rnn, lsa_teacher)
from tasks.state_soup import compose, context_state, decay, predict_from_state, split_predictions
from tinynim.backend import asarray
from tinynim.losses import mse
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.recurrent import RECURRENCES, GatedLinearRNN
from tinynim.random import RNG
from helpers import assert_close, host

EXACT = 1e-10      # same real numbers, different order of float64 operations (observed ~1e-15)


@pytest.mark.parametrize("form", ["merged", "full"])
@pytest.mark.parametrize("etas", [(0.4, 0.4), (0.3, 0.5), (1.2, -0.4)])
def test_effective_eta_sums_over_heads(f64, form, etas):
    """Two heads, each a GD construction with its own η_h, implement one GD step with
    η = Σ_h η_h (each head adds its own update to the query): effective_eta reports the sum
    and the 2-head layer predicts as explicit GD with that η."""
    d, N = 3, 7
    heads = [icl.gd_weights(d, N, eta, form=form) for eta in etas]
    params = {k: asarray(np.concatenate([host(h[k]) for h in heads])) for k in heads[0]}
    assert icl.effective_eta(params, d, N, form) == pytest.approx(sum(etas), rel=1e-12)
    model = icl.LinearTransformer(d, n_heads=2, form=form)
    tokens, _ = icl.sample(RNG(1), 4, N, d)
    assert_close(model(params, tokens), icl.gd_predict(tokens, sum(etas)), EXACT, "2-head GD step")


@pytest.mark.parametrize("recurrence", RECURRENCES)
@pytest.mark.parametrize("N, n_first", [(7, None), (7, 2), (9, 6)])
def test_split_predictions_with_unequal_halves(backend, recurrence, N, n_first):
    """With |c₁| ≠ |c₂| the decays Φ(c₁) ≠ Φ(c₂): 'exact' (Φ(c₂) ⊙ s(c₁) + s(c₂)) equals
    reading the whole context; the soups and 'half' equal their definitions."""
    rng = RNG(N)
    rnn = GatedLinearRNN(3, 5, 1, recurrence=recurrence)
    params = rnn.init(rng)
    tokens = rng.normal((3, N + 1, 3))
    preds = split_predictions(rnn, params, tokens, n_first)
    k = N // 2 if n_first is None else n_first
    assert_close(preds["exact"], preds["full"], EXACT, "exact recombination vs full context")
    s1 = context_state(rnn, params, tokens[:, :k, :])
    s2 = context_state(rnn, params, tokens[:, k:N, :])
    query = tokens[:, N:, :]
    phi2 = host(decay(rnn, params, N - k))
    assert np.abs(phi2 - host(decay(rnn, params, k))).max() > 1e-3        # the halves differ
    assert_close(compose([s1, s2], [decay(rnn, params, k), decay(rnn, params, N - k)])[0],
                 phi2 * host(s1) + host(s2), EXACT, "compose")
    expect = {"none": None, "half": s1, "sum": s1 + s2, "mean": (s1 + s2) / 2}
    for key, state in expect.items():
        assert_close(preds[key], predict_from_state(rnn, params, state, query), EXACT, key)


@pytest.mark.parametrize("form, H, d_key", [("full", 2, 2), ("full", 3, 3), ("merged", 2, None)])
def test_attention_rnn_with_several_heads_and_wide_keys(backend, form, H, d_key):
    """The construction with H ≥ 2 heads and d_v = d_k ≥ 2 (each head's d_v·d_k output gates
    must not collide with another head's) equals the causal LSA at every step."""
    rng = RNG(H)
    lsa = LinearSelfAttention(3, H, d_key, causal=True, form=form, init_std=0.5)
    params = lsa.init(rng)
    rnn, rnn_params = gated_rnn_from_attention(lsa, params)
    x = rng.normal((2, 5, 3))
    assert_close(rnn(rnn_params, x), lsa(params, x), EXACT, "gated RNN vs causal LSA")


def test_gd_alignment_of_the_gd_construction(f64):
    """The compact GD construction is one GD step: cosine 1 (up to the metric's +1e-8 in the
    norms), zero model and prediction differences; with the wrong η only the predictions
    and the sensitivity norms differ (the cosine of parallel sensitivities stays 1)."""
    d, N, eta = 3, 6, 0.7
    rnn, params = gd_gated_rnn(d, N, eta)
    model = RNNRegressor(d, rnn=rnn)
    tokens, _ = icl.sample(RNG(0), 5, N, d, input_range=2.0)
    m = gd_alignment(model, params, tokens, eta)
    assert m["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert m["model_diff"] < 1e-10 and m["preds_diff"] < 1e-10
    off = gd_alignment(model, params, tokens, 2 * eta)
    assert off["cosine"] == pytest.approx(1.0, abs=1e-6) and off["preds_diff"] > 1e-3 and off["model_diff"] > 1e-3


def test_lsa_teacher_has_unit_mean_square(f64):
    """On the 4096 probe sequences the rescaled teacher's output has mean square 1 (to
    rounding); on fresh ones 1 within 25 %: the output is cubic in Gaussian x, heavy-tailed,
    and over 8 seeds × 4 fresh draws it ranged 0.87–1.13."""
    T, D = 4, 3
    lsa, params = lsa_teacher(D, 2, T, seed=5)
    assert lsa.causal and lsa.d_key == 2
    probe = host(lsa(params, RNG(6).normal((4096, T, D))))
    assert np.mean(probe ** 2) == pytest.approx(1.0, rel=1e-12)
    fresh = host(lsa(params, RNG(99).normal((4096, T, D))))
    assert np.mean(fresh ** 2) == pytest.approx(1.0, rel=0.25)


def test_ablation_is_the_loss_rise_per_silenced_neuron(f64):
    """For each of the N neurons: the MSE with that input-gate column zeroed minus the base
    MSE, recomputed here with numpy-zeroed columns."""
    rnn = GatedLinearRNN(2, 5, 1)
    model = RNNRegressor(1, rnn=rnn)
    params = rnn.init(RNG(1))
    x, target = RNG(2).normal((4, 6, 2)), RNG(3).normal((4, 1))
    rises = ablation(model, params, x, target)
    loss = lambda p: float(mse(model(p, x), target)[0])
    base = loss(params)
    want = []
    for n in range(5):
        W = host(params["Wx_in"]).copy()
        W[:, n] = 0.0
        want.append(loss({**params, "Wx_in": asarray(W)}) - base)
    assert rises.shape == (5,)
    np.testing.assert_allclose(rises, want, rtol=1e-12, atol=1e-15)
    assert np.abs(rises).max() > 0


def _std_within(a, want, rel=0.05):
    """Sample std of ≥ 10⁴ draws within 5 % of `want` (its relative standard error is
    1/√(2n) ≤ 0.7 %: 5 % is beyond 7σ)."""
    a = host(a).ravel()
    assert a.size >= 10_000 and abs(np.std(a) / want - 1) < rel, (np.std(a), want)


def test_init_scales_are_the_documented_ones(f64):
    """LeCun-normal weights: Linear W ~ N(0, 1/d_in), b = 0; SoftmaxAttention's four
    matrices ~ N(0, 1/d_model); GatedLinearRNN: input gates 1/√(d_in + 1), output gates
    1/√N, readout 0.1/√M, λ = σ(U(−2, 2))."""
    from tinynim.nn import Linear, SoftmaxAttention
    lin = Linear(400, 50).init(RNG(0))
    _std_within(lin["W"], 1 / 20)
    assert np.all(host(lin["b"]) == 0)
    for W in SoftmaxAttention(144, 4).init(RNG(1)).values():
        _std_within(W, 1 / 12)
    rnn = GatedLinearRNN(99, 100, 150, n_out_gates=100)
    p = rnn.init(RNG(2))
    for key, want in [("Wx_in", 0.1), ("Wg_in", 0.1), ("Wx_out", 0.1), ("Wg_out", 0.1), ("D", 0.01)]:
        _std_within(p[key], want)
    lam = host(rnn.decay(p))
    nu = np.log(lam / (1 - lam))
    assert -2 < nu.min() < -1.6 and 1.6 < nu.max() < 2 and abs(nu.mean()) < 0.35   # 100 draws of U(−2, 2)


def test_fit_history_time_is_elapsed_seconds(f64):
    """history["time"] holds the seconds since the run began: non-decreasing, within the
    wall-clock time of the call; each log line's ms/step is within [0, that time / steps]."""
    import re
    import time
    from tinynim.optim import SGD
    from tinynim.train import fit
    lines = []
    loss_and_grads = lambda p, batch, step: (float(host(p["w"]) @ host(p["w"])), {"w": 2 * p["w"]})
    t0 = time.perf_counter()
    _, history = fit(loss_and_grads, {"w": asarray(np.ones(3))}, SGD(0.1), steps=20, log_every=5,
                     log=lines.append)
    elapsed = time.perf_counter() - t0
    times = history["time"]
    assert len(times) == 20 and 0 <= times[0] and all(a <= b for a, b in zip(times, times[1:]))
    assert times[-1] <= elapsed
    ms = [float(m) for m in re.findall(r"([0-9.]+) ms/step", "\n".join(lines))]
    assert len(ms) == 4 and all(0 <= v <= 1e3 * elapsed / 5 for v in ms)
