"""Gated recurrent networks discover attention (Zucchet et al. 2023; spec
../shared/papers/linear_icl.md §4): a :class:`~tinynim.nn.recurrent.GatedLinearRNN`
with λ ∈ {0, 1} implements causal linear self-attention exactly.

Causal LSA, one head, row convention (q_t = x_t Wq, k_s = x_s Wk, v_s = x_s Wv)::

    out_t = Σ_s≤t (q_t · k_s) v_s Wp = Σ_a (Σ_b S_t[a, b] q_t[b]) Wp[a],   S_t = Σ_s≤t v_sᵀ k_s

The gated RNN (x̃_t = (x_t, 1)) stores S_t and passes q_t through:

    KV neurons (a, b), λ = 1:     input gates  x̃ Wx_in = v_a,  x̃ Wg_in = k_b   ->  h = S_t[a, b]
    query neurons b,   λ = 0:     input gates  x̃ Wx_in = q_b,  x̃ Wg_in = 1     ->  h = q_t[b]
    output gate (a, b):           (h Wx_out) = S_t[a, b],  (h Wg_out) = q_t[b]   ->  z = S_t[a, b] q_t[b]
    readout:                      D[(a, b)] = Wp[a]                              ->  out_t

d_v·d_k + d_k recurrent neurons and d_v·d_k output gates per head (heads side by side).
The readout comes after the state update at t: attention is causal *including* t.

In-context regression (tokens (x_i, y_i), query (x_q, 0), spec §1.1) needs far fewer: one
GD step from W = 0 predicts ŷ = (η/N) Σ_i y_i x_iᵀ x_q, so d·d_out neurons store Σ_i x_i y_iᵀ
(λ = 1; the query adds nothing since its y is 0), d neurons pass x_q (λ = 0), and d·d_out
output gates with D = η/N give ŷ: 2d neurons for d_out = 1.
"""
from __future__ import annotations

import numpy as np

from tinynim.backend import asarray, namespace, to_numpy
from tinynim.losses import mse
from tinynim.nn.base import Layer
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.optim import Adam, cosine
from tinynim.random import RNG, as_rng
from tinynim.train import fit, supervised
from tasks.icl_regression import alignment, gd_sensitivity, sample, sensitivity


def _lsa_heads(lsa, params):
    """Host (Wq, Wk, Wv, Wp) stacks (H, D, k), (H, k, D) of a full- or merged-form LSA
    (merged: q = x Q, k = v = x, Wp = P, i.e. Wk = Wv = I)."""
    if not lsa.causal:
        raise ValueError("gated_rnn_from_attention: the LSA must be causal (causal=True)")
    if lsa.form == "full":
        return tuple(to_numpy(params[k]) for k in ("Wq", "Wk", "Wv", "Wp"))
    Q, P = to_numpy(params["Q"]), to_numpy(params["P"])
    eye = np.broadcast_to(np.eye(lsa.d_model), Q.shape)
    return Q, eye, eye, P


def gated_rnn_from_attention(lsa, lsa_params, *, dtype=None, backend=None):
    """(rnn, rnn_params) with rnn(params, x) == lsa(lsa_params, x) for every x (B, T, D).

    `lsa` is a causal ``LinearSelfAttention`` (any number of heads, either form), used with
    the default n_context (every token is a key). The RNN uses ``recurrence="direct"`` to
    hold λ exactly 0 or 1; sizes per head as in the module docstring.
    """
    Wq, Wk, Wv, Wp = _lsa_heads(lsa, lsa_params)
    H, D, dk = Wq.shape
    dv = Wv.shape[2]
    n_kv, n_q = dv * dk, dk                                  # per head
    N, M = H * (n_kv + n_q), H * n_kv
    Wx_in, Wg_in = np.zeros((D + 1, N)), np.zeros((D + 1, N))
    Wx_out, Wg_out, Dout = np.zeros((N, M)), np.zeros((N, M)), np.zeros((M, D))
    lam = np.zeros(N)
    for h in range(H):
        kv0, q0, g0 = h * (n_kv + n_q), h * (n_kv + n_q) + n_kv, h * n_kv
        for a in range(dv):
            for b in range(dk):
                n, m = kv0 + a * dk + b, g0 + a * dk + b     # KV neuron and output gate (a, b)
                Wx_in[:D, n], Wg_in[:D, n], lam[n] = Wv[h, :, a], Wk[h, :, b], 1.0
                Wx_out[n, m], Wg_out[q0 + b, m] = 1.0, 1.0
                Dout[m] = Wp[h, a]
        for b in range(dk):
            Wx_in[:D, q0 + b], Wg_in[D, q0 + b] = Wq[h, :, b], 1.0   # q_b ⊙ 1, λ = 0
    rnn = GatedLinearRNN(D, N, D, n_out_gates=M, recurrence="direct")
    host = {"Wx_in": Wx_in, "Wg_in": Wg_in, "lam": lam, "Wx_out": Wx_out, "Wg_out": Wg_out, "D": Dout}
    return rnn, {k: asarray(v, dtype, backend) for k, v in host.items()}


def gd_gated_rnn(d, n_context, eta, *, d_out=1, dtype=None, backend=None):
    """(rnn, params): a 2d-neuron (d_out = 1) gated RNN whose last output is one GD step.

    On tokens (x_i, y_i), query (x_q, 0), its output at the query is
    ŷ = (η/N) Σ_i y_i x_iᵀ x_q = :func:`tasks.icl_regression.gd_predict` (W₀ = 0).
    Neurons: (j, o) stores Σ_i x_ij y_io (λ = 1), then j passes x_qj through (λ = 0).
    """
    D, n_kv = d + d_out, d * d_out
    N = n_kv + d
    Wx_in, Wg_in = np.zeros((D + 1, N)), np.zeros((D + 1, N))
    Wx_out, Wg_out, Dout = np.zeros((N, n_kv)), np.zeros((N, n_kv)), np.zeros((n_kv, d_out))
    lam = np.concatenate([np.ones(n_kv), np.zeros(d)])
    for j in range(d):
        Wx_in[j, n_kv + j], Wg_in[D, n_kv + j] = 1.0, 1.0          # x_j ⊙ 1
        for o in range(d_out):
            n = j * d_out + o
            Wx_in[j, n], Wg_in[d + o, n] = 1.0, 1.0                  # x_j ⊙ y_o
            Wx_out[n, n], Wg_out[n_kv + j, n] = 1.0, 1.0             # S[j, o] ⊙ x_qj
            Dout[n, o] = eta / n_context
    rnn = GatedLinearRNN(D, N, d_out, n_out_gates=n_kv, recurrence="direct")
    host = {"Wx_in": Wx_in, "Wg_in": Wg_in, "lam": lam, "Wx_out": Wx_out, "Wg_out": Wg_out, "D": Dout}
    return rnn, {k: asarray(v, dtype, backend) for k, v in host.items()}


class RNNRegressor(Layer):
    """A gated RNN read at the query: forward(params, tokens (B, N+1, d+d_out)) -> ŷ (B, d_out).

    The interface of :class:`tasks.icl_regression.LinearTransformer` (attributes d, d_out), so
    :func:`tasks.icl_regression.sensitivity` and ``alignment`` apply. Only the last output is
    computed (``last_only``: no scan, output gating at one step).
    """

    def __init__(self, d, d_out=1, n_hidden=32, *, n_out_gates=None, recurrence="sigmoid", rnn=None):
        self.d, self.d_out = d, d_out
        self.rnn = rnn or GatedLinearRNN(d + d_out, n_hidden, d_out, n_out_gates=n_out_gates,
                                         recurrence=recurrence)

    def init(self, rng, *, dtype=None, backend=None):
        return self.rnn.init(rng, dtype=dtype, backend=backend)

    def forward(self, params, tokens):
        return self.rnn.forward(params, tokens, last_only=True)

    def backward(self, params, cache, dpred):
        return self.rnn.backward(params, cache, dpred)

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"default": (RNNRegressor(3, 2, 5, n_out_gates=4), sample(rng, 2, n_context=4, d=3, d_out=2)[0], {})}


def gd_alignment(model, params, tokens, eta):
    """``tasks.icl_regression.alignment`` of `model` with one GD step (η): the cosine of the
    sensitivities ∂ŷ/∂x_q, "model diff" and "preds diff", averaged over the tasks."""
    pred, J = sensitivity(model, params, tokens)
    return alignment(pred, J, *gd_sensitivity(tokens, eta, d_out=model.d_out))


# -- training: in-context regression and an LSA teacher ----------------------------------

def _train(model, params, data, *, steps, lr, log_every, log):
    """Adam with a cosine decay from `lr` to lr/20 over `steps` (tinynim.train.fit)."""
    return fit(supervised(model), params, Adam(cosine(lr, steps, lr / 20)), steps=steps,
               data=data, log_every=log_every, log=log)


def train_icl(model, params, *, steps=3000, lr=3e-3, batch=256, n_context=12, input_range=2.0,
              seed=0, log_every=0, log=print):
    """Train a regressor on fresh in-context regression tasks each step -> (params, history)."""
    rng = RNG(seed)
    data = lambda step: sample(rng, batch, n_context=n_context, d=model.d, d_out=model.d_out,
                               input_range=input_range)
    return _train(model, params, data, steps=steps, lr=lr, log_every=log_every, log=log)


def lsa_teacher(d_model, d_key, T, *, n_heads=1, seed=0, dtype=None):
    """(lsa, params): a random causal LSA whose output has mean square 1 on x ~ N(0, I)
    sequences of length T (its Wp rescaled on 4096 probe sequences)."""
    lsa = LinearSelfAttention(d_model, n_heads, d_key, causal=True)
    params = lsa.init(RNG(seed), dtype=dtype)
    out = to_numpy(lsa(params, RNG(seed + 1).normal((4096, T, d_model), dtype=dtype)))
    return lsa, {**params, "Wp": params["Wp"] / float(np.sqrt(np.mean(out ** 2)))}


def train_student(student, params, teacher, teacher_params, *, T, steps=6000, lr=1e-2, batch=128,
                  seed=0, log_every=0, log=print):
    """Fit the student's outputs at every step to the teacher's on x ~ N(0, I) sequences."""
    rng = RNG(seed)

    def data(step):
        x = rng.normal((batch, T, student.d_in))
        return x, teacher(teacher_params, x)
    return _train(student, params, data, steps=steps, lr=lr, log_every=log_every, log=log)


def ablation(model, params, x, target):
    """Loss increase when recurrent neuron n is silenced (its input gate column set to 0),
    for every n: which neurons the output relies on.                           (N,) host"""
    base = float(mse(model(params, x), target)[0])
    W = params["Wx_in"]
    xp = namespace(W)
    rises = []
    for n in range(W.shape[1]):
        keep = xp.astype(xp.arange(W.shape[1]) != n, W.dtype)       # 0 at neuron n
        rises.append(float(mse(model({**params, "Wx_in": W * keep}, x), target)[0]) - base)
    return np.array(rises)
