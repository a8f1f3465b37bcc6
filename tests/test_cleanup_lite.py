"""CleanUp-lite (arXiv:2410.18636 App. B.1.2; tasks/cleanup_lite.py): the environment's rules on
hand-built states, the rollout against teacher forcing, the categorical loss's and the naive
learners' hand gradients against central differences, the gradient check of the 7-output
network, and the paper preset's first iterations on a CPU; float64 on every backend.

Tolerances: EXACT = 1e-12 relative (one number computed two ways: rounding only); central
differences (h = 1e-6) of smooth float64 functions agree to ~1e-9, so 1e-7.
"""
import dataclasses

import numpy as np
import pytest

from tinynim.backend import asarray
from tinynim.losses import categorical_log_prob
from tinynim.random import RNG
from tasks import cleanup_lite as cl
from tasks.rnn_meta_agent import init_meta_policy
from helpers import assert_close, assert_gradients, host

EXACT, FD = 1e-12, 1e-7


def _state(pos, dirt, apple, frozen=(0, 0)):
    """One environment (leading shape (1,)) from host lists."""
    return {"pos": asarray(np.array([pos]), "int64"), "dirt": asarray(np.array([dirt], float)),
            "apple": asarray(np.array([apple], float)), "frozen": asarray(np.array([frozen]), "int64")}


def _step(state, actions, u):
    new, r = cl.step(state, asarray(np.array([actions]), "int64"), asarray(np.array([u], float)))
    return {k: host(v)[0] for k, v in new.items()}, host(r)[0]


NO_SPAWN = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]         # zaps fail, no dirt, no apple (u = 1 ≥ any probability)


def test_moves_clip_at_walls_and_eat_and_clean(backend):
    """Player 0 at (0, 1) moves left onto an orchard apple: reward 1, the apple is gone; player 1
    at (4, 2) moves right onto dirty river row 4: it is cleaned, no reward; a move up from row 0
    stays (wall)."""
    s = _state([[0, 1], [4, 2]], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0])
    new, r = _step(s, [cl.LEFT, cl.RIGHT], NO_SPAWN)
    assert new["pos"].tolist() == [[0, 0], [4, 3]] and r.tolist() == [1.0, 0.0]
    assert new["apple"].tolist() == [0] * 5 and new["dirt"].tolist() == [0] * 5
    new, _ = _step(_state([[0, 0], [4, 3]], [0] * 5, [0] * 5), [cl.UP, cl.RIGHT], NO_SPAWN)
    assert new["pos"].tolist() == [[0, 0], [4, 3]]


def test_shared_apple_and_zap(backend):
    """Both players step onto one apple: ½ each. A zap within Manhattan distance 2 succeeds when
    its uniform is below 0.9 and freezes the other for 5 steps; at distance 3 it does nothing;
    a frozen player's move is a no-op and its counter runs down."""
    _, r = _step(_state([[2, 1], [1, 0]], [0] * 5, [0, 0, 1, 0, 0]), [cl.LEFT, cl.DOWN], NO_SPAWN)
    assert r.tolist() == [0.5, 0.5]
    near = _state([[2, 1], [2, 3]], [0] * 5, [0] * 5)
    assert _step(near, [cl.ZAP, cl.NOOP], [0.5] + NO_SPAWN[1:])[0]["frozen"].tolist() == [0, cl.FREEZE]
    assert _step(near, [cl.ZAP, cl.NOOP], [0.95] + NO_SPAWN[1:])[0]["frozen"].tolist() == [0, 0]
    far = _state([[2, 0], [2, 3]], [0] * 5, [0] * 5)
    assert _step(far, [cl.ZAP, cl.NOOP], [0.0] + NO_SPAWN[1:])[0]["frozen"].tolist() == [0, 0]
    frozen = _state([[2, 0], [2, 3]], [0] * 5, [0] * 5, frozen=(0, 3))
    new, _ = _step(frozen, [cl.NOOP, cl.LEFT], NO_SPAWN)
    assert new["pos"].tolist() == [[2, 0], [2, 3]] and new["frozen"].tolist() == [0, 2]


def test_spawning_follows_the_dirt(backend):
    """Dirt spawns in the drawn row when its uniform is below 0.35; an apple spawns with
    probability 1 − min(1, dirt/3): never with 3 dirty cells, with probability 2/3 with one."""
    players = [[2, 1], [2, 2]]
    new, _ = _step(_state(players, [1, 1, 1, 0, 0], [0] * 5), [cl.NOOP] * 2, [1, 1, 0.3, 0.7, 0.0, 0.0])
    assert new["dirt"].tolist() == [1, 1, 1, 1, 0] and new["apple"].tolist() == [0] * 5
    one = _state(players, [1, 0, 0, 0, 0], [0] * 5)
    assert _step(one, [cl.NOOP] * 2, [1, 1, 0.99, 0, 0.66, 0.5])[0]["apple"].tolist() == [0, 0, 1, 0, 0]
    assert _step(one, [cl.NOOP] * 2, [1, 1, 0.99, 0, 0.67, 0.5])[0]["apple"].tolist() == [0] * 5


def test_reset_and_observation(backend):
    """Three dirty river cells, no apples, nobody frozen, positions on the grid; each
    observation holds both players' cells one-hot, own first."""
    state = cl.reset(RNG(0).uniform((50, cl.N_RESET)))
    dirt, pos = host(state["dirt"]), host(state["pos"])
    assert np.all(dirt.sum(-1) == cl.START_DIRT) and np.all(host(state["apple"]) == 0)
    assert np.all(host(state["frozen"]) == 0) and pos.min() >= 0
    assert np.all(pos[..., 0] < cl.ROWS) and np.all(pos[..., 1] < cl.COLS)
    cell = pos[..., 0] * cl.COLS + pos[..., 1]
    for who in (0, 1):
        obs = host(cl.observe(state, who))
        assert obs.shape == (50, cl.D_OBS)
        assert np.all(obs[:, :20].argmax(-1) == cell[:, who]) and np.all(obs[:, 20:40].argmax(-1) == cell[:, 1 - who])


def test_network_gradients(f64):
    """The 54-input, 7-output GatedLinearRNN (6 logits and the value), with random heads."""
    layer = cl.meta_policy(4)
    rng = RNG(2)
    assert_gradients(layer, layer.init(rng), rng.normal((2, 3, cl.D_IN)))


def test_rollout_reads_what_teacher_forcing_reads(backend):
    """log π of each sampled meta action (one RNN step at a time, carried state) = the network
    run on the recorded input sequence; rewards are 0, ½ or 1 (an apple, maybe shared)."""
    layer = cl.meta_policy(5)
    rng = RNG(4)
    params = layer.init(rng)
    W = rng.normal((2, cl.D_OBS, cl.N_ACTIONS), std=0.5)
    out = cl.rollout(layer, params, W, rng, B=3, M=2, T=3, eta=0.5)
    y, _ = layer.forward(params, backend.xp.reshape(out["x"], (6, 6, cl.D_IN)))
    logp, _ = categorical_log_prob(backend.xp.reshape(y[..., :cl.N_ACTIONS], (2, 3, 6, cl.N_ACTIONS)), out["action"])
    assert_close(host(logp), host(out["logp"]), EXACT, "log π")
    assert set(np.unique(host(out["reward"]))) <= {0.0, 0.5, 1.0}


def test_meta_iteration_is_the_loss_of_each_coplayers_sequences(f64):
    """meta_iteration's loss and gradients (the recorded inputs reshaped to one (N·B, L, 54)
    batch) = the network run co-player by co-player on its (B, L, 54) inputs, the outputs
    stacked into the loss, and the per-co-player backward passes summed; N = 2 ≠ B = 3, so a
    mix-up of the two leading axes shows."""
    run = cl.CleanUpRun(n_hidden=5, n_coplayers=2, B=3, M=2, T=3)
    layer = cl.meta_policy(run.n_hidden)
    params = layer.init(RNG(7))
    W = RNG(8).normal((run.n_coplayers, cl.D_OBS, cl.N_ACTIONS), std=0.5)
    loss, grads, out = cl.meta_iteration(layer, params, W, RNG(9), run)
    runs = [layer.forward(params, out["x"][n]) for n in range(run.n_coplayers)]     # (B, L, 7) each
    y_all = np.stack([host(y) for y, _ in runs])
    ref_loss, dy = cl.policy_loss_gradient(run.estimator, asarray(y_all), out["action"], out["reward"], run.T)
    assert_close(host(loss), host(ref_loss), EXACT, "loss")
    per = [layer.backward(params, cache, dy[n, ...])[1] for n, (_, cache) in enumerate(runs)]
    for key in grads:
        assert_close(host(grads[key]), sum(host(g[key]) for g in per), EXACT, key)


def test_loss_and_naive_gradients_are_derivatives(f64):
    """∂loss/∂out by hand vs central differences of the surrogate with its baseline held at the
    unperturbed values; the co-players' step η·Δ vs η × the central-difference gradient of
    their surrogate 1/B Σ_b Σ_t A log π(c | o; W) (advantage held fixed)."""
    rng = RNG(5)
    N, B, M, T = 2, 3, 2, 2
    out = host(rng.normal((N, B, M * T, cl.N_ACTIONS + 1)))
    actions = asarray(host(rng.integers(0, cl.N_ACTIONS, (N, B, M * T))), "int64")
    rewards = asarray(host(rng.integers(0, 2, (N, B, M * T))).astype(float))
    baseline = asarray(out[..., -1])
    for name in ("coala", "mfos", "batch_unaware"):
        loss = lambda o: float(host(cl.policy_loss_gradient(name, asarray(o), actions, rewards, T,   # noqa: E731
                                                            baseline=baseline)[0]))
        _, d = cl.policy_loss_gradient(name, asarray(out), actions, rewards, T)
        assert_close(host(d), _fd(loss, out), FD, name)
    obs = host(rng.normal((N, B, T, cl.D_OBS)))
    acts, r = actions[:, :, :T], rewards[:, :, :T]
    togo = np.flip(np.cumsum(np.flip(host(r), -1), -1), -1)
    adv = asarray(togo - togo.mean(1, keepdims=True))
    W = host(rng.normal((N, cl.D_OBS, cl.N_ACTIONS)))
    surrogate = lambda w: np.sum(host(categorical_log_prob(asarray(obs) @ asarray(w)[:, None], acts)[0] * adv)) / B  # noqa: E731
    step = host(cl.naive_learn(asarray(W), asarray(obs), acts, r, 0.3)) - W
    assert_close(step, 0.3 * _fd(surrogate, W), FD, "naive REINFORCE step")


def _fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_training_runs_on_the_backend(backend):
    """Two training steps run and leave finite parameters (episodes this short earn no apple,
    so nothing is learnt: the preset test below checks that learning starts)."""
    params, history = cl.train_cleanup(cl.CleanUpRun(n_hidden=4, n_coplayers=2, B=2, M=2, T=2, steps=2),
                                       quick_mode=False)
    assert history.shape == (2, 2) and np.all(np.isfinite(history))
    assert all(np.all(np.isfinite(host(v))) for v in params.values())


def test_paper_preset_starts_on_cpu(f64):
    """The paper's CleanUp-lite preset (T = 64, width 32, Adam ε 1e-5, lr 3e-4, clip 1) runs its
    first two iterations on a CPU with the meta-batch, B and M cut to 2 (the full 512 × 32 × 6400
    sizes are a GPU's; tasks/cleanup_lite.py says why)."""
    run = dataclasses.replace(cl.PAPER_CLEANUP, n_coplayers=2, B=2, M=2, steps=2)
    params, history = cl.train_cleanup(run, quick_mode=False)
    assert history.shape == (2, 2) and tuple(params["D"].shape) == (32, cl.N_ACTIONS + 1)
    assert history[:, 0].sum() > 0 and np.any(host(params["D"]) != 0) and np.all(np.isfinite(history))
    zero = init_meta_policy(cl.meta_policy(32), RNG(cl.PAPER_CLEANUP.seed))
    assert not np.allclose(host(params["Wx_in"]), host(zero["Wx_in"]))
