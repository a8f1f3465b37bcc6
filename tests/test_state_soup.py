"""Exact identities of the state algebra (P5, arXiv:2406.08423) on every backend, float64.

Tolerance EXACT = 1e-10 relative: both sides are the same real number computed
in a different order, so they differ by rounding only (observed ~1e-16).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.recurrent import RECURRENCES, GatedLinearRNN, scan_reference
from tinynim.random import RNG
from tasks.gated_rnn_attention import gated_rnn_from_attention, gd_gated_rnn
from tasks.icl_regression import gd_predict, sample
from tinynim.analysis import cosine_matrix
from tasks import state_soup as p5
from tasks.state_soup import (StateStore, compose, context_state, decay,
                              memory_keys, predict_from_state, soup)
from helpers import assert_close, host

EXACT = 1e-10

recurrences = st.sampled_from(RECURRENCES)
seeds = st.integers(0, 2**16)


def _model(rng, d_in, n_hidden, recurrence):
    rnn = GatedLinearRNN(d_in, n_hidden, 2, n_out_gates=3, recurrence=recurrence)
    return rnn, rnn.init(rng)


def _concat(xp, parts):
    return xp.concat(parts, axis=1)


@given(B=st.integers(1, 3), T=st.integers(1, 20), N=st.integers(1, 5), recurrence=recurrences,
       with_h0=st.booleans(), seed=seeds)
def test_context_state_is_the_recurrence(backend, B, T, N, recurrence, with_h0, seed):
    """context_state equals the last step of the plain loop h_t = λ ⊙ h_{t−1} + u_t with
    u_t = (x̃_t Wx_in) ⊙ (x̃_t Wg_in), written out here from the parameters."""
    rng = RNG(seed)
    rnn, p = _model(rng, 3, N, recurrence)
    x = rng.normal((B, T, 3))
    h0 = rng.normal((B, N)) if with_h0 else None
    xt = backend.xp.concat([x, backend.xp.ones_like(x[..., :1])], axis=-1)
    u = (xt @ p["Wx_in"]) * (xt @ p["Wg_in"])
    expected = scan_reference(rnn.decay(p), u, h0)[:, -1, :]
    assert_close(context_state(rnn, p, x, h0), expected, EXACT, "context_state vs loop")


@given(B=st.integers(1, 3), T=st.integers(1, 15), N=st.integers(1, 5), k=st.integers(1, 4),
       recurrence=recurrences, seed=seeds)
def test_final_state_is_affine_in_the_initial_state(backend, B, T, N, k, recurrence, seed):
    """h_T(h₀) = Φ ⊙ h₀ + s(c) with Φ = λ^T; hence convex mixing of k initial states gives the
    same mixture of final states; a non-convex sum is off by exactly (Σw − 1)·s(c)."""
    rng = RNG(seed)
    rnn, p = _model(rng, 3, N, recurrence)
    x = rng.normal((B, T, 3))
    h0s = [rng.normal((B, N)) for _ in range(k)]
    s = context_state(rnn, p, x)
    finals = [context_state(rnn, p, x, h0) for h0 in h0s]
    for h0, h_T in zip(h0s, finals):
        assert_close(h_T, decay(rnn, p, T) * h0 + s, EXACT, "affine in h0")
    w = rng.uniform((k,), 0.1, 1.0, host=True)
    assert_close(context_state(rnn, p, x, soup(h0s, w, kind="mean")), soup(finals, w, kind="mean"),
                 EXACT, "convex mixing of initial states")
    assert_close(context_state(rnn, p, x, soup(h0s)), soup(finals) - (k - 1) * s, EXACT, "sum of h0")


@given(lengths=st.lists(st.integers(1, 7), min_size=2, max_size=4), B=st.integers(1, 3),
       N=st.integers(1, 5), recurrence=recurrences, with_h0=st.booleans(), seed=seeds)
def test_composition_identity(backend, lengths, B, N, recurrence, with_h0, seed):
    """s(c₁∘…∘c_n) = fold of Φ(c₂)⊙s(c₁)+s(c₂) (with h₀ put first, decay 1), Φ(c₁∘c₂) = Φ₁⊙Φ₂,
    and the pair product is associative: ((1,2),3) = (1,(2,3))."""
    rng = RNG(seed)
    rnn, p = _model(rng, 3, N, recurrence)
    xp = backend.xp
    parts = [rng.normal((B, T, 3)) for T in lengths]
    states = [context_state(rnn, p, c) for c in parts]
    decays = [decay(rnn, p, T) for T in lengths]
    h0 = rng.normal((B, N)) if with_h0 else None
    if with_h0:
        states, decays = [h0] + states, [xp.ones_like(decays[0])] + decays
    s, phi = compose(states, decays)
    assert_close(s, context_state(rnn, p, _concat(xp, parts), h0), EXACT, "composed state")
    assert_close(phi * xp.ones_like(s), decay(rnn, p, sum(lengths)) * xp.ones_like(s), EXACT, "decay")
    left = compose([compose(states[:2], decays[:2])[0]] + states[2:],
                   [compose(states[:2], decays[:2])[1]] + decays[2:])
    right = compose(states[:1] + [compose(states[1:], decays[1:])[0]],
                    decays[:1] + [compose(states[1:], decays[1:])[1]])
    assert_close(left[0], right[0], EXACT, "associativity")


@given(T=st.integers(1, 10), T_q=st.integers(1, 3), recurrence=recurrences, seed=seeds)
def test_predict_from_state_resumes_the_sequence(backend, T, T_q, recurrence, seed):
    """Resuming from s(c) on the query tokens gives the last output of the full scan of c∘q."""
    rng = RNG(seed)
    rnn, p = _model(rng, 3, 4, recurrence)
    c, q = rng.normal((2, T, 3)), rng.normal((2, T_q, 3))
    full = rnn(p, _concat(backend.xp, [c, q]))[:, -1, :]
    assert_close(predict_from_state(rnn, p, context_state(rnn, p, c), q), full, EXACT, "resume")
    assert_close(predict_from_state(rnn, p, None, q), rnn(p, q)[:, -1, :], EXACT, "zero start")


@given(d=st.integers(1, 5), lengths=st.lists(st.integers(1, 8), min_size=2, max_size=4),
       eta=st.floats(0.05, 2.0), seed=seeds)
def test_sum_soup_of_lambda_one_states_is_gd_on_the_union(backend, d, lengths, eta, seed):
    """P3's 2d-neuron RNN (λ = 1 memory, λ = 0 query pass-through): the prediction from the sum
    soup of the parts' states equals one GD step on the union of the demonstrations, in any
    order; the pass-through neurons are summed too, but the query overwrites them."""
    n = sum(lengths)
    tokens, _ = sample(RNG(seed), 3, n_context=n, d=d, input_range=2.0)
    rnn, p = gd_gated_rnn(d, n, eta)
    bounds = [int(b) for b in np.cumsum([0] + lengths)]
    states = [context_state(rnn, p, tokens[:, a:b, :]) for a, b in zip(bounds[:-1], bounds[1:])]
    query = tokens[:, n:, :]
    expected = gd_predict(tokens, eta)
    assert_close(predict_from_state(rnn, p, soup(states), query), expected, EXACT, "sum soup vs GD")
    assert_close(predict_from_state(rnn, p, soup(states[::-1]), query), expected, EXACT, "order")


@given(D=st.integers(1, 4), H=st.integers(1, 2), T1=st.integers(1, 6), T2=st.integers(1, 6),
       seed=seeds)
def test_sum_soup_of_constructed_attention_rnn_is_the_concatenation(backend, D, H, T1, T2, seed):
    """The gated RNN built from a random causal LSA (arXiv:2309.01775): the output at the last token
    from S(c₁) + S(c₂) equals the LSA on c₁∘c₂∘q (λ ∈ {0, 1}, so the sum is exact)."""
    rng = RNG(seed)
    lsa = LinearSelfAttention(D, n_heads=H, causal=True, form="full")
    lsa_params = lsa.init(rng)
    rnn, p = gated_rnn_from_attention(lsa, lsa_params)
    c1, c2, q = rng.normal((2, T1, D)), rng.normal((2, T2, D)), rng.normal((2, 1, D))
    pred = predict_from_state(rnn, p, soup([context_state(rnn, p, c1), context_state(rnn, p, c2)]), q)
    assert_close(pred, lsa(lsa_params, _concat(backend.xp, [c1, c2, q]))[:, -1, :], EXACT, "LSA")


def test_soup_kinds_and_errors(f64):
    """sum: Σ w_i s_i; mean: Σ w_i s_i / Σ w_i; bad arguments raise ValueError."""
    a, b = asarray(np.array([[1.0, 2.0]])), asarray(np.array([[3.0, -4.0]]))
    np.testing.assert_array_equal(host(soup([a, b])), [[4.0, -2.0]])
    np.testing.assert_array_equal(host(soup([a, b], kind="mean")), [[2.0, -1.0]])
    np.testing.assert_array_equal(host(soup([a, b], [1.0, 3.0])), [[10.0, -10.0]])
    np.testing.assert_array_equal(host(soup([a, b], [1.0, 3.0], kind="mean")), [[2.5, -2.5]])
    for kwargs, match in [({"kind": "max"}, "kind"), ({"weights": [1.0]}, "2 states and 1 weights"),
                          ({"weights": [1.0, -1.0], "kind": "mean"}, "nonzero sum")]:
        with pytest.raises(ValueError, match=match):
            soup([a, b], **kwargs)
    with pytest.raises(ValueError, match="as many decays"):
        compose([a, b], [a])


@given(B=st.integers(1, 4), K=st.integers(1, 6), N=st.integers(2, 5), beta=st.floats(0.0, 20.0),
       seed=seeds)
def test_store_retrieves_the_most_cosine_similar_state(backend, B, K, N, beta, seed):
    """cosine_matrix equals the numpy formula (a zero row gives 0); every stored state,
    rescaled by c > 0, retrieves itself with cos = 1; nearest is the argmax of the numpy
    cosines and states_at returns those rows; mix is the softmax(β cos)-weighted average;
    with keys, the cosines are those of keys ⊙ state. (N ≥ 2: random states then point in
    distinct directions, so there are no ties.)"""
    rng = RNG(seed)
    states, queries = rng.normal((K, N), host=True), rng.normal((B, N), host=True)
    queries[0] = 0.0
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    expected = unit(queries) @ unit(states).T
    assert_close(cosine_matrix(asarray(queries), asarray(states)), expected, EXACT, "cosine")
    store = StateStore(asarray(states), labels=[f"task{k}" for k in range(K)])
    idx, cos = store.nearest(asarray(states) * 2.5)
    np.testing.assert_array_equal(host(idx), np.arange(K))
    np.testing.assert_allclose(host(cos), 1.0, rtol=EXACT)
    idx, _ = store.nearest(asarray(queries[1:]))
    best = np.argmax(expected[1:], axis=1)
    np.testing.assert_array_equal(host(idx), best)
    np.testing.assert_array_equal(host(store.states_at(idx)), states[best])
    p = np.exp(beta * (expected - expected.max(axis=1, keepdims=True)))
    assert_close(store.mix(asarray(queries), beta), (p / p.sum(axis=1, keepdims=True)) @ states,
                 EXACT, "soft retrieval")
    keys = (rng.uniform((N,), host=True) < 0.5).astype(float)
    keys[0] = 1.0
    keyed = StateStore(asarray(states), keys=asarray(keys))
    assert_close(keyed.similarity(asarray(queries)), unit(queries * keys) @ unit(states * keys).T,
                 EXACT, "keyed cosine")


def test_store_build_and_errors(f64):
    """build stores s(c_k) of each context; memory_keys marks λ^T ≥ 0.05; shapes and labels
    are checked."""
    rng = RNG(0)
    rnn, p = _model(rng, 3, 4, "sigmoid")
    contexts = rng.normal((5, 6, 3))
    store = StateStore.build(rnn, p, contexts, labels="abcde")
    assert_close(store.states, context_state(rnn, p, contexts), EXACT, "stored states")
    assert store.labels == list("abcde")
    with pytest.raises(ValueError, match=r"StateStore: expected queries of shape \(B, 4\), got shape \(2, 3\)"):
        store.nearest(rng.normal((2, 3)))
    lam = host(rnn.decay(p))
    np.testing.assert_array_equal(host(memory_keys(rnn, p, 6)), (lam ** 6 >= 0.05).astype(float))
    with pytest.raises(ValueError, match="5 states but 2 labels"):
        StateStore(store.states, labels=["a", "b"])
    with pytest.raises(ValueError, match=r"expected states of shape \(K, N\)"):
        StateStore(contexts)


def test_soup_metrics_ratios_by_hand(monkeypatch):
    """soup_metrics' ratios (the claims' metrics) from stand-in losses and accuracies with known
    values (sampling, predictions, stores and the loss replaced; rel_error 0): sum/full,
    mean/half, half/none, the mean soup against its own context and the best other mix, the
    accuracy gain from 2 to 12 shots, mixed+short over short."""
    split = {"exact": 0.0, "full": 2.0, "sum": 3.0, "mean": 5.0, "half": 4.0, "none": 8.0}
    mix = {"mean soup": 1.0, "own context": 4.0, "one skill": 5.0, "sum soup": 2.5, "none": 10.0}
    monkeypatch.setattr(p5, "sample", lambda *a, **kw: ("tokens", "targets"))
    monkeypatch.setattr(p5, "loss", lambda v, t: v)
    monkeypatch.setattr(p5, "rel_error", lambda a, b: 0.0)
    monkeypatch.setattr(p5, "split_predictions", lambda rnn, params, tokens: dict(split))
    monkeypatch.setattr(p5, "memory_keys", lambda rnn, params, T: "keys")
    monkeypatch.setattr(p5, "skill_store", lambda *a, keys=None: "keyed" if keys == "keys" else "plain")
    monkeypatch.setattr(p5, "mixing_predictions", lambda *a: ("targets", dict(mix)))
    monkeypatch.setattr(p5, "retrieval_predictions", lambda rnn, params, store, skills, rng, n, batch: (
        n / 16 if store == "keyed" else 0.0, "t", {"mixed+short": 0.5 * n, "short": 2.0 * n}))
    m = p5.soup_metrics(None, None, None, quick_mode=True)
    assert m["sum_over_full"] == 1.5 and m["mean_over_half"] == 1.25 and m["half_over_none"] == 0.5
    assert m["mean_soup_over_own"] == 0.25 and m["mean_soup_over_others"] == 0.4     # 1 / min(5, 2.5, 10)
    assert m["acc_gain"] == 12 / 16 - 2 / 16 and m["acc/12"] == 0.75 and m["acc_all/12"] == 0.0
    assert m["mixed_over_short"] == 0.25
