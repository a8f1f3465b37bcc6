"""The hyperteacher few-shot comparison of Schug et al. 2024 (arXiv:2312.15001, Sec. 4.1,
Tables A2–A8): a linear hypernetwork against ANIL on held-out module combinations, at CPU scale.

Teacher (official ``metax/data/dataset/teacher.py``, scaled down): an MLP whose two hidden
layers are generated, by one linear map, from the concatenation of two K-hot layer codes over
M modules; every pair of layer codes is a task, a fixed 25 % of the pairs is held out (OOD).
Targets are soft: softmax of the teacher logits normalised per task and class, at T = 0.1.
Learners: a linear hypernetwork (:class:`~tinynim.nn.HyperMLP`, the fast input is its code),
ANIL (:class:`AnilNet`, the fast input is its linear head) and MAML (:class:`TaskMLP`, the
fast input is every weight), each adapted by Adam from a learned shared start on each task's
support set and meta-trained on the query set, *first order* by default (our setting; the
official runs are second order, 200k outer steps, widths 128–512); :func:`unrolled_gradients`
is the second-order outer gradient, through the inner loop.
Measured by :func:`comparison`; the claims are in tasks/modular_teacher.py (P6.hyperteacher.*)."""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from tinynim.backend import asarray, namespace, zeros
from tinynim.experiment import scaled
from tinynim.losses import log_softmax
from tinynim.nn import ACTIVATIONS, MLP, HyperMLP, Layer
from tinynim.optim import Adam
from tinynim.random import RNG, as_rng
from tinynim.train import fit
from tinynim.tree import axpy as tree_axpy, sub as tree_sub, tree_map

from tasks.modular_teacher import code_gradient, infer_codes, masks_from, soft_cross_entropy_per_task


# -- the hyperteacher and the few-shot comparison (paper Sec. 4.1), at CPU scale ----------------

class AnilNetCache(NamedTuple):
    features: tuple     # the feature MLP's cache
    relu: object        # the ReLU's cache
    a: object           # (T, B, F) the features g(x)
    W: object           # (T, F, o) the per-task heads


class AnilNet(Layer):
    """ANIL (Raghu et al., arXiv:1909.09157), the paper's monolithic baseline: shared features
    g(x) = φ(MLP(x)) (NTK parametrisation, φ = ReLU by default) and a per-task linear head W_t, the fast input::

        f(x; W_t) = g(x) W_t / √F          x: (T, B, d)  W: (T, F, o)  out: (T, B, o)

    Backward: dW_t = g(x_t)ᵀ G_t / √F, dg = G Wᵀ / √F, then ReLU's and the MLP's backward.
    Input ``(x, W)`` like a hypernetwork's ``(x, z)``, so one inner loop adapts both."""

    def __init__(self, sizes, d_out: int, activation: str = "relu"):
        self.features = MLP(sizes, activation=activation, parametrization="ntk")
        self.relu = ACTIVATIONS[activation]()
        self.F, self.d_out = sizes[-1], d_out
        self.check_sizes(d_out=d_out)

    @property
    def param_shapes(self):
        return {"features": self.features.param_shapes}

    def init(self, rng, *, dtype=None, backend=None):
        return {"features": self.features.init(rng, dtype=dtype, backend=backend)}

    def forward(self, params, x):
        if not isinstance(x, tuple) or len(x) != 2:
            raise TypeError(f"{self.name}: expected x = (inputs, W), got {type(x).__name__}")
        inputs, W = x
        self.check_input(inputs, ndim=3, what="inputs")
        self.check_input(W, ndim=3, what="W", like=inputs)
        if tuple(W.shape) != (inputs.shape[0], self.F, self.d_out):
            raise ValueError(f"{self.name}: expected W of shape ({inputs.shape[0]}, {self.F}, {self.d_out}), "
                             f"got shape {tuple(W.shape)}")
        self.check_params(params, inputs)
        h, c_features = self.features.forward(params["features"], inputs)
        a, c_relu = self.relu.forward({}, h)                                  # (T, B, F)
        return (a @ W) / math.sqrt(self.F), AnilNetCache(c_features, c_relu, a, W)

    def backward(self, params, cache, dout):
        c_features, c_relu, a, W = cache
        self.check_dout(dout, tuple(a.shape[:2]) + (self.d_out,))
        xp = namespace(dout)
        dW = (xp.matrix_transpose(a) @ dout) / math.sqrt(self.F)              # (T, F, o)
        dh, _ = self.relu.backward({}, c_relu, (dout @ xp.matrix_transpose(W)) / math.sqrt(self.F))
        dx, g = self.features.backward(params["features"], c_features, dh)
        return (dx, dW), {"features": g}

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        return {"default": (AnilNet([3, 5, 4], 2, activation="tanh"), (rng.normal((2, 6, 3)), rng.normal((2, 4, 2))), {})}


class TaskMLPCache(NamedTuple):
    hs: tuple           # each layer's input h_l (T, B, d_l)
    acts: tuple         # each activation's cache (one fewer)
    Ws: tuple           # each layer's per-task weights W_l (T, d_l, d_{l+1})


class TaskMLP(Layer):
    """MAML's monolithic student (Finn et al., arXiv:1703.03400): an MLP on ``sizes`` whose
    *every* weight is the fast input, one flat vector w_t (P,) per task, P = Σ_l d_l d_{l+1};
    NTK parametrisation, no biases, φ between layers, none after the last::

        h_{l+1} = φ(h_l W_l / √d_l)  (linear for the last)   x: (T, B, d₀)  w: (T, P)  out: (T, B, d_L)

    with W_l the l-th (d_l, d_{l+1}) block of w_t (row-major). No slow params: the learned
    start w₀ (P,) is the meta-parameter. Backward: G_L = dout, dW_l = h_lᵀ G_l / √d_l,
    G_{l−1} = φ'(·) ⊙ (G_l W_lᵀ / √d_l); dw = the dW_l flattened and concatenated."""

    def __init__(self, sizes, activation: str = "relu"):
        if len(sizes) < 2:
            raise ValueError(f"TaskMLP: sizes must be [d_in, ..., d_out] with at least 2 entries, got {list(sizes)}")
        self.check_sizes(**{f"sizes[{i}]": n for i, n in enumerate(sizes)})
        if activation not in ACTIVATIONS:
            raise ValueError(f"TaskMLP: unknown activation {activation!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
        self.sizes, self.act = list(sizes), ACTIVATIONS[activation]()
        self.n_weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))     # P

    @property
    def param_shapes(self):
        return {}

    def init(self, rng, *, dtype=None, backend=None):
        return {}

    def forward(self, params, x):
        if not isinstance(x, tuple) or len(x) != 2:
            raise TypeError(f"{self.name}: expected x = (inputs, w), got {type(x).__name__}")
        h, w = x
        self.check_input(h, ndim=3, last=self.sizes[0], what="inputs")
        self.check_input(w, ndim=2, last=self.n_weights, what="w", like=h)
        if w.shape[0] != h.shape[0]:
            raise ValueError(f"{self.name}: expected w of shape ({h.shape[0]}, {self.n_weights}), got shape {tuple(w.shape)}")
        xp = namespace(h)
        hs, acts, Ws, at = [], [], [], 0
        for l, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            if l:
                h, c = self.act.forward({}, h)
                acts.append(c)
            W = xp.reshape(w[:, at:at + a * b], (w.shape[0], a, b))           # (T, a, b)
            hs.append(h)
            Ws.append(W)
            h, at = (h @ W) / math.sqrt(a), at + a * b
        return h, TaskMLPCache(tuple(hs), tuple(acts), tuple(Ws))

    def backward(self, params, cache, dout):
        hs, acts, Ws = cache
        self.check_dout(dout, (hs[0].shape[0], hs[0].shape[1], self.sizes[-1]))
        xp = namespace(dout)
        dws = []
        for l in reversed(range(len(Ws))):
            s = 1.0 / math.sqrt(self.sizes[l])
            dws.append(xp.reshape(s * (xp.matrix_transpose(hs[l]) @ dout), (dout.shape[0], -1)))
            dout = s * (dout @ xp.matrix_transpose(Ws[l]))                     # (T, B, d_l)
            if l:
                dout, _ = self.act.backward({}, acts[l - 1], dout)
        return (dout, xp.concat(dws[::-1], axis=-1)), {}

    @staticmethod
    def examples(rng):
        rng = as_rng(rng)
        net = TaskMLP([3, 4, 5, 2], activation="tanh")
        return {"default": (net, (rng.normal((2, 6, 3)), rng.normal((2, net.n_weights))), {})}


@dataclasses.dataclass(frozen=True)
class FewShot:
    """The hyperteacher (official metax/data/dataset/teacher.py), scaled for a CPU, and one
    meta-learner on it. Teacher: HyperMLP(2M, [n_in, hidden, hidden, hidden, classes]) with the
    two hidden layers generated from the concatenation of two K-hot codes (one per layer, each
    with 1..K hot entries), input and output layers shared; a fixed fraction of the C² layer-code
    combinations is held out (OOD). Targets: softmax of the teacher logits, normalised per task
    and class over 1000 fixed inputs, at temperature 0.1. Learner "hnet": a linear hypernetwork
    student with the same layout and a code of M̂ entries, adapted by Adam on the code from one
    shared start (its generated modules at std 1/√M̂, like the official bank, so that W(ẑ) has
    O(1) entries); "anil": :class:`AnilNet`, adapted by Adam on its head from a learned
    initial head; "maml": :class:`TaskMLP` (3 hidden layers of `width`), adapted by Adam on
    all its weights from a learned start. All: first-order outer gradient on the query set
    unless ``second_order`` (our setting; the official runs are second order), AdamW outer
    optimiser (``weight_decay``, clipped at global norm 1). :data:`LEARNERS` sets each
    learner's inner loop for the claims."""
    learner: str = "hnet"
    M: int = 4
    K: int = 2
    n_in: int = 8
    hidden: int = 16
    classes: int = 4
    shots: int = 64
    frac_ood: float = 0.25
    temperature: float = 0.1
    width: int = 32                 # the student's hidden width (hnet) / feature width (anil)
    M_student: int = 16
    tasks_per_step: int = 16
    steps: int = 500
    lr: float = 3e-3
    inner_steps: int = 10
    inner_lr: float = 0.1
    second_order: bool = False      # the outer gradient through the inner loop (unrolled_gradients)
    weight_decay: float = 0.0       # the outer AdamW's decoupled weight decay
    seed: int = 0

    def reseeded(self, offset: int) -> "FewShot":
        return dataclasses.replace(self, seed=self.seed + offset)


def layer_codes(M: int, K: int) -> np.ndarray:
    """Every code with 1..K hot entries (value 1) over M modules: (C, M), C = Σ_{k≤K} binom(M, k)."""
    return masks_from([c for k in range(1, K + 1) for c in itertools.combinations(range(M), k)], M)


class Hyperteacher(NamedTuple):
    net: HyperMLP           # the teacher network
    params: dict
    codes: np.ndarray       # (C², 2M) host: every pair of layer codes
    train: np.ndarray       # indices of the training combinations
    ood: np.ndarray         # indices of the held-out combinations
    mu: object              # (C², 1, classes) teacher logit mean per task and class
    sd: object              # (C², 1, classes) and standard deviation (over 1000 fixed inputs)


def hyperteacher(fs: FewShot) -> Hyperteacher:
    """The teacher, every pair of layer codes, a fixed random fraction frac_ood of them held
    out, and the per-task logit statistics over 1000 fixed inputs U[−1, 1] (RNG(seed + 2))
    that normalise the targets, as the official generator does."""
    net = HyperMLP(2 * fs.M, [fs.n_in, fs.hidden, fs.hidden, fs.hidden, fs.classes],
                   generated=(False, True, True, False))
    params = net.init(RNG(fs.seed))
    c = layer_codes(fs.M, fs.K)
    codes = np.concatenate([np.repeat(c, len(c), axis=0), np.tile(c, (len(c), 1))], axis=1)   # (C², 2M)
    order = np.random.default_rng(fs.seed + 1).permutation(len(codes))
    n_ood = int(round(fs.frac_ood * len(codes)))
    ref = RNG(fs.seed + 2).uniform((1, 1000, fs.n_in), -1.0, 1.0)
    xp = namespace(ref)
    logits = net(params, (xp.broadcast_to(ref, (len(codes), 1000, fs.n_in)), asarray(codes)))
    return Hyperteacher(net, params, codes, np.sort(order[n_ood:]), np.sort(order[:n_ood]),
                        xp.mean(logits, axis=1, keepdims=True), xp.std(logits, axis=1, keepdims=True))


def few_shot_targets(fs: FewShot, teacher: Hyperteacher, x, idx):
    """softmax(((logits − μ_t)/σ_t) / temperature) for the tasks idx (host ints) at x (T, B, n_in)."""
    xp = namespace(x)
    at = xp.asarray(idx, dtype=xp.int64, device=array_api_compat.device(x))
    logits = teacher.net(teacher.params, (x, asarray(teacher.codes[idx])))
    mu, sd = xp.take(teacher.mu, at, axis=0), xp.take(teacher.sd, at, axis=0)
    return xp.exp(log_softmax((logits - mu) / (sd * fs.temperature)))


def few_shot_learner(fs: FewShot):
    """(network, slow params {"net", "start"}): the learner of `fs` (FewShot docstring);
    "start" is the fast input every task's inner loop starts from (a code, or a head)."""
    rng = RNG(fs.seed + 3)
    if fs.learner == "hnet":
        net = HyperMLP(fs.M_student, [fs.n_in, fs.width, fs.width, fs.width, fs.classes],
                       generated=(False, True, True, False))
        params = net.init(rng)
        for i in ("1", "2"):                    # bank std 1/√M̂: W(ẑ) of O(1) entries for a code of O(1) entries
            params[i] = {"Theta": params[i]["Theta"] / math.sqrt(fs.M_student)}
        return net, {"net": params, "start": rng.normal((fs.M_student,))}
    if fs.learner == "anil":
        net = AnilNet([fs.n_in, fs.width, fs.width], fs.classes)
        return net, {"net": net.init(rng), "start": zeros((fs.width, fs.classes))}
    if fs.learner == "maml":
        net = TaskMLP([fs.n_in, fs.width, fs.width, fs.width, fs.classes])
        return net, {"net": {}, "start": rng.normal((net.n_weights,))}
    raise ValueError(f"few_shot_learner: learner must be one of {tuple(LEARNERS)}, got {fs.learner!r}")


def _episode(fs, teacher, rng, idx):
    """Support and query sets of the tasks idx (host ints): ((x_s, y_s), (x_q, y_q))."""
    sets = []
    for _ in range(2):
        x = rng.uniform((len(idx), fs.shots, fs.n_in), -1.0, 1.0)
        sets.append((x, few_shot_targets(fs, teacher, x, idx)))
    return sets


def _adapt(fs, net, slow, x, y):
    """The inner loop: Adam on each task's code (hnet) or head (anil) on its support set,
    from the learned start shared by all tasks."""
    fast, _ = infer_codes(net, slow["net"], x, y, slow["start"], fs.inner_steps, fs.inner_lr,
                          loss=soft_cross_entropy_per_task)
    return fast


def query_gradients(fs: FewShot, net, slow, support, query):
    """First-order meta-gradient of one episode: adapt the fast inputs on the support set
    (x_s, y_s), then (mean query loss, grads) with the adapted fast inputs held fixed:
    ∂_θ of the mean query loss for the network, and for the shared start the mean over tasks
    of dL_t/dfast_t at the adapted point (first-order MAML, arXiv:1703.03400)."""
    fast = _adapt(fs, net, slow, *support)
    losses, dfast, grads = code_gradient(net, slow["net"], query[0], fast, query[1], soft_cross_entropy_per_task)
    xp = namespace(losses)
    return xp.mean(losses), {"net": grads, "start": xp.mean(dfast, axis=0)}


def unrolled_gradients(fs: FewShot, net, slow, support, query):
    """Second-order meta-gradient of one episode (MAML, arXiv:1703.03400, through the whole
    inner loop): d/dθ and d/d(start) of the mean query loss (1/T) Σ_t L_q(z_t^K, θ), where
    z_t^K is the end of the inner loop's K Adam steps on the support loss L_s from the start.

    Forward (recorded): g_k = ∇_z L_s(z_k, θ), m_{k+1} = β₁m_k + (1−β₁)g_k,
    v_{k+1} = β₂v_k + (1−β₂)g_k², z_{k+1} = z_k − (α/c₁) m_{k+1} / (√v_{k+1}/c₂ + ε),
    c₁ = 1 − β₁^{k+1}, c₂ = √(1 − β₂^{k+1}) (tinynim's Adam, operation for operation).
    Reverse, with adjoints a_z, a_m, a_v of (z_{k+1}, m_{k+1}, v_{k+1}) (a_z = ∇_z L_q / T at
    the end, a_m = a_v = 0), d = √v/c₂ + ε::

        a_m ← a_m − (α/c₁) a_z / d,   a_v ← a_v + (α/c₁) a_z m / (2 c₂ √v d²)
        a_g = (1−β₁) a_m + 2(1−β₂) g a_v
        a_z ← a_z + H_zz a_g,   a_θ ← a_θ + ∂_θ(g · a_g) = a_θ + d/dδ ∇_θ L_s(z_k + δ a_g)|₀
        a_m ← β₁ a_m,   a_v ← β₂ a_v

    Both second-order terms are one directional derivative of the hand gradients along a_g,
    taken by central differences (step δ = ε_mach^{1/3} along a_g / max|a_g|: truncation and
    rounding both ~ε_mach^{2/3}, as DARTS, arXiv:1806.09055). The start's gradient is Σ_t a_z
    at step 0 (every task starts from it). Computed in float64 whatever the inputs' dtype:
    Adam's m/√v is nearly scale-free in g, so its a_m and a_v terms cancel to a small a_g
    (~1/|g| each); float32 loses it (measured: a meta-gradient norm of 2.5e3 vs 0.29).
    Returns (mean query loss, {"net", "start"}) in the inputs' dtype."""
    xp, dtype = namespace(support[0]), support[0].dtype
    wide = lambda tree: tree_map(lambda a: xp.astype(a, xp.float64), tree)
    (xs, ys), (xq, yq), slow = wide(support), wide(query), wide(slow)
    params, T, loss = slow["net"], xs.shape[0], soft_cross_entropy_per_task
    opt = Adam(fs.inner_lr)
    z = xp.broadcast_to(slow["start"], (T,) + tuple(slow["start"].shape))
    state, tape = opt.init({"z": z}), []
    for _ in range(fs.inner_steps):
        _, g, _ = code_gradient(net, params, xs, z, ys, loss)
        new, state = opt.update({"z": g}, state, {"z": z})
        tape.append((z, g, state["m"]["z"], state["v"]["z"], state["step"]))
        z = new["z"]
    losses, dz, a_theta = code_gradient(net, params, xq, z, yq, loss)
    a_z, a_m, a_v = dz / T, xp.zeros_like(z), xp.zeros_like(z)
    delta = xp.finfo(z.dtype).eps ** (1.0 / 3.0)
    b1, b2, lr = opt.b1, opt.b2, opt.lr
    for z, g, m, v, t in reversed(tape):
        c1, c2 = 1.0 - b1 ** t, math.sqrt(1.0 - b2 ** t)
        r = xp.sqrt(v)
        d = r / c2 + opt.eps
        a_m = a_m - (lr / c1) * a_z / d
        a_v = a_v + xp.where(r > 0, (lr / c1) * a_z * m / (2.0 * c2 * xp.where(r > 0, r, 1.0) * d * d), 0.0)
        a_g = (1.0 - b1) * a_m + 2.0 * (1.0 - b2) * g * a_v
        s = xp.max(xp.abs(a_g))
        s = xp.where(s > 0, s, 1.0)
        _, g_plus, t_plus = code_gradient(net, params, xs, z + (delta / s) * a_g, ys, loss)
        _, g_minus, t_minus = code_gradient(net, params, xs, z - (delta / s) * a_g, ys, loss)
        a_z = a_z + (g_plus - g_minus) * (s / (2.0 * delta))
        a_theta = tree_axpy(T * s / (2.0 * delta), tree_sub(t_plus, t_minus), a_theta)
        a_m, a_v = b1 * a_m, b2 * a_v
    narrow = lambda tree: tree_map(lambda a: xp.astype(a, dtype), tree)
    return narrow(xp.mean(losses)), narrow({"net": a_theta, "start": xp.sum(a_z, axis=0)})


def few_shot_train(fs: FewShot, *, quick_mode=None, log=None, eval_every=None):
    """Meta-training: each step draws tasks_per_step training tasks, adapts on the support
    set, and steps the slow params along the first-order meta-gradient (∂_θ of the query loss
    at the adapted fast params; for the start: the mean of the tasks' fast-input gradients,
    first-order MAML), or the second-order one (``fs.second_order``: :func:`unrolled_gradients`).
    With ``eval_every``, the history records the OOD accuracy ("ood_acc", at "eval_step").
    Returns (:class:`Hyperteacher`, learner (net, slow), history)."""
    teacher = hyperteacher(fs)
    net, slow = few_shot_learner(fs)
    rng = RNG(fs.seed + 4)

    def loss_and_grads(slow, step):
        idx = teacher.train[rng.integers(0, len(teacher.train), (fs.tasks_per_step,), host=True)]
        return (unrolled_gradients if fs.second_order else query_gradients)(fs, net, slow,
                                                                            *_episode(fs, teacher, rng, idx))

    steps = scaled(fs.steps, quick_mode=quick_mode)
    slow, history = fit(lambda p, batch, step: loss_and_grads(p, step), slow,
                        Adam(fs.lr, weight_decay=fs.weight_decay, clip_norm=1.0),
                        steps=steps, log=log, log_every=max(steps // 5, 1), eval_every=eval_every,
                        eval_fn=lambda p, done: {"ood_acc": few_shot_accuracy(fs, teacher, (net, p), teacher.ood)})
    return teacher, (net, slow), history


def few_shot_accuracy(fs, teacher: Hyperteacher, learner, idx, seed: int = 0, min_tasks: int = 64) -> float:
    """Query accuracy (argmax of the prediction = argmax of the soft target) after adapting
    on each task's support set, over the tasks idx (host ints), each drawn as often as
    needed for at least `min_tasks` episodes (K = 1 holds out only 4 combinations)."""
    net, slow = learner
    idx = np.repeat(idx, -(-min_tasks // len(idx)))
    (xs, ys), (xq, yq) = _episode(fs, teacher, RNG(20_000 + seed), idx)
    pred = net(slow["net"], (xq, _adapt(fs, net, slow, xs, ys)))
    xp = namespace(pred)
    return float(xp.mean(xp.astype(xp.argmax(pred, axis=-1) == xp.argmax(yq, axis=-1), pred.dtype)))


def few_shot_metrics(fs: FewShot, *, quick_mode=None, log=None, eval_every=None) -> dict:
    """Query accuracy on the training combinations and on the held-out ones (OOD); with
    ``eval_every``, also "curve": (outer steps, OOD accuracy there) over training."""
    teacher, learner, history = few_shot_train(fs, quick_mode=quick_mode, log=log, eval_every=eval_every)
    out = {"train_acc": few_shot_accuracy(fs, teacher, learner, teacher.train),
           "ood_acc": few_shot_accuracy(fs, teacher, learner, teacher.ood)}
    if eval_every:
        out["curve"] = (list(history["eval_step"]), list(history["ood_acc"]))
    return out


# -- the comparison of the claims ------------------------------------------------------------

LEARNERS = {"hnet": dict(learner="hnet", inner_lr=0.3), "anil": dict(learner="anil", inner_lr=0.1, inner_steps=30),
            "maml": dict(learner="maml", inner_lr=0.03)}
COMPARISONS = {"hyperteacher": FewShot(K=2), "hyperteacher_k1": FewShot(K=1)}


def comparison(name: str, *, quick_mode=None, log=None, seed_offset: int = 0, eval_every=None) -> dict:
    """Every learner of :data:`LEARNERS` on the teacher and split of ``COMPARISONS[name]``
    (seed shifted by seed_offset), in the active dtype (the claims: float32):
    ``{hnet_train, hnet_ood, anil_train, anil_ood, maml_train, maml_ood, ood_gap, maml_gap,
    hnet_gen_gap}``, accuracies in [0, 1], ood_gap = hnet_ood − anil_ood,
    maml_gap = hnet_ood − maml_ood, hnet_gen_gap = hnet_train − hnet_ood; with ``eval_every``
    also ``{learner}_curve``: (outer steps, OOD accuracy) over training."""
    if name not in COMPARISONS:
        raise ValueError(f"comparison: unknown experiment {name!r}; known: {tuple(COMPARISONS)}")
    out = {}
    for learner, settings in LEARNERS.items():
        fs = dataclasses.replace(COMPARISONS[name].reseeded(seed_offset), **settings)
        m = few_shot_metrics(fs, quick_mode=quick_mode, log=log, eval_every=eval_every)
        out[f"{learner}_train"], out[f"{learner}_ood"] = m["train_acc"], m["ood_acc"]
        if eval_every:
            out[f"{learner}_curve"] = m["curve"]
    out["ood_gap"] = out["hnet_ood"] - out["anil_ood"]
    out["maml_gap"] = out["hnet_ood"] - out["maml_ood"]
    out["hnet_gen_gap"] = out["hnet_train"] - out["hnet_ood"]
    return out
