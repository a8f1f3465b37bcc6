"""Trained gated RNNs land on the attention / GD solutions (spec §4.4–4.5). Fixed seeds,
numpy float32; each ≈ 5 s on 2 idle cores (single-threaded BLAS: see the report)."""
import numpy as np
import pytest

from tinynim.backend import to_numpy, use_backend
from tinynim.losses import mse
from tinynim.nn.recurrent import GatedLinearRNN
from tinynim.random import RNG
from tasks.gated_rnn_attention import (RNNRegressor, ablation, gd_alignment, lsa_teacher,
                                       train_icl, train_student)
from tasks.icl_regression import loss, sample, tune_gd

pytestmark = pytest.mark.slow


def test_trained_gated_rnn_matches_one_step_gd():
    """d = 4, N = 12, x ~ U(−1, 1), 32 neurons and output gates, σ(ν) decays; Adam 3e-3 with
    cosine decay, batch 256, 3000 steps. On the same 20k evaluation tasks:

    * loss ≤ 1.10 × tuned one-step GD (the spec's bound; observed 1.038–1.041 over seeds
      0–2; the spec reports 0.166 vs 0.159 = 1.044 after 6k constant-lr steps);
    * loss ≤ 0.3 × the zero predictor's (it learned in context, not the prior);
    * cosine of ∂ŷ/∂x_q with GD's W ≥ 0.98 (observed 0.992–0.995): the RNN computes the
      same function of the query, not just a similar loss. Not 0.999 as for P1's LSA: the
      RNN is still 4 % worse than GD, and a GD-like model with a slightly different step
      would also score ≥ 0.99, so 0.98 leaves room for seed noise while failing any model
      that does not predict linearly in x_q along W (a random direction scores ≈ 0).
    20k tasks: two independent 10k sets differ by ~4 % in GD loss (spec §1.3), so compare
    on one set."""
    with use_backend("numpy", dtype="float32"):
        tokens, targets = sample(RNG(1000), 20000, n_context=12, d=4, input_range=2.0)
        hp, gd_loss = tune_gd(tokens, targets)
        model = RNNRegressor(4, 1, 32)
        params, _ = train_icl(model, model.init(RNG(0)), steps=3000, lr=3e-3, seed=1, log=None)
        rnn_loss = loss(model(params, tokens), targets)
        zero_loss = loss(0 * targets, targets)
        cos = gd_alignment(model, params, tokens, hp["eta"])["cosine"]
    assert rnn_loss <= 1.10 * gd_loss, (rnn_loss, gd_loss)
    assert rnn_loss <= 0.3 * zero_loss, (rnn_loss, zero_loss)
    assert cos >= 0.98, cos


def test_student_with_twice_the_construction_learns_lsa_teacher():
    """Teacher: causal LSA, D = 3, d_k = d_v = 2 (construction: 6 neurons, 4 output gates),
    output scaled to mean square 1, sequences of T = 8 Gaussian tokens. Student: 2× that
    (12 neurons, 8 gates), exp(−exp(ν)) decays; Adam 1e-2 cosine, batch 128, 6000 steps.

    * loss ≤ 1e-3 × the zero predictor's ("near zero"; observed 3e-5–1e-4 over seeds 0–3,
      while a 1× student stays at 6e-4–3e-3);
    * every neuron the output relies on (silencing it raises the loss by ≥ 5 % of the zero
      predictor's) has λ < 0.1 or λ > 0.85: perfect-forget or near-perfect-memory units,
      as in the paper. Observed: such neurons have λ ≤ 0.035 or ≥ 0.89 in 3 runs, while
      neurons with intermediate λ (0.12–0.81) raise the loss by ≤ 0.6 %."""
    with use_backend("numpy", dtype="float32"):
        T = 8
        teacher, tparams = lsa_teacher(3, 2, T, seed=100)
        student = GatedLinearRNN(3, 12, 3, n_out_gates=8, recurrence="exp")
        params, _ = train_student(student, student.init(RNG(0)), teacher, tparams, T=T, seed=1, log=None)
        x = RNG(7).normal((4096, T, 3))
        y = teacher(tparams, x)
        zero = float(mse(0 * y, y)[0])
        rel = float(mse(student(params, x), y)[0]) / zero
        lam = to_numpy(student.decay(params))
        relevant = ablation(student, params, x, y) / zero >= 0.05
    assert rel <= 1e-3, rel
    assert relevant.sum() >= 2, relevant                 # guard: the λ check is not vacuous
    assert np.all((lam[relevant] < 0.1) | (lam[relevant] > 0.85)), (lam, relevant)
