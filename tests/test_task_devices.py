"""Every task module's functions run on array-api-strict's second device, ``device1``.

array-api-strict refuses to combine arrays from two devices, so a task function that
creates an array on the default device (a forgotten ``device=``), or on the active backend
instead of its inputs' namespace, fails here on a CPU-only machine as it would on a GPU.
Small sizes: this is about where arrays live, not about the numbers (the other task tests
check those). About 10 s.
"""
import dataclasses

import pytest

from tasks import gated_rnn_attention as p3, icl_regression as p1, mesa_optimization as p2, noisy_regression as p4
from tasks import randomized_algorithms as p8, state_soup as p5
from tinynim.backend import use_backend
from tinynim.experiment import run
from tinynim.random import RNG


@pytest.fixture
def device1():
    with use_backend("array_api_strict", device="device1", dtype="float64") as adapter:
        yield adapter


def on_device1(*arrays):
    return all("device1" in str(a.device) for a in arrays)


def test_icl_regression_on_device1(device1):
    tokens, targets = p1.sample(RNG(0), 16, 5, 3)
    W0 = RNG(1).normal((1, 3))
    model = p1.LinearTransformer(3, 1, 2)
    params = p1.gd_weights(3, 5, 1.0, W0=W0)
    pred, J = p1.sensitivity(model, params, p1.with_initial_guess(tokens, W0), W0)
    metrics = p1.alignment(pred, J, *p1.gd_sensitivity(tokens, 1.0, 2, W0))
    assert metrics["cosine"] > 0.99
    assert on_device1(pred, J, p1.gdpp_predict(tokens, 1.0, 0.1, 2), *p1.gdpp_tokens(tokens, 1.0, 0.1, 2))
    hp, value = p1.tune_gd(tokens, targets, 2, plus=True, grid=4, rounds=1)
    assert value >= 0 and p1.effective_eta(params, 3, 5, "merged") == pytest.approx(1.0)
    dx, grads = model.backward(params, model.forward(params, tokens)[1], targets)
    assert on_device1(dx, *grads.values())
    result = run(dataclasses.replace(p1.EXPERIMENTS["one_layer"], steps=3, data=p1.regression_data(8, 5, 10)), log=None)
    assert on_device1(*result.params.values())


def test_mesa_optimization_on_device1(device1):
    s = p2.sample_dynamics(RNG(0), 6, 8, 2)
    tokens = p2.constructed_tokens(s)
    preds = [p2.online_ridge(s, 2.0), p2.ridge_official(s, 0.5), p2.gd_one_step(s, 0.1),
             p2.RidgeSpectrum(s).predict(2.0), p2.preconditioned_inputs(s, 2.0)]
    assert on_device1(tokens, *preds)
    assert max(p2.construction_errors().values()) < 1e-10
    for model in (p2.SequencePredictor(2, 1, mesa=True), p2.SequencePredictor(2, 2, 2)):
        params = model.init(RNG(1))
        pred, cache = model.forward(params, tokens)
        dx, grads = model.backward(params, cache, pred)
        assert on_device1(pred, dx, *[g for layer in grads for g in layer.values()], *model.stream(params, tokens))
    exp = dataclasses.replace(p2.EXPERIMENTS["mesa"], steps=3, data=p2.sequence_data(4, 6, 2),
                              model=lambda: p2.SequencePredictor(2, 1, mesa=True))
    assert on_device1(*run(exp, log=None).params[0].values())


def test_gated_rnn_attention_on_device1(device1):
    lsa, lsa_params = p3.lsa_teacher(3, 2, 4, seed=0)
    rnn, rnn_params = p3.gated_rnn_from_attention(lsa, lsa_params)
    x = RNG(1).normal((2, 4, 3))
    assert on_device1(rnn(rnn_params, x), *rnn_params.values())
    assert p3.ablation(rnn, rnn_params, x, lsa(lsa_params, x)).shape == (rnn.n_hidden,)
    tokens, _ = p1.sample(RNG(2), 8, 4, 3)
    gd_rnn, gd_params = p3.gd_gated_rnn(3, 4, 1.0)
    model = p3.RNNRegressor(3, 1, rnn=gd_rnn)
    assert p3.gd_alignment(model, gd_params, tokens, 1.0)["cosine"] > 0.99
    student = p3.GatedLinearRNN(3, 6, 3, n_out_gates=4, recurrence="exp")
    metrics = p3.student_metrics(student, student.init(RNG(3)), n_probe=8)
    assert 0 < metrics["loss_over_zero"]
    assert p3.construction_errors()["attention_error"] < 1e-10


def test_noisy_regression_on_device1(device1):
    ev = p4.Evaluation(60, n_context=6, d=3)
    base = ev.baselines()
    assert len(base) == 4 and all(abs(v) < 1e3 for v in base.values())
    model = p4.diag_model(3, d=3, n_context=6, init_std=0.3)
    params = model.init(RNG(0))
    pred, cache = model.forward(params, ev.tokens)
    dx, grads = model.backward(params, cache, pred)
    lemma_pred, states = p4.lemma43(model, params, ev.tokens)
    assert on_device1(pred, dx, lemma_pred, *states[-1].values(), *[g for layer in grads for g in layer.values()])
    assert on_device1(ev.clean_spec.s, p4.tuned_ridge(ev.spec, 2.0, 0.5), *model.lsa.products(params[0]))
    assert len(p4.readout(model, params, ev)) == 3 and ev.noise_response(pred, model(params, ev.clean_tokens)).shape == (3,)
    exp = dataclasses.replace(p4.EXPERIMENTS["diag2"], steps=3, data=p4.noisy_data(8, p4.N, p4.D))
    assert on_device1(*[v for layer in run(exp, log=None).params for v in layer.values()])


def test_state_soup_on_device1(device1):
    model = p3.RNNRegressor(3, 1, 5, recurrence="exp")
    params = model.init(RNG(0))
    rnn = model.rnn
    tokens, _ = p1.sample(RNG(1), 6, 7, 3)
    preds = p5.split_predictions(rnn, params, tokens, n_first=3)
    assert on_device1(*preds.values())
    skills = RNG(2).normal((4, 3), host=True)
    store = p5.skill_store(rnn, params, skills, RNG(3), 5, keys=p5.memory_keys(rnn, params, 5))
    accuracy, _, retrieved = p5.retrieval_predictions(rnn, params, store, skills, RNG(4), 2, 6)
    _, mixed = p5.mixing_predictions(rnn, params, store, skills, RNG(5), 6, 5)
    assert 0 <= accuracy <= 1 and on_device1(*retrieved.values(), *mixed.values())
    assert max(p5.algebra_errors().values()) < 1e-10


def test_randomized_algorithms_on_device1(device1):
    value, grad = p8.power_mean_risk(RNG(0).uniform((5, 3)), 16.0)
    assert on_device1(value, grad, *p8.power_mean_risk(RNG(0).uniform((5, 3)), float("inf")))
    run = dataclasses.replace(p8.EXPERIMENTS["memory_q16_m16"], steps=3, n_pairs=2, n_eval=50)
    params, _ = p8.train_policy(run)
    assert on_device1(*params.values(), p8.risk(params, RNG(1).normal((4, run.d_seed)), run))
    assert 0 <= p8.policy_metrics(params, run)["worst_recall"] <= run.M / run.N


def test_associative_recall_on_device1(device1):
    from tasks import associative_recall as ar
    run = dataclasses.replace(p8.EXPERIMENTS["recall_q16_m16"], steps=3, batch=2, m=3, n_eval=50)
    model, params, _ = ar.train_recall(run)
    values, seeds = ar.binary_values(RNG(1), (2, run.N, run.d_value)), RNG(2).normal((3, run.d_seed))
    pop = {k: device1.xp.stack([v, v]) for k, v in params.items()}
    assert on_device1(*params.values(), ar.population_risk(pop, values, seeds, run.q),
                      ar.population_risk_fast(pop, values, seeds, run.q))
    assert 0 <= ar.recall_metrics(model, params, run)["worst_recall"] <= 1
