"""The GatedLinearRNN meta agent (arXiv:2410.18636 App. B.3; tasks/rnn_meta_agent.py): gradient
checks of the network with its policy and value heads (central differences in float64 and
torch autograd, tests/helpers.py), the step-by-step rollout against teacher forcing, and the
loss's hand gradient against central differences; float64 on every backend.

Tolerances: EXACT = 1e-12 relative (one number computed two ways: rounding only); central
differences of the loss (h = 1e-6) agree to ~1e-9, so 1e-7.
"""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinynim.backend import asarray
from tinynim.random import RNG
from tasks import learning_aware_pg as lp, rnn_meta_agent as ra, sampled_shaping as ss
from helpers import assert_close, assert_gradients, host

EXACT = 1e-12
seeds = st.integers(0, 2**16)


def test_zero_initialised_heads(backend):
    """D = 0: the first policy is uniform and the first value 0, on any input."""
    layer = ra.meta_policy(8)
    params = ra.init_meta_policy(layer, RNG(0))
    out, _ = layer.forward(params, RNG(1).normal((3, 4, ra.D_IN)))
    assert np.all(host(params["D"]) == 0) and np.all(host(out) == 0)
    assert np.any(host(params["Wx_in"]) != 0)


def test_policy_and_value_heads_gradients(f64):
    """The network's backward (both heads: dout (…, 2)) vs finite differences and torch, at the
    zero-initialised heads and at random parameters, with and without a carried state."""
    layer = ra.meta_policy(6)
    rng = RNG(0)
    x, h0 = rng.normal((2, 5, ra.D_IN)), rng.normal((2, 6))
    zero_heads = ra.init_meta_policy(layer, rng)
    random_heads = layer.init(rng)
    assert_gradients(layer, zero_heads, x)
    assert_gradients(layer, random_heads, x)
    assert_gradients(layer, random_heads, (x, h0), {"return_state": True})


@settings(max_examples=4)
@given(B=st.integers(1, 3), M=st.integers(1, 3), T=st.integers(1, 3), seed=seeds)
def test_rollout_reads_what_teacher_forcing_reads(backend, B, M, T, seed):
    """The probabilities used while sampling (one RNN step at a time, carried state) = the
    network run on the whole rebuilt input sequence."""
    layer = ra.meta_policy(5)
    rng = RNG(seed)
    params = layer.init(rng)                                                   # non-zero heads
    out = ss.rollout(ra.RNNPolicy(layer, params, M), rng.normal((2, 5)), rng, B=B, T=T, naive=ss.Naive("reinforce", 0.7))
    score = host(out["score"])
    p_sampled = (score > 0) - score                                            # 1[a = C] − score
    x = ra.sequence_features(out["outcome"], out["reward"], T)
    y, _ = layer.forward(params, backend.xp.reshape(x, (2 * B, M * T, ra.D_IN)))
    assert_close(1 / (1 + np.exp(-host(y)[..., 0].reshape(2, B, M * T))), p_sampled, EXACT, "P(C)")


def test_loss_gradient_is_the_derivative(f64):
    """∂loss/∂out by hand vs central differences of the surrogate loss with its baseline held
    at the unperturbed values, for each estimator."""
    rng = RNG(3)
    N, B, M, T = 2, 3, 2, 2
    out = host(rng.normal((N, B, M * T, 2)))
    coop = asarray((host(rng.uniform((N, B, M * T))) < 0.5).astype(float))
    rewards = asarray(host(rng.integers(-1, 3, (N, B, M * T))).astype(float))
    baseline = asarray(out[..., 1])
    for name in lp.ESTIMATORS:
        loss = lambda o: float(host(ra.loss_gradient(name, asarray(o), coop, rewards, T, baseline=baseline)[0]))
        _, d = ra.loss_gradient(name, asarray(out), coop, rewards, T)
        fd = np.zeros_like(out)
        for idx in np.ndindex(*out.shape):
            e = np.zeros_like(out)
            e[idx] = 1e-6
            fd[idx] = (loss(out + e) - loss(out - e)) / 2e-6
        assert_close(d, fd, 1e-7, name)


def test_training_runs_on_the_backend(backend):
    """Two training steps: finite parameters, the readout has left zero."""
    params, history = ra.train_rnn(ra.RNNRun(n_hidden=4, n_coplayers=2, B=2, M=2, T=2, steps=2), quick_mode=False)
    assert history.shape == (2, 2) and np.any(host(params["D"]) != 0)
    assert all(np.all(np.isfinite(host(v))) for v in params.values())


@pytest.mark.slow
def test_paper_preset_starts_on_cpu(f64):
    """The Table 4 sizes (meta-batch 128, B = 16, M = 20, T = 10, width 32) run their first
    iteration on a CPU: a full-size rollout, the estimator and the backward."""
    params, history = ra.train_rnn(dataclasses.replace(ra.PAPER_RUN, steps=1), quick_mode=False)
    assert history.shape == (1, 2) and tuple(params["D"].shape) == (32, 2) and np.any(host(params["D"]) != 0)


def test_loss_value_is_the_documented_surrogate(f64):
    """The loss's value against the module docstring's formula, rebuilt here: −1/N Σ_n red_b
    Σ_l A log π(a_l) + c_v/(N B L) Σ (V − G)², with red_b the SUM over the batch for the
    batch-aware estimators (COALA, M-FOS) and the MEAN for the batch-unaware one, log π by
    hand from the logit, G the own return-to-go (reversed cumulative sum of the rescaled
    rewards over the whole meta-trajectory) and A = w − V. The derivative test above only
    ties ∂loss to the loss: a scale common to both (a lost 1/B) is caught here. 1e-12."""
    rng = RNG(5)
    N, B, M, T, c_v, scale = 2, 3, 2, 2, 0.5, 0.05
    out = host(rng.normal((N, B, M * T, 2)))
    coop = (host(rng.uniform((N, B, M * T))) < 0.5).astype(float)
    rewards = host(rng.integers(-1, 3, (N, B, M * T))).astype(float)
    logit, value = out[..., 0], out[..., 1]
    p = 1 / (1 + np.exp(-logit))
    log_pi = np.log(np.where(coop == 1, p, 1 - p))
    togo = np.cumsum((scale * rewards)[..., ::-1], axis=-1)[..., ::-1]
    value_term = c_v * np.sum((value - togo) ** 2) / (N * B * M * T)
    for name, red_b in (("coala", np.sum), ("mfos", np.sum), ("batch_unaware", np.mean)):
        w = host(lp.estimator_weights(name, asarray(scale * rewards), T))
        per_b = np.sum((w - value) * log_pi, axis=-1)                           # (N, B)
        expected = -np.sum(red_b(per_b, axis=-1)) / N + value_term
        loss, _ = ra.loss_gradient(name, asarray(out), asarray(coop), asarray(rewards), T, value_coef=c_v,
                                   reward_scale=scale)
        assert float(host(loss)) == pytest.approx(expected, rel=1e-12), name
