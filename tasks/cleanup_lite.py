"""CleanUp-lite (arXiv:2410.18636, App. B.1.2): a small public-goods game for two players, batched
as arrays, and the GatedLinearRNN meta agent of :mod:`tasks.rnn_meta_agent` trained on it from
samples against naive learners.

**What the paper states** (App. B.1.2): a 5×4 grid with the river in the right column and the
orchard in the left; 6 actions (4 moves, zap, no-op); dirt spawns with probability 0.35; apples
spawn with probability 1 − min(1, P_dirt/3); an apple gives reward 1; a zap succeeds with
probability 0.9 within 2 cells and freezes the other player for 5 steps; episodes start at
random positions with 3 dirt patches and no apples; fully observed.

**What is reconstructed here (ours, not in our reading of the paper)**: P_dirt is the number of
dirty river cells; a player cleans a dirty cell by stepping onto it (there is no clean action
among the 6) and eats an apple by stepping onto it (two players on one apple share it, ½ each);
"within 2 cells" is Manhattan distance ≤ 2 after both moves; each step at most one dirt and
one apple spawn, each in a uniformly drawn cell of its column (nothing happens if it is taken);
a frozen player's action is a no-op; the order within a step is move, zap, eat, clean, spawn.
Cleaning earns nothing, so it only pays through the apples the other player may eat: the
public good.

**State** (batched over any leading shape S): ``pos`` (S, 2 players, 2) int (row, column),
``dirt`` and ``apple`` (S, 5) 0/1 floats over the river's and the orchard's rows, ``frozen``
(S, 2) int steps left. Player i observes (:func:`observe`, 52 numbers): its cell one-hot (20),
the other's (20), dirt (5), apples (5), its own and the other's frozen steps / 5. Every random
choice reads uniforms passed in (:func:`reset`: S × 7, :func:`step`: S × 6), so a rollout is a
function of its uniforms.

**Agents.** The meta agent reads x_l = [its observation (52), 1[t = 0], its last reward] (54)
over the whole meta-trajectory; its GatedLinearRNN has 7 outputs, 6 action logits and the value
(readout zero at initialisation). Naive co-players (ours; the paper's are A2C networks) are
linear-softmax policies π(c | o) = softmax(o W) on their own observation, W (52, 6) per
co-player, that learn after every episode from their whole batch by REINFORCE with a batch-mean
baseline: W ← W + η/B Σ_b Σ_t oᵀ (G_t − mean_b' G_t) (onehot(c_t) − π_t) (G_t their return to go
within the episode). The meta loss is that of :mod:`tasks.rnn_meta_agent` with a categorical
policy: −red_b/N Σ A log π(a) + c_v mean (V − G)², ∂/∂logits = −red_b/N A (onehot(a) − π).
"""
from __future__ import annotations

import dataclasses

import array_api_compat
import numpy as np

from tinynim.backend import namespace
from tinynim.losses import categorical_log_prob, softmax
from tinynim.nn import GatedLinearRNN

from tasks.rnn_meta_agent import advantage_terms, train_meta

ROWS, COLS, RIVER, ORCHARD = 5, 4, 3, 0          # river: right column, orchard: left column
UP, DOWN, LEFT, RIGHT, ZAP, NOOP = range(6)
N_ACTIONS, D_OBS, D_IN = 6, 2 * ROWS * COLS + 2 * ROWS + 2, 2 * ROWS * COLS + 2 * ROWS + 4
DIRT_P, ZAP_P, ZAP_RANGE, FREEZE, START_DIRT = 0.35, 0.9, 2, 5, 3
N_RESET, N_STEP = 7, 6                           # uniforms per environment for reset / step
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0], [0, 0]])   # (action, (row, column))


def _int(xp, like, values):
    return xp.asarray(np.asarray(values), dtype=xp.int64, device=array_api_compat.device(like))


def _onehot(index, n: int, dtype):
    xp = namespace(index)
    return xp.astype(index[..., None] == xp.arange(n, device=array_api_compat.device(index)), dtype)


def reset(u):
    """A fresh episode from uniforms u (..., 7): both players on uniform random cells, 3 of the 5
    river cells dirty (those whose uniforms u[2:7] rank lowest), no apples, nobody frozen."""
    if u.shape[-1] != N_RESET:
        raise ValueError(f"cleanup_lite.reset: expected uniforms of shape (..., {N_RESET}), got {tuple(u.shape)}")
    xp = namespace(u)
    cell = xp.astype(xp.floor(u[..., :2] * (ROWS * COLS)), xp.int64)                 # (..., 2)
    pos = xp.stack([cell // COLS, cell % COLS], axis=-1)                              # (..., 2, 2)
    r = u[..., 2:]
    rank = xp.sum(xp.astype(r[..., None, :] < r[..., :, None], xp.int64), axis=-1)   # (..., 5)
    dirt = xp.astype(rank < START_DIRT, u.dtype)
    return {"pos": pos, "dirt": dirt, "apple": xp.zeros_like(dirt), "frozen": xp.zeros_like(cell)}


def observe(state, who: int):
    """Player `who`'s observation (..., 52) (module docstring)."""
    pos, dirt = state["pos"], state["dirt"]
    xp = namespace(dirt)
    cell = pos[..., 0] * COLS + pos[..., 1]                                           # (..., 2)
    frozen = xp.astype(state["frozen"], dirt.dtype) / FREEZE
    return xp.concat([_onehot(cell[..., who], ROWS * COLS, dirt.dtype), _onehot(cell[..., 1 - who], ROWS * COLS, dirt.dtype),
                      dirt, state["apple"], frozen[..., who:who + 1], frozen[..., 1 - who:2 - who]], axis=-1)


def step(state, actions, u):
    """One step: actions (..., 2) int (player 0, player 1), uniforms u (..., 6) (zap of player
    0, of player 1, dirt spawn, its row, apple spawn, its row). Returns (state, rewards (..., 2))."""
    if u.shape[-1] != N_STEP or tuple(actions.shape) != tuple(state["frozen"].shape):
        raise ValueError(f"cleanup_lite.step: expected actions {tuple(state['frozen'].shape)} and uniforms "
                         f"(..., {N_STEP}), got {tuple(actions.shape)} and {tuple(u.shape)}")
    xp = namespace(u)
    frozen = state["frozen"]
    act = xp.where(frozen > 0, xp.full_like(actions, NOOP), actions)                                         # (..., 2)
    move = xp.sum(_onehot(act, N_ACTIONS, xp.int64)[..., None] * _int(xp, act, MOVES), axis=-2)   # (..., 2, 2)
    pos = xp.clip(state["pos"] + move, _int(xp, act, [0, 0]), _int(xp, act, [ROWS - 1, COLS - 1]))
    dist = xp.sum(xp.abs(pos[..., 0, :] - pos[..., 1, :]), axis=-1)                  # (...)
    hit = (act == ZAP) & (dist <= ZAP_RANGE)[..., None] & (u[..., :2] < ZAP_P)       # (..., 2): i zaps the other
    frozen = xp.where(xp.flip(hit, axis=-1), xp.full_like(frozen, FREEZE), xp.clip(frozen - 1, min=0))
    row = _onehot(pos[..., 0], ROWS, u.dtype)                                         # (..., 2, 5)
    at_orchard = row * xp.astype(pos[..., 1:2] == ORCHARD, u.dtype)
    at_river = row * xp.astype(pos[..., 1:2] == RIVER, u.dtype)
    same = xp.astype(xp.all(pos[..., 0, :] == pos[..., 1, :], axis=-1), u.dtype)     # (...)
    rewards = xp.sum(at_orchard * state["apple"][..., None, :], axis=-1) / (1 + same)[..., None]
    apple = state["apple"] * (1 - xp.max(at_orchard, axis=-2))
    dirt = state["dirt"] * (1 - xp.max(at_river, axis=-2))
    spawn = lambda grid, p, v, w: xp.maximum(grid, xp.astype(v < p, u.dtype)[..., None]      # noqa: E731
                                             * _onehot(xp.astype(xp.floor(w * ROWS), xp.int64), ROWS, u.dtype))
    dirt = spawn(dirt, DIRT_P, u[..., 2], u[..., 3])
    p_apple = 1 - xp.clip(xp.sum(dirt, axis=-1) / START_DIRT, max=1.0)
    apple = spawn(apple, p_apple, u[..., 4], u[..., 5])
    return {"pos": pos, "dirt": dirt, "apple": apple, "frozen": frozen}, rewards


def sample(probs, u):
    """Categorical draws by the inverse CDF: probs (..., K), uniforms u (...) -> int (...)."""
    xp = namespace(probs)
    cdf = xp.cumulative_sum(probs, axis=-1)[..., :-1]
    return xp.sum(xp.astype(u[..., None] >= cdf, xp.int64), axis=-1)


def naive_learn(W, obs, actions, rewards, eta: float):
    """The co-players' REINFORCE step (module docstring): W (N, 52, 6), obs (N, B, T, 52),
    actions (N, B, T) int, rewards (N, B, T).                                        (N, 52, 6)"""
    xp = namespace(W)
    togo = xp.flip(xp.cumulative_sum(xp.flip(rewards, axis=-1), axis=-1), axis=-1)
    advantage = togo - xp.mean(togo, axis=-2, keepdims=True)
    _, dlogits = categorical_log_prob(obs @ W[:, None, :, :], actions, weights=advantage)    # (N, B, T, 6)
    return W + eta * xp.mean(xp.matrix_transpose(obs) @ dlogits, axis=-3)


def policy_loss_gradient(name, out, actions, rewards, T: int, **kw):
    """(loss, ∂loss/∂out) of the categorical meta policy: out (N, B, L, 7) = 6 logits and the
    value, actions (N, B, L) int, rewards (N, B, L) (module docstring; kw: those of
    :func:`tasks.rnn_meta_agent.advantage_terms`).                            (), (N, B, L, 7)"""
    xp = namespace(out)
    advantage, factor, value_loss, dvalue = advantage_terms(name, out[..., -1], rewards, T, **kw)
    logp, dlogits = categorical_log_prob(out[..., :-1], actions, weights=advantage)
    return (-xp.sum(advantage * logp) * factor + value_loss,
            xp.concat([-factor * dlogits, dvalue[..., None]], axis=-1))


def rollout(layer: GatedLinearRNN, params, W, rng, *, B: int, M: int, T: int, eta: float):
    """B meta-trajectories of M episodes of T steps per co-player (W (N, 52, 6) their initial
    weights); the RNN's state runs across episodes, the co-players learn after each. Returns a
    dict of (N, B, L) arrays "action", "logp" (log π of the meta action as sampled), "reward",
    "naive_reward", the meta agent's inputs "x" (N, B, L, 54), and "W" after the last update."""
    xp = namespace(W)
    N = W.shape[0]
    dev, dtype = array_api_compat.device(W), W.dtype
    h = xp.zeros((N * B, layer.n_hidden), dtype=dtype, device=dev)
    r_prev = xp.zeros((N, B), dtype=dtype, device=dev)
    out = {"action": [], "logp": [], "reward": [], "naive_reward": [], "x": []}
    for m in range(M):
        state = reset(rng.uniform((N, B, N_RESET)))
        episode = {"obs": [], "action": [], "reward": []}
        for t in range(T):
            flag = xp.full((N, B, 1), float(t == 0), dtype=dtype, device=dev)
            x = xp.concat([observe(state, 0), flag, r_prev[..., None]], axis=-1)            # (N, B, 54)
            (y, h), _ = layer.forward(params, (xp.reshape(x, (N * B, 1, D_IN)), h), return_state=True)
            logits = xp.reshape(y[:, 0, :N_ACTIONS], (N, B, N_ACTIONS))
            a = sample(softmax(logits), rng.uniform((N, B)))
            o1 = observe(state, 1)
            c = sample(softmax(o1[..., None, :] @ W[:, None, :, :])[..., 0, :], rng.uniform((N, B)))
            logp, _ = categorical_log_prob(logits, a)
            state, r = step(state, xp.stack([a, c], axis=-1), rng.uniform((N, B, N_STEP)))
            r_prev = r[..., 0]
            for key, value in (("action", a), ("logp", logp), ("reward", r_prev), ("naive_reward", r[..., 1]), ("x", x)):
                out[key].append(value)
            episode["obs"].append(o1)
            episode["action"].append(c)
            episode["reward"].append(r[..., 1])
        W = naive_learn(W, xp.stack(episode["obs"], axis=-2), xp.stack(episode["action"], axis=-1),
                        xp.stack(episode["reward"], axis=-1), eta)
    return {**{k: xp.stack(v, axis=2) for k, v in out.items()}, "W": W}


@dataclasses.dataclass(frozen=True)
class CleanUpRun:
    """Meta-training of the GatedLinearRNN agent on CleanUp-lite against naive linear-softmax
    co-players (sizes ours: a CPU's)."""
    estimator: str = "coala"
    n_hidden: int = 16
    n_coplayers: int = 4
    B: int = 4
    M: int = 4
    T: int = 16
    eta: float = 0.1
    naive_std: float = 0.1
    lr: float = 0.003
    steps: int = 50
    seed: int = 0
    eps: float = 1e-8
    clip_norm: float | None = None


# The paper's CleanUp-lite shaping setting (App. B, hyperparameter table: meta-batch 512, B = 32,
# M = 100, T = 64, 3000 iterations, p_naive = 1), with the IPD meta agents' optimiser (Adam ε 1e-5,
# lr 3e-4, gradient norm clipped at 1) and width 32. Ours: GatedLinearRNN instead of Hawk, plain
# policy gradient instead of PPO, linear REINFORCE co-players. A GPU's scale: the teacher-forced
# pass alone caches ~10⁹ numbers per RNN activation; the CPU test runs it with a small meta-batch.
PAPER_CLEANUP = CleanUpRun(n_hidden=32, n_coplayers=512, B=32, M=100, T=64, lr=3e-4, steps=3000, eps=1e-5,
                           clip_norm=1.0)


def meta_policy(n_hidden: int) -> GatedLinearRNN:
    """The meta agent's network: 54 inputs, `n_hidden` units, 7 outputs (6 logits, value)."""
    return GatedLinearRNN(D_IN, n_hidden, N_ACTIONS + 1)


def meta_iteration(layer: GatedLinearRNN, params, W, rng, run: CleanUpRun):
    """One iteration's gradient: rollout, the RNN over the recorded inputs (N B, L, 54), the
    categorical loss, backward: (loss, grads, the rollout's dict)."""
    out = rollout(layer, params, W, rng, B=run.B, M=run.M, T=run.T, eta=run.eta)
    xp = namespace(out["reward"])
    N, B, L = out["reward"].shape
    y, cache = layer.forward(params, xp.reshape(out["x"], (N * B, L, D_IN)))
    loss, dy = policy_loss_gradient(run.estimator, xp.reshape(y, (N, B, L, N_ACTIONS + 1)), out["action"],
                                    out["reward"], run.T)
    _, grads = layer.backward(params, cache, xp.reshape(dy, (N * B, L, N_ACTIONS + 1)), need_dx=False)
    return loss, grads, out


def train_cleanup(run: CleanUpRun, *, quick_mode=None, log=None, seed_offset=0):
    """:func:`tasks.rnn_meta_agent.train_meta` on CleanUp-lite: fresh co-players W ~ N(0, naive_std²)
    each step; (params, history (steps, 2) of the mean per-step rewards: meta agent, co-players)."""
    return train_meta(run, meta_policy(run.n_hidden),
                      lambda rng: rng.normal((run.n_coplayers, D_OBS, N_ACTIONS), std=run.naive_std), meta_iteration,
                      name="CleanUp-lite", quick_mode=quick_mode, log=log, seed_offset=seed_offset)
