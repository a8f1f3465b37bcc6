"""A sequence-model meta agent for learning-aware policy gradients (arXiv:2410.18636, App. B.3:
a Hawk recurrent backbone with linear policy and value readouts initialised to 0; here a
:class:`tinynim.nn.GatedLinearRNN`, trained from samples, at CPU scale; settings ours).

**Inputs over the long history.** At long time l (episode m, step t) the agent reads
x_l = [one-hot of the last joint outcome seen, own action first (index 0: none yet, l = 0),
1[t = 0] (an episode starts), r_{l−1} (its last reward)] (7 numbers), across episode
boundaries: unlike the tabular policy it can see how the co-player changed from one episode
to the next. The recurrence runs over the whole meta-trajectory (L = M T steps) of each of the
B trajectories separately (the policy is factorised over the batch).

**Heads.** The RNN's readout D (n_hidden, 2) holds the two linear heads: out[..., 0] the logit
of cooperating, out[..., 1] the value V(h_l); D = 0 at initialisation (the paper's
zero-initialised readouts: the first policy is uniform, the first value 0).

**Loss** (minimised; its gradient is the estimator's ascent direction), with w the weights of
estimator `name` (Algorithm 1; reward rescaled by `reward_scale`, as the paper's 0.05),
A = w − V (a baseline that does not depend on the action at l, so the gradient stays unbiased)
and G the agent's own return-to-go (the batch-unaware value of Eq. 10)::

    loss = −1/N Σ_n red_b Σ_l A log π(a_l) + c_v / (N B L) Σ (V − G)²
    ∂loss/∂logit = −1/N (red_b weight) A (1[a = C] − p),   ∂loss/∂V = 2 c_v (V − G)/(N B L)

(red_b: the estimator's sum or mean over the batch; A is held fixed in the policy term).
"""
from __future__ import annotations

import dataclasses
import math

import array_api_compat
import numpy as np

from tinynim.backend import namespace, to_numpy, use_dtype
from tinynim.experiment import scaled
from tinynim.nn import GatedLinearRNN
from tinynim.optim import Adam
from tinynim.random import RNG

from tasks import ipd
from tasks.learning_aware_pg import ESTIMATORS, batch_lambda_returns, estimator_weights
from tasks.sampled_shaping import Naive, rollout

D_IN = 7


def meta_policy(n_hidden: int = 16) -> GatedLinearRNN:
    """The meta agent's network: 7 inputs, `n_hidden` units, 2 outputs (logit of C, value)."""
    return GatedLinearRNN(D_IN, n_hidden, 2)


def init_meta_policy(layer: GatedLinearRNN, rng):
    """Parameters with the policy and value readouts (the columns of D) set to zero."""
    params = layer.init(rng)
    return {**params, "D": namespace(params["D"]).zeros_like(params["D"])}


def history_features(last, start, r_prev):
    """x (..., 7) from the last outcome state (0 none, 1..4 own-first; int), the episode-start
    flag (bool, broadcast) and the last reward (float), each (...)."""
    xp = namespace(r_prev)
    flag = xp.broadcast_to(xp.astype(start, r_prev.dtype), r_prev.shape)
    return xp.concat([ipd.observe(last, r_prev.dtype), flag[..., None], r_prev[..., None]], axis=-1)


def sequence_features(outcome, reward, T: int):
    """Teacher forcing: the inputs x (..., L, 7) of a whole rollout from its "outcome" (int)
    and "reward" (..., L): the same numbers the agent read step by step."""
    xp = namespace(reward)
    L = reward.shape[-1]
    shift = lambda x: xp.concat([xp.zeros_like(x[..., :1]), x[..., :-1]], axis=-1)   # value of step l − 1, 0 at l = 0
    start = xp.asarray(np.arange(L) % T == 0, device=array_api_compat.device(reward))
    last = shift(outcome + 1)
    return history_features(last, start, shift(reward))


class RNNPolicy:
    """The step interface of :func:`tasks.sampled_shaping.rollout` for the GatedLinearRNN:
    carry h (N B, n_hidden); each step runs the layer on one input with return_state."""

    def __init__(self, layer: GatedLinearRNN, params, M: int):
        self.layer, self.params, self.M, self.lead = layer, params, M, ()

    def start(self, shape):
        xp = namespace(self.params["D"])
        return xp.zeros((math.prod(shape), self.layer.n_hidden), dtype=self.params["D"].dtype,
                        device=array_api_compat.device(self.params["D"]))

    def step(self, carry, m: int, t: int, state, last, r_prev):
        xp = namespace(r_prev)
        start = xp.asarray(t == 0, device=array_api_compat.device(r_prev))
        x = xp.reshape(history_features(last, start, r_prev), (carry.shape[0], 1, D_IN))
        (out, h), _ = self.layer.forward(self.params, (x, carry), return_state=True)
        return ipd.sigmoid(xp.reshape(out[:, 0, 0], r_prev.shape)), h


def advantage_terms(name, value, rewards, T: int, *, baseline=None, value_coef=0.5, reward_scale=0.05):
    """The parts of the loss every action space shares (module docstring), from the value head
    (N, B, L) and the rewards (N, B, L): (advantage A = w − V held fixed, the policy term's
    factor red_b/N, the value loss c_v mean (V − G)², its gradient ∂/∂V)."""
    xp = namespace(value)
    N, B, L = rewards.shape
    r = reward_scale * rewards
    weight = estimator_weights(name, r, T)
    togo = batch_lambda_returns(r, xp.zeros_like(r), discount=1.0, lam=1.0, episode_length=T)   # own return-to-go
    advantage = weight - (value if baseline is None else baseline)
    per_b = 1.0 if ESTIMATORS[name][2] == "sum" else 1.0 / B
    return (advantage, per_b / N, value_coef * xp.mean((value - togo) ** 2),
            2 * value_coef * (value - togo) / (N * B * L))


def loss_gradient(name, out, coop, rewards, T: int, *, baseline=None, value_coef=0.5, reward_scale=0.05):
    """(loss, ∂loss/∂out) of the module docstring: out (N, B, L, 2) the network's outputs on
    the rollout, coop 1[a = C] and rewards (N, B, L). The advantage's baseline is the value
    column of `out` unless `baseline` (N, B, L) is given; either way it is held fixed (the
    loss's value is the surrogate whose gradient that is).                      (), (N, B, L, 2)"""
    xp = namespace(out)
    logit, value = out[..., 0], out[..., 1]
    advantage, factor, value_loss, dvalue = advantage_terms(name, value, rewards, T, baseline=baseline,
                                                            value_coef=value_coef, reward_scale=reward_scale)
    p = ipd.sigmoid(logit)
    z = (1 - 2 * coop) * logit                                               # log π(a) = −softplus(z)
    log_pi = -xp.logaddexp(xp.zeros_like(z), z)
    loss = -xp.sum(advantage * log_pi) * factor + value_loss
    dlogit = -advantage * (coop - p) * factor
    return loss, xp.stack([dlogit, dvalue], axis=-1)


@dataclasses.dataclass(frozen=True)
class RNNRun:
    """Meta-training of the GatedLinearRNN agent from samples against naive "reinforce"
    learners (sizes ours): the sampled IPD of :data:`tasks.sampled_shaping.SAMPLED`."""
    estimator: str = "coala"
    n_hidden: int = 16
    n_coplayers: int = 16
    B: int = 8
    M: int = 10
    T: int = 5
    eta: float = 1.0
    lr: float = 0.003
    steps: int = 300
    seed: int = 0
    eps: float = 1e-8
    clip_norm: float | None = None


# The paper's IPD shaping setting (Table 4 / §B.2, a GPU's scale): meta-batch 128, B = 16, M = 20,
# T = 10, 3000 iterations, Adam (ε 1e-5) lr 3e-4 with gradient norm clipped at 1, reward scale 0.05,
# backbone width 32. Not the paper's: a GatedLinearRNN instead of Hawk, plain policy gradient
# instead of PPO, REINFORCE naive learners instead of A2C networks.
PAPER_RUN = RNNRun(n_hidden=32, n_coplayers=128, B=16, M=20, T=10, lr=3e-4, steps=3000, eps=1e-5, clip_norm=1.0)


def meta_iteration(layer: GatedLinearRNN, params, psi, rng, run: RNNRun):
    """One meta-training iteration's gradient: roll the agent out against naive "reinforce"
    co-players with initial logits ψ (N, 5) (``rng.uniform`` draws the actions), rebuild the
    inputs by teacher forcing, run the layer over the N B meta-trajectories of L = M T steps
    and backpropagate :func:`loss_gradient`: (loss, grads, the rollout's dict)."""
    out = rollout(RNNPolicy(layer, params, run.M), psi, rng, B=run.B, T=run.T, naive=Naive("reinforce", run.eta))
    xp = namespace(out["reward"])
    N, B, L = out["reward"].shape
    x = xp.reshape(sequence_features(out["outcome"], out["reward"], run.T), (N * B, L, D_IN))
    y, cache = layer.forward(params, x)
    coop = xp.astype(1 - out["outcome"] // 2, y.dtype)                           # outcome = 2a + c
    loss, dy = loss_gradient(run.estimator, xp.reshape(y, (N, B, L, 2)), coop, out["reward"], run.T)
    _, grads = layer.backward(params, cache, xp.reshape(dy, (N * B, L, 2)), need_dx=False)   # inputs are data
    return loss, grads, out


def train_meta(run, layer: GatedLinearRNN, coplayers, iteration, *, name: str, quick_mode=None, log=None,
               seed_offset=0):
    """The meta-training loop of both games, ``scaled(run.steps)`` steps (float64, active
    backend): each step draws fresh co-players ``coplayers(rng)`` and applies Adam to the
    gradient of ``iteration(layer, params, coplayers, rng, run) -> (loss, grads, rollout)``.
    Returns (params, history of the mean per-step rewards (steps, 2): meta agent, co-players)."""
    steps = scaled(run.steps, quick_mode=quick_mode)
    with use_dtype("float64"):
        rng = RNG(run.seed + 1000 * seed_offset)
        params = init_meta_policy(layer, rng)
        opt = Adam(run.lr, eps=run.eps, clip_norm=run.clip_norm)
        state = opt.init(params)
        history = []
        for step in range(steps):
            _, grads, out = iteration(layer, params, coplayers(rng), rng, run)
            params, state = opt.update(grads, state, params)
            xp = namespace(out["reward"])
            history.append((float(to_numpy(xp.mean(out["reward"]))), float(to_numpy(xp.mean(out["naive_reward"])))))
            if log is not None and step % max(steps // 5, 1) == 0:
                log(f"{name} {run.estimator} step {step}: per-step reward meta {history[-1][0]:.3f} "
                    f"co-players {history[-1][1]:.3f}")
        return params, np.asarray(history)


def train_rnn(run: RNNRun, *, quick_mode=None, log=None, seed_offset=0):
    """:func:`train_meta` on the sampled IPD: fresh co-player logits ψ ~ N(0, 1) (N, 5) each step."""
    return train_meta(run, meta_policy(run.n_hidden), lambda rng: rng.normal((run.n_coplayers, 5)), meta_iteration,
                      name="GatedLinearRNN", quick_mode=quick_mode, log=log, seed_offset=seed_offset)
