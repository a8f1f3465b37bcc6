"""Exact properties of the in-context learners of P7 (arXiv:2407.12275; the architectures are
our reconstruction, only the abstract is public) on every backend, float64.

Tolerances: EXACT = 1e-10 relative for identities that hold in exact arithmetic (the same
real number computed in another order: rounding only, observed ~1e-15). "No change" checks
(leakage, a prediction that must not depend on something) are exact zeros: the quantity is
never read, or is multiplied by an attention probability that is exactly 0. Inequalities
that must hold (a context that *does* change the predictions) use a floor of 1e-6, far
above rounding and far below what a generic draw gives (~1e-1).
"""
import array_api_compat
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray, namespace
from tinynim.nn import LinearSelfAttention
from tinynim.random import RNG
from tasks import compositional_icl as ci
from tasks.compositional_icl import (BottleneckICL, ENCODERS, EXPERIMENTS, ICLTransformer, construction_errors,
                                     context_mask, episode_grad, episode_tokens, evaluation_set, held_out, leakage,
                                     lsa_as_hypernetwork, r2, sample_episodes, second_moment_code, support)
from helpers import assert_close, assert_gradients, host

EXACT = 1e-10
CHANGES = 1e-6
seeds = st.integers(0, 2**16)


def _bottleneck(encoder, n=3, o=2):
    return BottleneckICL(n, o, d_z=3, width=5, encoder=encoder, activation="tanh", d_model=4, n_layers=2,
                         n_heads=2, d_mlp=6)


def _transformer(n=3, o=2):
    return ICLTransformer(n, o, d_model=4, n_layers=2, n_heads=2, d_mlp=6)


def _take_rows(a, order):
    xp = namespace(a)
    return xp.take(a, xp.asarray(np.asarray(order), dtype=xp.int64, device=array_api_compat.device(a)), axis=1)


@pytest.mark.parametrize("encoder", ENCODERS)
@given(N=st.integers(1, 6), Nq=st.integers(1, 4), seed=seeds)
def test_same_code_same_predictions(backend, encoder, N, Nq, seed):
    """Bottleneck invariance: two different contexts, A and A repeated twice (2N pairs), give
    the same ẑ (a mean, and a softmax over duplicated keys, cannot tell them apart), hence
    identical predictions on every query, equal to g(x_q; ẑ) with ẑ set by hand; a redrawn
    context gives another ẑ and other predictions (the check can fail)."""
    rng = RNG(seed)
    model = _bottleneck(encoder)
    p = model.init(rng)
    ep = rng.normal((2, N + Nq, 5))
    xp = namespace(ep)
    twice = xp.concat([ep[:, :N, :], ep], axis=1)                                     # 2N context rows
    z = model.encode(p, ep, N)
    assert_close(model.encode(p, twice, 2 * N), z, EXACT, "ẑ(A ∪ A) vs ẑ(A)")
    pred = model(p, ep, n_context=N)
    assert_close(model(p, twice, n_context=2 * N), pred, EXACT, "predictions")
    assert_close(model.execute(p["execute"], (ep[:, N:, :3], z)), pred, EXACT, "g(x_q; ẑ by hand)")
    other = xp.concat([rng.normal((2, N, 5)), ep[:, N:, :]], axis=1)
    assert np.max(np.abs(host(model(p, other, n_context=N)) - host(pred))) > CHANGES


@pytest.mark.parametrize("make", [lambda: _bottleneck("deepsets"), lambda: _bottleneck("transformer"), _transformer],
                         ids=["deepsets", "cls_transformer", "monolithic"])
@given(N=st.integers(2, 7), seed=seeds)
def test_context_order_does_not_matter(backend, make, N, seed):
    """No positional encoding: permuting the context rows leaves every prediction unchanged
    (and the encoders' ẑ, for the bottleneck models)."""
    rng = RNG(seed)
    model = make()
    p = model.init(rng)
    ep = rng.normal((2, N + 3, 5))
    order = list(np.random.default_rng(seed).permutation(N)) + list(range(N, N + 3))
    shuffled = _take_rows(ep, order)
    assert_close(model(p, shuffled, n_context=N), model(p, ep, n_context=N), EXACT, "predictions")
    if isinstance(model, BottleneckICL):
        assert_close(model.encode(p, shuffled, N), model.encode(p, ep, N), EXACT, "ẑ")


@given(D=st.integers(1, 5), N=st.integers(1, 8), H=st.integers(1, 3), form=st.sampled_from(["full", "merged"]),
       seed=seeds)
def test_linear_attention_is_a_linear_hypernetwork_of_the_second_moment(backend, D, N, H, form, seed):
    """Spec test 2 (a guard on the implementation; true by associativity): LSA read out at
    the query = HyperLinear(D², D, D) applied to ẑ = vec((1/N) Σ_i t_i t_iᵀ); and that
    hypernetwork is linear in ẑ."""
    rng = RNG(seed)
    lsa = LinearSelfAttention(D, H, form=form, init_std=0.7)
    p = lsa.init(rng)
    tokens = rng.normal((3, N + 1, D))
    out, _ = lsa.forward(p, tokens, n_context=N, last_only=True)
    hyper, hp = lsa_as_hypernetwork(lsa, p, N)
    z = second_moment_code(tokens, N)
    tq = tokens[:, N:, :]
    assert_close(hyper(hp, (tq, z)), out, EXACT, "hypernetwork vs attention")
    z2 = rng.normal(tuple(z.shape))
    assert_close(hyper(hp, (tq, 2.0 * z - 3.0 * z2)), 2.0 * hyper(hp, (tq, z)) - 3.0 * hyper(hp, (tq, z2)),
                 EXACT, "linearity in ẑ")


def test_second_moment_code_is_the_mean_outer_product(f64):
    """ẑ against an explicit loop over the context tokens (numpy oracle)."""
    t = RNG(3).normal((2, 5, 3))
    z = host(second_moment_code(t, 4)).reshape(2, 3, 3)
    T = host(t)
    for b in range(2):
        assert np.allclose(z[b], sum(np.outer(T[b, i], T[b, i]) for i in range(4)) / 4, rtol=0, atol=1e-14)


@pytest.mark.parametrize("make", [lambda: _bottleneck("deepsets"), lambda: _bottleneck("transformer"), _transformer],
                         ids=["deepsets", "cls_transformer", "monolithic"])
@given(N=st.integers(1, 5), Nq=st.integers(1, 4), seed=seeds)
def test_no_leakage(backend, make, N, Nq, seed):
    """Redrawing the queries' targets and every other query changes no query's prediction
    (exactly); the gradient reaching the query targets is exactly 0; changing the context
    does change the predictions (so leakage() can see a dependence)."""
    rng = RNG(seed)
    model = make()
    p = model.init(rng)
    ep = rng.normal((2, N + Nq, 5))
    assert leakage(model, p, ep, N, rng) == 0.0
    pred, cache = model.forward(p, ep, n_context=N)
    dep, _ = model.backward(p, cache, rng.normal(tuple(pred.shape)))
    assert np.all(host(dep)[:, N:, 3:] == 0.0)
    xp = namespace(ep)
    other = xp.concat([ep[:, :N, :] + 1.0, ep[:, N:, :]], axis=1)
    assert np.max(np.abs(host(model(p, other, n_context=N)) - host(pred))) > CHANGES


def test_context_mask_lets_every_token_see_the_context_only(f64):
    m = host(context_mask(namespace(asarray([0.0])), 5, 2, "cpu"))
    assert m.shape == (5, 5) and m[:, :2].all() and not m[:, 2:].any()


@given(N=st.integers(1, 5), Nq=st.integers(1, 3), seed=seeds)
def test_episode_grad_is_the_adjoint_of_episode_tokens(backend, N, Nq, seed):
    """⟨tokens(e₁) − tokens(e₀), G⟩ = ⟨e₁ − e₀, episode_grad(G)⟩ (tokens is affine: its
    constant 1 slots cancel in the difference); query rows are [x; 0; 0]."""
    rng = RNG(seed)
    e0, e1 = rng.normal((2, N + Nq, 4)), rng.normal((2, N + Nq, 4))
    G = rng.normal((2, N + Nq, 5))
    xp = namespace(G)
    lhs = xp.sum((episode_tokens(e1, N, 3) - episode_tokens(e0, N, 3)) * G)
    rhs = xp.sum((e1 - e0) * episode_grad(G, N, 3))
    assert abs(float(lhs) - float(rhs)) <= EXACT * (1.0 + abs(float(lhs)))
    t = host(episode_tokens(e0, N, 3))
    assert np.all(t[:, :N, 4] == 1.0) and np.all(t[:, N:, 3:] == 0.0)
    assert np.array_equal(t[:, :N, :4], host(e0)[:, :N]) and np.array_equal(t[:, N:, :3], host(e0)[:, N:, :3])


@pytest.mark.parametrize("make, N", [(lambda: _transformer(2, 1), 2), (lambda: _bottleneck("deepsets", 2, 3), 4),
                                     (lambda: _bottleneck("transformer", 2, 1), 1)],
                         ids=["monolithic", "deepsets", "cls_transformer"])
def test_gradients_end_to_end(f64, make, N):
    """Both models' hand-chained backward (params and episode) vs central differences and
    torch autograd on the same forward (smooth activations: no kink tolerance)."""
    model = make()
    ep = RNG(5).normal((2, N + 3, model.n_in + model.n_out))
    assert_gradients(model, model.init(RNG(6)), ep, {"n_context": N})


def test_relu_execution_gradients(f64):
    """The trained configuration (ReLU execution network, as the teacher); inputs drawn so
    that no pre-activation is near a kink at this seed (FD eps 1e-6)."""
    model = BottleneckICL(3, 2, d_z=3, width=5)
    ep = RNG(8).normal((2, 7, 5))
    assert_gradients(model, model.init(RNG(9)), ep, {"n_context": 4}, fd_tol=1e-4)


@pytest.mark.parametrize("make", [_transformer, lambda: _bottleneck("deepsets")], ids=["monolithic", "bottleneck"])
def test_bad_episodes_are_clear_errors(f64, make):
    model = make()
    p = model.init(RNG(0))
    ep = RNG(0).normal((2, 5, 5))
    for N in (0, 5, 2.0, None):
        with pytest.raises(ValueError, match=rf"{model.name}: n_context must be an int in \[1, T − 1\] = \[1, 4\]"):
            model(p, ep, n_context=N)
    with pytest.raises(ValueError, match=rf"{model.name}: expected episode of shape \(\.\.\., 5\), got shape \(2, 5, 4\)"):
        model(p, ep[..., :4], n_context=2)
    with pytest.raises(ValueError, match="BottleneckICL: encoder must be one of"):
        BottleneckICL(3, 2, encoder="lstm")


def test_r2_of_truth_and_of_the_mean(f64):
    y = RNG(1).normal((4, 3, 2))
    xp = namespace(y)
    assert r2(y, y) == 1.0
    assert abs(r2(xp.zeros_like(y) + xp.mean(y), y)) <= EXACT


def test_episodes_follow_the_support(f64):
    """ID codes use the ring's pairs, OOD codes the held-out pairs only; the targets in an
    episode are the teacher's outputs at its inputs."""
    exp = EXPERIMENTS["bottleneck"]
    ev = evaluation_set(exp, quick_mode=True)
    net, tp = ev["teacher"]
    ring = {tuple(np.flatnonzero(b)) for b in support("ring")}
    ood = {tuple(np.flatnonzero(b)) for b in held_out(support("ring"))}
    for name, allowed in (("id", ring), ("ood", ood)):
        episode, z = ev[name]
        assert {tuple(np.flatnonzero(c)) for c in z} <= allowed
        y = net(tp, (episode[..., :exp.n], asarray(z)))
        assert np.array_equal(host(y), host(episode)[..., exp.n:])
    assert not ring & ood and len(ring | ood) == 15


def test_construction_errors_are_rounding(f64):
    """The exact claims' measurement: every error is rounding or exactly 0."""
    errors = construction_errors(0)
    assert set(errors) >= {"expressivity", "order_deepsets", "order_transformer", "bottleneck",
                           "leakage_transformer", "leakage_bottleneck"}
    assert all(v <= EXACT for v in errors.values()), errors


def test_sample_episodes_shapes(f64):
    exp = EXPERIMENTS["transformer"]
    t = evaluation_set(exp, quick_mode=True)["teacher"]
    ep, z = sample_episodes(RNG(0), t, support("ring"), 5, 3, 2)
    assert tuple(ep.shape) == (5, 5, exp.n + exp.o) and z.shape == (5, 6)


def test_training_curves_are_the_r2_of_the_current_parameters(f64, monkeypatch):
    """train(eval_every=…) records id_r2 / ood_r2: R² = 1 − Σ (ŷ − y)² / Σ (y − ȳ)² of the
    parameters handed to the curve on the fixed ID / OOD evaluation episodes, recomputed here
    in numpy (fit replaced by a stand-in that calls the curve once on the initial parameters)."""
    exp = ci.ICLExperiment(M=6, n=2, h=3, o=1, n_context=3, n_query=2, d_model=4, n_layers=1, n_heads=1, d_mlp=4,
                           batch=2, steps=1)
    seen = {}

    def fake_fit(loss_and_grads, params, opt, *, eval_fn, eval_every, **kw):
        seen.update(params=params, curve=eval_fn(params, 1), every=eval_every)
        return params, {}
    monkeypatch.setattr(ci, "fit", fake_fit)
    model, _, _, ev = ci.train(exp, quick_mode=True, eval_every=1)
    assert seen["every"] == 1 and set(seen["curve"]) == {"id_r2", "ood_r2"}
    for name in ("id", "ood"):
        episode = ev[name][0]
        y = host(episode)[:, exp.n_context:, exp.n:]
        pred = host(model(seen["params"], episode, n_context=exp.n_context))
        expected = 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)
        assert seen["curve"][f"{name}_r2"] == pytest.approx(expected, rel=1e-12), name


def test_measure_comparison_trains_both_compared_models(f64, monkeypatch):
    """measure("comparison") = every metric of each COMPARED model's own measure, prefixed by
    the model's name, and ood_gap = bottleneck OOD R² − transformer OOD R² (the single-model
    measurements replaced by stand-ins with known values)."""
    real = ci.measure
    fake = {"transformer": {"id_r2": 0.9, "ood_r2": 0.25}, "bottleneck": {"id_r2": 0.8, "ood_r2": 0.75}}
    calls = []

    def stand_in(name, *, quick_mode=None, log=None, seed_offset=0):
        calls.append((name, seed_offset))
        return dict(fake[name])
    monkeypatch.setattr(ci, "measure", stand_in)
    out = real("comparison", seed_offset=2)
    assert sorted(calls) == [("bottleneck", 2), ("transformer", 2)]
    assert out == {"transformer_id_r2": 0.9, "transformer_ood_r2": 0.25, "bottleneck_id_r2": 0.8,
                   "bottleneck_ood_r2": 0.75, "ood_gap": pytest.approx(0.5, abs=1e-15)}
