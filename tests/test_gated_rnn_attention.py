"""Exact properties of the P3 constructions (arXiv:2309.01775; float64, every backend)."""
import numpy as np
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
