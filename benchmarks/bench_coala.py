"""P9 (COALA-PG, arXiv:2410.18636): one meta-training iteration of the sampled iterated
prisoner's dilemma with the GatedLinearRNN meta agent, at the paper's IPD sizes (Table 4):
meta-batch N = 128 naive co-players, B = 16 parallel trajectories each, M = 20 episodes of
T = 10 steps (L = 200), 32 hidden units, float32.

An iteration is :func:`tasks.rnn_meta_agent.meta_iteration`: the rollout (the RNN stepped
once per round for all N B trajectories, the co-players' REINFORCE update after every
episode), the inputs rebuilt by teacher forcing, the RNN over the whole (N B, L) sequences,
the COALA-PG surrogate loss (weights of Algorithm 1, value baseline, value regression) and
the backward pass. No parameter update. Every implementation reads the SAME pre-drawn
uniforms (the actions are ``u >= p``) and the same initial co-player logits, so the sampled
meta-trajectories, the loss and the gradient agree across libraries (a float32 difference
could flip an action only where a uniform falls within ~1e-7 of its probability).

* tinynim: ``meta_iteration`` with :class:`Replay` in place of the random generator, a
  :class:`~benchmarks.common.TinynimStep`. It is traceable, but tinynim-jit is not timed
  (:data:`JIT_SKIP`): the rounds, the recurrences and Algorithm 1 are Python loops, so
  ``jax.jit`` sees ~10⁴ unrolled operations;
* torch: the same maths, the rollout under ``no_grad`` (Python loops), autograd through the
  teacher-forced RNN and the loss;
* JAX: ``jit`` of the whole iteration, the rollout as ``lax.scan`` over episodes of a
  ``lax.scan`` over rounds, the RNN recurrence as a ``lax.scan``, ``value_and_grad`` of the
  loss.

    python -m benchmarks.run --only coala
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import F32, Case, TinynimStep, f32, host_flat

N, B, M, T, H, ETA = 128, 16, 20, 10, 32, 1.0
L = M * T
PAYOFF = (1.0, -1.0, 2.0, 0.0)          # (R, S, T, P): tasks.ipd.PAYOFFS
SCALE, VALUE_COEF = 0.05, 0.5           # tasks.rnn_meta_agent.loss_gradient's defaults


class Replay:
    """The ``uniform(shape)`` of :class:`tinynim.random.RNG` served from pre-drawn draws
    (K, *shape), in order: a rollout fed by it consumes the same numbers in every library."""

    def __init__(self, draws):
        self.draws, self.i = draws, 0

    def uniform(self, shape):
        if tuple(shape) != tuple(self.draws.shape[1:]):
            raise ValueError(f"Replay.uniform: expected shape {tuple(self.draws.shape[1:])}, got {tuple(shape)}")
        u, self.i = self.draws[self.i], self.i + 1
        return u


def _data():
    """Initial weights (readout D not zero, so every gradient is), co-player logits ψ (N, 5)
    and the uniforms (2L, N, B): round l draws the meta action from row 2l, the co-player's from 2l + 1."""
    from tasks.rnn_meta_agent import meta_policy
    from tinynim.random import RNG
    layer = meta_policy(H)
    params = layer.init(RNG(0), dtype="float32")
    rng = np.random.default_rng(1)
    return layer, params, f32(rng.standard_normal((N, 5))), f32(rng.uniform(size=(2 * L, N, B)))


# -- the twins' maths, for torch or jax.numpy (`lib`) ---------------------------------------------

def _sigmoid(x, lib):
    return 0.5 + 0.5 * lib.tanh(0.5 * x)


def _rewards(a, c, lib):
    """(meta reward, co-player reward) of integer actions (0 = C), float32."""
    R, S, Tp, P = PAYOFF
    x, y = a * 1.0, c * 1.0
    own = lambda u, v: R * (1 - u) * (1 - v) + S * (1 - u) * v + Tp * u * (1 - v) + P * u * v   # noqa: E731
    return own(x, y), own(y, x)


def _features(onehot_last, start, r_prev, lib):
    """x (..., 7) = [one-hot of the last outcome state, 1[t = 0], last reward]."""
    flag = lib.zeros_like(r_prev) + start
    return lib.concatenate([onehot_last, flag[..., None], r_prev[..., None]], -1)


def _gates_in(p, x, lib):
    """u = (x̃ Wx_in) ⊙ (x̃ Wg_in), x̃ = (x, 1)."""
    xt = lib.concatenate([x, lib.ones_like(x[..., :1])], -1)
    return (xt @ p["Wx_in"]) * (xt @ p["Wg_in"])


def _readout(p, h):
    return ((h @ p["Wx_out"]) * (h @ p["Wg_out"])) @ p["D"]


def _learn(psi, obs, coop, r2, lib):
    """The co-players' REINFORCE step: obs (N, B, T, 5), coop and r2 (N, B, T)."""
    q = _sigmoid((obs * psi[:, None, None, :]).sum(-1), lib)
    togo = lib.flip(lib.cumsum(lib.flip(r2, (-1,)), -1), (-1,))
    weight = (togo - togo.mean(-2)[:, None, :]) * (coop - q)
    return psi + ETA * (weight[..., None] * obs).sum(-2).mean(-2)


def _loss(p, x, coop, rewards, lib, scan):
    """The surrogate of tasks.rnn_meta_agent.loss_gradient (COALA weights, value baseline held
    fixed, value regression) of the RNN run over x (N B, L, 7); `scan(lam, u)` the recurrence."""
    h = scan(_sigmoid(p["nu"], lib), _gates_in(p, x, lib))                       # (N B, L, H)
    y = _readout(p, h).reshape(N, B, L, 2)
    logit, value = y[..., 0], y[..., 1]
    r = SCALE * rewards                                                          # (N, B, L)
    within = lib.flip(lib.cumsum(lib.flip(r.reshape(N, B, M, T), (-1,)), -1), (-1,)) / B
    per_episode = r.reshape(N, B, M, T).sum(-1).mean(1)                         # (N, M) batch-mean return
    later = lib.flip(lib.cumsum(lib.flip(per_episode, (-1,)), -1), (-1,)) - per_episode   # episodes after m
    weight = (within + later[:, None, :, None]).reshape(N, B, L)                # COALA-PG (Algorithm 1)
    togo = lib.flip(lib.cumsum(lib.flip(r, (-1,)), -1), (-1,))
    z = (1 - 2 * coop) * logit
    log_pi = -lib.logaddexp(lib.zeros_like(z), z)
    advantage = weight - _stop(value, lib)
    return -(advantage * log_pi).sum() / N + VALUE_COEF * ((value - togo) ** 2).mean()


def _stop(x, lib):
    return x.detach() if hasattr(x, "detach") else __import__("jax").lax.stop_gradient(x)


# -- torch -------------------------------------------------------------------------------------

def _torch_setup(params, psi0, draws):
    import torch

    from benchmarks.common import DEVICES
    dev = torch.device(DEVICES["torch"])
    p = {k: torch.tensor(v, requires_grad=True, device=dev) for k, v in host_flat(params).items()}
    psi0, U = (torch.as_tensor(a, device=dev) for a in (psi0, draws))
    eye = torch.eye(5, device=dev)

    def scan(lam, u):                          # unbind: one backward for all slices (u[:, t] would
        h, states = torch.zeros_like(u[:, 0]), []  # write a full-size zero gradient per step)
        for u_t in u.unbind(1):
            h = lam * h + u_t
            states.append(h)
        return torch.stack(states, 1)

    def step():
        with torch.no_grad():
            psi, h = psi0, torch.zeros(N * B, H, device=dev)
            last = torch.zeros(N, B, dtype=torch.long, device=dev)
            r_prev = torch.zeros(N, B, device=dev)
            outcomes, rewards = [], []
            for m in range(M):
                s_meta = s_naive = torch.zeros_like(last)
                obs, coops, r2s = [], [], []
                for t in range(T):
                    x = _features(eye[last], float(t == 0), r_prev, torch).reshape(N * B, 7)
                    h = _sigmoid(p["nu"], torch) * h + _gates_in(p, x, torch)
                    prob = _sigmoid(_readout(p, h)[:, 0], torch).reshape(N, B)
                    o_naive = eye[s_naive]
                    q = _sigmoid((o_naive * psi[:, None, :]).sum(-1), torch)
                    l = m * T + t
                    a, c = (U[2 * l] >= prob).long(), (U[2 * l + 1] >= q).long()
                    r_prev, r2 = _rewards(a, c, torch)
                    s_meta, s_naive = 1 + 2 * a + c, 1 + 2 * c + a
                    last = s_meta
                    outcomes.append(s_meta - 1)
                    rewards.append(r_prev)
                    obs.append(o_naive)
                    coops.append(1.0 - c)
                    r2s.append(r2)
                psi = _learn(psi, torch.stack(obs, -2), torch.stack(coops, -1), torch.stack(r2s, -1), torch)
            outcome, reward = torch.stack(outcomes, -1), torch.stack(rewards, -1)              # (N, B, L)
            prev = torch.cat([torch.zeros_like(outcome[..., :1]), outcome[..., :-1] + 1], -1)
            r_shift = torch.cat([torch.zeros_like(reward[..., :1]), reward[..., :-1]], -1)
            start = (torch.arange(L, device=dev) % T == 0).float()
            x = _features(eye[prev], start, r_shift, torch).reshape(N * B, L, 7)
            coop = 1.0 - (outcome // 2).float()
        keys = sorted(p)
        loss = _loss(p, x, coop, reward, torch, scan)
        return loss.detach(), dict(zip(keys, torch.autograd.grad(loss, [p[k] for k in keys])))
    return step


# -- JAX ---------------------------------------------------------------------------------------

def _jax_setup(params, psi0, draws):
    import jax
    import jax.numpy as jnp

    from benchmarks.common import DEVICES
    dev = jax.devices(DEVICES["jax"])[0]
    p0 = {k: jax.device_put(v, dev) for k, v in host_flat(params).items()}
    psi0, U = (jax.device_put(a, dev) for a in (psi0, draws))
    eye = jnp.eye(5, dtype=jnp.float32)
    f32 = jnp.float32   # scan carries stay float32 even when jax_enable_x64 is on (the test suite's float64)

    def scan(lam, u):
        def one(h, u_t):
            h = lam * h + u_t
            return h, h
        _, hs = jax.lax.scan(one, jnp.zeros_like(u[:, 0]), jnp.swapaxes(u, 0, 1))
        return jnp.swapaxes(hs, 0, 1)

    def rollout(p, psi, U):
        lam = _sigmoid(p["nu"], jnp)

        def round_(carry, inputs):
            h, s_meta, s_naive, last, r_prev, psi = carry
            t, u = inputs
            x = _features(eye[last], (t == 0) * 1.0, r_prev, jnp).reshape(N * B, 7).astype(f32)
            h = lam * h + _gates_in(p, x, jnp)
            prob = _sigmoid(_readout(p, h)[:, 0], jnp).reshape(N, B)
            o_naive = eye[s_naive]
            q = _sigmoid((o_naive * psi[:, None, :]).sum(-1), jnp)
            a, c = (u[0] >= prob).astype(jnp.int32), (u[1] >= q).astype(jnp.int32)
            r, r2 = (v.astype(f32) for v in _rewards(a, c, jnp))
            s_meta, s_naive = 1 + 2 * a + c, 1 + 2 * c + a
            return (h, s_meta, s_naive, s_meta, r, psi), (s_meta - 1, r, o_naive, 1.0 - c, r2)

        def episode(carry, u):                                                  # u (T, 2, N, B)
            h, last, r_prev, psi = carry
            zero = jnp.zeros_like(last)
            (h, _, _, last, r_prev, _), (outcome, r, obs, coop, r2) = jax.lax.scan(
                round_, (h, zero, zero, last, r_prev, psi), (jnp.arange(T), u))
            psi = _learn(psi, jnp.moveaxis(obs, 0, -2), jnp.moveaxis(coop, 0, -1), jnp.moveaxis(r2, 0, -1),
                         jnp).astype(f32)
            return (h, last, r_prev, psi), (outcome, r)

        start = (jnp.zeros((N * B, H), jnp.float32), jnp.zeros((N, B), jnp.int32), jnp.zeros((N, B), jnp.float32), psi)
        _, (outcome, reward) = jax.lax.scan(episode, start, U.reshape(M, T, 2, N, B))
        to_nbl = lambda a: jnp.moveaxis(a.reshape(L, N, B), 0, -1)                  # noqa: E731
        return to_nbl(outcome), to_nbl(reward)

    @jax.jit
    def step_jit(p, psi, U):                                                     # data as arguments
        outcome, reward = rollout(p, psi, U)
        prev = jnp.concatenate([jnp.zeros_like(outcome[..., :1]), outcome[..., :-1] + 1], -1)
        r_shift = jnp.concatenate([jnp.zeros_like(reward[..., :1]), reward[..., :-1]], -1)
        x = _features(eye[prev], (jnp.arange(L) % T == 0) * 1.0, r_shift, jnp).reshape(N * B, L, 7)
        coop = 1.0 - (outcome // 2).astype(jnp.float32)
        return jax.value_and_grad(lambda q: _loss(q, x, coop, reward, jnp, scan))(p)
    return lambda: step_jit(p0, psi0, U)


# -- tinynim -----------------------------------------------------------------------------------

def _setup(impl):
    layer, params, psi, draws = _data()
    if impl == "torch":
        return _torch_setup(params, psi, draws)
    if impl == "jax":
        return _jax_setup(params, psi, draws)
    from tasks.rnn_meta_agent import RNNRun, meta_iteration
    from tinynim.backend import asarray
    run = RNNRun(estimator="coala", n_hidden=H, n_coplayers=N, B=B, M=M, T=T, eta=ETA)

    def loss_and_grads(params, batch, _):
        psi, draws = batch
        loss, grads, _ = meta_iteration(layer, params, psi, Replay(draws), run)
        return loss, grads
    return TinynimStep(loss_and_grads, params, (asarray(psi, "float32"), asarray(draws, "float32")))


# Per (trajectory, round), with x̃ of 8, 2H = 64 gate columns, H×2H output gates, H×2 readout:
# the rollout's step 8·64 + 32·64 + 32·2 = 2624 MACs; the teacher-forced forward the same and its
# backward twice that: 4·2624 MACs = 21 kFLOP, over N B L = 409 600 (trajectory, round) pairs.
# Bytes: the backward's activations x̃ (8), [g|a] (64), h (32), [q|o] (64) written and read once,
# plus the uniforms (2 per pair) read once.
PAIRS = N * B * L
JIT_SKIP = {"tinynim-jit": "traceable (its loss and gradient matched eager tinynim's to 6e-7), but jax.jit of the "
                           "unrolled iteration (200 rounds, 200-step recurrences and Algorithm 1 as Python loops) "
                           "compiled for ~14 min on one shared core and the compiled step then ran no faster than "
                           "eager tinynim (7.8 s vs 6.9 s, load ~5)"}
CASES = [Case("COALA-PG iteration (IPD, GatedLinearRNN)", _setup, skip=JIT_SKIP,
              info=f"meta-batch {N}, B={B}, M={M}, T={T}, hidden {H}: rollout + COALA-PG + backward",
              flops=2 * 4 * 2624 * PAIRS, bytes=F32 * PAIRS * (2 * (8 + 64 + 32 + 64) + 2))]
