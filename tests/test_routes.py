"""Alternative code routes, each selected explicitly and compared with the plain path or an
independent formula (not left to what Hypothesis happens to draw). With the fast/plain
route tests beside each layer (tests/test_linear_attention.py::test_fast_path_equals_plain_path
for every LSA route, tests/test_recurrent.py::test_fast_last_only_equals_plain), this covers:

* SoftmaxAttention: the unmasked path vs the masked path, at logits large enough to
  overflow an exp without the max subtraction;
* GatedLinearRNN: each recurrence (λ by formula, gradients on every option), and the
  parallel scan vs the loop scan inside the layer, forward and backward;
* optimisers: every combination of clip_value, clip_norm, momentum and weight decay
  against a by-hand numpy implementation of the documented update.

Tolerances: 1e-12 relative where both sides compute the same real numbers in float64 in a
different order (observed ≲ 1e-15); gradient checks use tests/helpers.py.
"""
import math

import numpy as np
import pytest

from tinynim.backend import asarray
from tinynim.gradcheck import cotangent
from tinynim.nn.attention import SoftmaxAttention
from tinynim.nn.recurrent import GatedLinearRNN, RECURRENCES
from tinynim.optim import SGD, Adam
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

SAME = 1e-12


# -- softmax attention -------------------------------------------------------------------

def softmax_attention_reference(p, x, H):
    """Independent numpy: per head P = softmax(q kᵀ/√d) (max-subtracted); also max |logit|."""
    x, p = host(x), {k: host(v) for k, v in p.items()}
    B, T, D = x.shape
    d = D // H
    heads = lambda W: (x @ W).reshape(B, T, H, d).transpose(0, 2, 1, 3)
    q, k, v = heads(p["Wq"]), heads(p["Wk"]), heads(p["Wv"])
    S = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    E = np.exp(S - S.max(-1, keepdims=True))
    O = (E / E.sum(-1, keepdims=True)) @ v
    return O.transpose(0, 2, 1, 3).reshape(B, T, D) @ p["Wo"], np.abs(S).max()


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_softmax_unmasked_fast_path_equals_masked_path(backend, scale):
    """causal=False, no mask (the fast path) vs an all-True mask (the masked path), at normal
    and at huge logits (|S| ~ 1e4 at scale 1e3: exp overflows without the max subtraction,
    and the RuntimeWarning is an error in this suite). Outputs equal the independent numpy
    softmax; outputs and every gradient agree between the two paths and are finite."""
    layer = SoftmaxAttention(4, 2)
    rng = RNG(11)
    params, x = layer.init(rng), rng.normal((2, 5, 4))
    params = {**params, "Wq": params["Wq"] * scale, "Wk": params["Wk"] * scale}
    fast, fcache = layer.forward(params, x)
    masked, mcache = layer.forward(params, x, mask=asarray(np.ones((5, 5), dtype=bool)))
    ref, max_logit = softmax_attention_reference(params, x, 2)
    assert scale == 1.0 or max_logit > 1000                  # exp(1000) overflows float64
    assert_close(fast, ref, 1e-10, "unmasked fast path vs numpy")
    assert_close(fast, masked, SAME, "unmasked vs all-True mask")
    R = asarray(cotangent(fast))
    (dx_f, g_f), (dx_m, g_m) = layer.backward(params, fcache, R), layer.backward(params, mcache, R)
    for a, b, name in [(dx_f, dx_m, "dx")] + [(g_f[k], g_m[k], k) for k in g_f]:
        assert np.all(np.isfinite(host(a))), name
        assert_close(a, b, SAME, f"{name}: fast vs masked path")
    if scale == 1.0:
        assert_gradients(layer, params, x)


# -- gated linear RNN --------------------------------------------------------------------

def _rnn(recurrence="sigmoid", scan="loop"):
    return GatedLinearRNN(2, 3, 2, n_out_gates=4, recurrence=recurrence, scan=scan)


@pytest.mark.parametrize("recurrence", RECURRENCES)
def test_each_recurrence_decay_and_gradients(backend, recurrence):
    """λ from the stored parameter by the documented formula (numpy, independent), and the
    gradient through it (dν = dλ λ(1 − λ), −dλ eˣ λ, or dλ) checked on every route."""
    layer = _rnn(recurrence)
    rng = RNG(2)
    params = layer.init(rng)
    nu = host(params[layer.decay_key])
    want = {"sigmoid": 1 / (1 + np.exp(-nu)), "exp": np.exp(-np.exp(nu)), "direct": nu}[recurrence]
    assert_close(layer.decay(params), want, 1e-14, f"λ of {recurrence}")
    x, h0 = rng.normal((2, 5, 2)), rng.normal((2, 3))
    for kw in ({}, {"return_state": True}, {"last_only": True}, {"last_only": True, "return_state": True}):
        assert_gradients(layer, params, (x, h0), kw)


@pytest.mark.parametrize("T", [1, 2, 5, 8, 13])
def test_parallel_scan_layer_equals_loop_layer(backend, T):
    """The same layer with scan="parallel" and scan="loop": outputs, final state, dx, dh0 and
    every parameter gradient agree (T a power of two and not)."""
    rng = RNG(T)
    loop, par = _rnn(scan="loop"), _rnn(scan="parallel")
    params = loop.init(rng)
    x = (rng.normal((2, T, 2)), rng.normal((2, 3)))
    (out_l, h_l), cl = loop.forward(params, x, return_state=True)
    (out_p, h_p), cp = par.forward(params, x, return_state=True)
    assert_close(out_p, out_l, SAME, "outputs")
    assert_close(h_p, h_l, SAME, "final state")
    dout = (rng.normal((2, T, 2)), rng.normal((2, 3)))
    (dx_l, dh0_l), g_l = loop.backward(params, cl, dout)
    (dx_p, dh0_p), g_p = par.backward(params, cp, dout)
    assert_close(dx_p, dx_l, SAME, "dx")
    assert_close(dh0_p, dh0_l, SAME, "dh0")
    for key in g_l:
        assert_close(g_p[key], g_l[key], SAME, f"d{key}")


# -- optimisers: clipping, momentum, weight decay -----------------------------------------

def by_hand(kind, grads_seq, p0, *, lr, clip_value, clip_norm, momentum=0.0, wd=0.0,
            b1=0.9, b2=0.999, eps=1e-8):
    """The documented update in plain numpy on one flat vector: clip element-wise to
    ±clip_value, then rescale to global norm ≤ clip_norm, then SGD(momentum) or AdamW."""
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads_seq, start=1):
        if clip_value is not None:
            g = np.minimum(np.maximum(g, -clip_value), clip_value)
        if clip_norm is not None and np.linalg.norm(g) > clip_norm:
            g = g * (clip_norm / np.linalg.norm(g))
        if kind == "sgd":
            m = momentum * m + g
            p = p - lr * m
        else:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p * (1 - lr * wd) - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


OPTIMISERS = {"sgd": dict(momentum=0.0), "sgd_momentum": dict(momentum=0.9),
              "adam": dict(wd=0.0), "adamw": dict(wd=0.05)}


@pytest.mark.parametrize("clip_norm", [None, 0.7])
@pytest.mark.parametrize("clip_value", [None, 0.3])
@pytest.mark.parametrize("name", OPTIMISERS)
def test_optimiser_options_against_hand_formula(backend, name, clip_value, clip_norm):
    """Five steps on a two-leaf tree whose gradients make both clippings bind (entries up to
    ±3, norm ≈ 5): the result equals the by-hand update of the flattened vector."""
    rng = np.random.default_rng(7)
    shapes = {"W": (3, 2), "b": (4,)}
    sizes = [int(np.prod(s)) for s in shapes.values()]
    p0 = rng.standard_normal(sum(sizes))
    grads_seq = [1.5 * rng.standard_normal(sum(sizes)) for _ in range(5)]
    if clip_value is not None:                     # both clippings change the gradient
        assert all(np.abs(g).max() > clip_value for g in grads_seq)
    if clip_norm is not None:
        clipped = grads_seq if clip_value is None else [np.clip(g, -clip_value, clip_value) for g in grads_seq]
        assert all(np.linalg.norm(g) > clip_norm for g in clipped)

    def tree(flat):
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        return {k: asarray(a.reshape(s)) for (k, s), a in zip(shapes.items(), parts)}

    opts = OPTIMISERS[name]
    kind = "sgd" if name.startswith("sgd") else "adam"
    if kind == "sgd":
        opt = SGD(0.1, opts["momentum"], clip_norm=clip_norm, clip_value=clip_value)
    else:
        opt = Adam(0.1, weight_decay=opts["wd"], clip_norm=clip_norm, clip_value=clip_value)
    params = tree(p0)
    state = opt.init(params)
    for g in grads_seq:
        params, state = opt.update(tree(g), state, params)
    ours = np.concatenate([host(params[k]).ravel() for k in shapes])
    want = by_hand(kind, grads_seq, p0, lr=0.1, clip_value=clip_value, clip_norm=clip_norm, **opts)
    assert_close(ours, want, SAME, f"{name} clip_value={clip_value} clip_norm={clip_norm}")
