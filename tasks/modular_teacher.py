"""Modular teacher–student (Schug et al. 2024, *Discovering modular solutions that generalize
compositionally*, arXiv:2312.15001): identification of modules, and compositional generalisation.

**Tasks are codes.** A task is a code z ∈ R^M with few non-zero entries; its network's weights
are the same linear combination of M modules, W(z) = Σ_m z_m Θ_m (a linear hypernetwork,
:class:`tinynim.nn.HyperLinear`). The theory teacher and student (paper Eq. 3–4) are
:class:`tinynim.nn.HyperMLP` ``(M, [n, h, o], generated=(True, False))``::

    f(x; z) = ReLU(x W(z) / √n) A / √h        x: (T, B, n)  z: (T, M)  Θ: (M, n, h)  A: (h, o)

(the 1/√h of the readout is the NTK parametrisation of tinynim's Linear; the paper writes A
unscaled, which changes the teacher's scale only). The student never sees z: for each task
it infers its own code ẑ ∈ R^M̂ by gradient descent on L(ẑ, θ̂) = ½ mean_{x, out} (f̂ − f)².

**Support.** A training distribution draws codes from *families*, each a binary mask b_k
(the entries a code of that family may use). The support is *compositional* if every module
is in some mask (Σ_k b_k > 0 entrywise) and *connected* if the graph of families, with an
edge when two masks share a module, is connected (paper Def. 3.1, 3.2). Theorem 1: with a
compositional and connected support, a student that reaches zero loss on the training tasks
reaches zero loss on *every* code; Theorem 9 says d_k + 1 tasks per family suffice
(d_k = |b_k|), :func:`task_count`. Theorem 2: zero loss on every code holds iff the student is
the teacher up to an invertible map F of the codes, a permutation σ and positive scales c of
the hidden units (:func:`identified_student`). A disconnected support admits students that
are exact on every training family and wrong elsewhere (:func:`counterexample_student`, the
paper's Appendix A.3).

**Meta-learning** (paper Eq. 2, min_θ E_z[min_ẑ L(ẑ, θ)]): the inner loop runs Adam on the
codes of all tasks at once (one batched array op per step, every task from one shared start
z₀, :func:`infer_codes`); the outer gradient is first order, ∂_θ L at the inferred ẑ with ẑ
held fixed, which by the envelope theorem *is* d/dθ min_ẑ L when the inner loop has
converged (:func:`outer_gradient`). At CPU scale (our setting) training uses a fixed pool of
tasks, ``tasks_per_family`` per family, with fresh inputs x every step and *persistent* codes:
each outer step starts the inner loop from the previous step's codes (``inner_steps`` Adam
steps, a warm start), so the inner problem stays solved without hundreds of steps per outer
step. Evaluation re-infers every code from z₀ with :data:`EVAL_INNER_STEPS` steps.

Metrics: relative loss mean (f̂ − f)² / mean f² on the training families and on held-out
combinations (OOD); R² of a ridge regression decoding z from ẑ; module alignment.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import array_api_compat
import numpy as np

from tinynim.backend import asarray, namespace, to_numpy, use_dtype
from tinynim.claims import Claim
from tinynim.losses import log_softmax
from tinynim.experiment import scaled
from tinynim.nn import HyperLinear, HyperMLP
from tinynim.optim import Adam, linear_cooldown
from tinynim.random import RNG, as_rng
from tinynim.train import fit
from tinynim.tree import scale as tree_scale

CODE_KINDS = ("continuous", "discrete")


# -- supports: families of task codes ------------------------------------------------------

def masks_from(pairs, M: int) -> np.ndarray:
    """Binary masks (K, M) from K tuples of module indices, e.g. ``[(0, 1), (1, 2)]``."""
    masks = np.zeros((len(pairs), M))
    for k, modules in enumerate(pairs):
        if not modules or min(modules) < 0 or max(modules) >= M:
            raise ValueError(f"masks_from: family {k} = {modules!r} must name modules in 0..{M - 1}")
        masks[k, list(modules)] = 1.0
    return masks


def support(name: str, M: int = 6) -> np.ndarray:
    """The families (K, M) of a named support:

    * "ring": pairs (i, i+1 mod M)                                  compositional, connected
    * "triangles": a ring inside each half {0..M/2−1}, {M/2..M−1}    compositional, disconnected
    * "onehot": single modules (K = 1)                              compositional, disconnected
    * "connected": single modules and pairs (i, i+1), (i, i+2) mod M (the hyperteacher's)
    * "disconnected": single modules and the pairs inside each half (the hyperteacher's)
    * "counterexample": (0,1), (1,2), (3,4), (4,5) (paper App. A.3), disconnected; M = 6
    * "bridged": the counterexample plus (2, 3), connected; M = 6
    """
    half = M // 2
    rings = lambda blocks: [(b[i], b[(i + 1) % len(b)]) for b in blocks for i in range(len(b))]
    families = {
        "ring": lambda: rings([list(range(M))]),
        "triangles": lambda: rings([list(range(half)), list(range(half, M))]),
        "onehot": lambda: [(i,) for i in range(M)],
        "connected": lambda: [(i,) for i in range(M)] + [(i, (i + d) % M) for d in (1, 2) for i in range(M)],
        "disconnected": lambda: [(i,) for i in range(M)] + [p for b in (range(half), range(half, M))
                                                            for p in itertools.combinations(b, 2)],
        "counterexample": lambda: [(0, 1), (1, 2), (3, 4), (4, 5)],
        "bridged": lambda: [(0, 1), (1, 2), (3, 4), (4, 5), (2, 3)],
    }
    if name not in families:
        raise ValueError(f"support: unknown support {name!r}; known: {', '.join(families)}")
    if M % 2 or M < 6 or (name in ("counterexample", "bridged") and M != 6):
        raise ValueError(f"support: {name!r} needs an even M >= 6 (M = 6 for the counterexample), got M = {M}")
    return masks_from(list(dict.fromkeys(tuple(sorted(p)) for p in families[name]())), M)


def is_compositional(masks) -> bool:
    """Def. 3.1: every module is used by some family (Σ_k b_k has no zero entry)."""
    return bool(np.all(np.asarray(masks).sum(axis=0) > 0))


def is_connected(masks) -> bool:
    """Def. 3.2: the families, linked when their masks share a module, form one component."""
    b = np.asarray(masks) > 0
    linked = (b.astype(int) @ b.T.astype(int)) > 0                      # (K, K)
    seen, frontier = {0}, [0]
    while frontier:
        k = frontier.pop()
        for j in np.flatnonzero(linked[k]):
            if int(j) not in seen:
                seen.add(int(j))
                frontier.append(int(j))
    return len(seen) == b.shape[0]


def task_count(masks) -> int:
    """Σ_k (d_k + 1) with d_k = |b_k| = dim span of family k: the tasks Theorem 9 needs."""
    return int(sum(int(b.sum()) + 1 for b in np.asarray(masks) > 0))


def held_out(masks, k: int = 2) -> np.ndarray:
    """Every k-hot mask of M modules that is not a family of `masks`: the OOD combinations."""
    M = masks.shape[1]
    seen = {tuple(np.flatnonzero(b)) for b in masks}
    return masks_from([c for c in itertools.combinations(range(M), k) if c not in seen], M)


def sample_codes(rng, masks, count: int, kind: str = "continuous") -> np.ndarray:
    """`count` codes (count, M), host numpy, family k = i mod K for code i (balanced).

    discrete: z = b / ‖b‖. continuous (the official run_theory.py): w ~ Exp(1) on the mask,
    w ← w / (Σw + 1), z = (w/2 + 1/2) ⊙ b, so the non-zero entries lie in [1/2, 1].
    """
    if kind not in CODE_KINDS:
        raise ValueError(f"sample_codes: kind must be one of {CODE_KINDS}, got {kind!r}")
    b = np.asarray(masks, dtype=np.float64)[np.arange(count) % len(masks)]     # (count, M)
    if kind == "discrete":
        return b / np.linalg.norm(b, axis=1, keepdims=True)
    w = as_rng(rng).np.exponential(size=b.shape) * b
    w = w / (w.sum(axis=1, keepdims=True) + 1.0)
    return (0.5 * w + 0.5) * b


# -- teacher and student ---------------------------------------------------------------------

def network(M: int, n: int, h: int, o: int) -> HyperMLP:
    """f(x; z) = ReLU(x W(z)/√n) A/√h: the theory teacher's and student's form."""
    return HyperMLP(M, [n, h, o], generated=(True, False))


def teacher(M: int, n: int, h: int, o: int, seed: int = 0, *, equal_readouts: bool = False):
    """(network, params): Θ, A ~ N(0, 1) (active backend); with equal_readouts every hidden
    unit has the same readout row A_i = a, |a| + 1/2 (the counterexample's teacher)."""
    net = network(M, n, h, o)
    params = net.init(RNG(seed))
    if equal_readouts:
        a = np.abs(RNG(seed + 1).normal((1, o), host=True)) + 0.5
        params["1"]["W"] = _like(np.repeat(a, h, axis=0), params["1"]["W"])
    return net, params


def inputs(rng, T: int, B: int, n: int):
    """x ~ U[−√3, √3]^n (unit variance), (T, B, n) on the active backend."""
    return rng.uniform((T, B, n), -math.sqrt(3.0), math.sqrt(3.0))


def _like(a, ref):
    """Host `a` as an array of `ref`'s namespace, dtype and device."""
    xp = namespace(ref)
    return xp.asarray(np.asarray(a), dtype=ref.dtype, device=array_api_compat.device(ref))


def identified_student(teacher_params, F, perm, scales) -> dict:
    """The student that Theorem 2 allows: f̂(x; F z) = f(x; z) for every code z.

    With F (M, M) invertible, a permutation σ = perm of the h hidden units and scales c > 0::

        Θ̂_m[:, j] = c_j Σ_k (F⁻¹)_{k m} Θ_k[:, σ(j)],   Â[j, :] = A[σ(j), :] / c_j

    Then Σ_m (Fz)_m Θ̂_m[:, j] = c_j Σ_k z_k Θ_k[:, σ(j)] (the F's cancel), so hidden unit j is
    c_j times teacher unit σ(j), and ReLU(c u) = c ReLU(u) for c > 0 undoes the scale in Â.
    For c_j < 0 that last step fails: the student is then wrong. F, perm, scales: host arrays.
    """
    Theta, A = teacher_params["0"]["Theta"], teacher_params["1"]["W"]
    M, n, h = Theta.shape
    perm = np.asarray(perm)
    if sorted(perm.tolist()) != list(range(h)) or np.shape(F) != (M, M) or np.shape(scales) != (h,):
        raise ValueError(f"identified_student: expected F ({M}, {M}), perm a permutation of {h} units and "
                         f"scales ({h},), got {np.shape(F)}, {perm.tolist()}, {np.shape(scales)}")
    xp = namespace(Theta)
    Finv, c = _like(np.linalg.inv(np.asarray(F, dtype=np.float64)), Theta), _like(scales, Theta)
    idx = xp.asarray(perm, dtype=xp.int64, device=array_api_compat.device(Theta))
    Tp = xp.reshape(xp.take(Theta, idx, axis=2), (M, n * h))                 # Θ_k[:, σ(j)]
    student = xp.reshape(Finv.T @ Tp, (M, n, h)) * c                          # (M, n, h)
    return {"0": {"Theta": student}, "1": {"W": xp.take(A, idx, axis=0) / c[:, None]}}


def counterexample_student(teacher_params, perm, group=(3, 4, 5)) -> dict:
    """Teacher with equal readouts, its hidden units permuted by `perm` in the modules of
    `group` only: Θ̂_m = Θ_m[:, perm] for m ∈ group, Θ̂_m = Θ_m otherwise, Â = A.

    On a code using modules of one side only, the hidden units are the teacher's (or a
    permutation of them), and Σ_i ReLU(u_i) a is permutation invariant: zero loss on every
    family of the disconnected "counterexample" support. A code mixing both sides (e.g.
    e₀ + e₅) adds unit i of one side to unit perm(i) of the other: a different function.
    """
    Theta = teacher_params["0"]["Theta"]
    xp = namespace(Theta)
    idx = xp.asarray(np.asarray(perm), dtype=xp.int64, device=array_api_compat.device(Theta))
    rows = [xp.take(Theta[m, ...], idx, axis=1) if m in group else Theta[m, ...] for m in range(Theta.shape[0])]
    return {"0": {"Theta": xp.stack(rows)}, "1": dict(teacher_params["1"])}


def relative_loss(net, params, x, z, y) -> float:
    """mean (f(x; z) − y)² / mean y² over all tasks, samples and outputs."""
    xp = namespace(x)
    out, _ = net.forward(params, (x, z))
    return float(xp.mean((out - y) ** 2) / xp.mean(y ** 2))


# -- inner and outer loop --------------------------------------------------------------------

def mse_per_task(out, y):
    """(L_t = ½ mean_{B, o} (out_t − y_t)² for each task (T,), dΣ_t L_t/d(out) = (out − y)/(B·o))."""
    xp = namespace(out)
    T, B, o = out.shape
    r = out - y                                                               # (T, B, o)
    return 0.5 * xp.mean(xp.reshape(r * r, (T, B * o)), axis=1), r / (B * o)


def soft_cross_entropy_per_task(logits, y):
    """(L_t = mean_B −Σ_c y log softmax(logits) for each task (T,), (softmax − y)/B): the KL
    loss to soft targets y up to their entropy (a constant), with the same gradient."""
    xp = namespace(logits)
    logp = log_softmax(logits)                                                # (T, B, C)
    return -xp.mean(xp.sum(y * logp, axis=-1), axis=1), (xp.exp(logp) - y) / logits.shape[1]


def code_gradient(net, params, x, z, y, loss=mse_per_task):
    """(per-task losses (T,), dL_t/dz_t (T, ...), grads of Σ_t L_t / T w.r.t. the params):
    `loss` gives each task's loss and a dout whose task-t slice is dL_t/d(out_t), so each
    task's fast input z_t (a code, or an ANIL head) gets its own gradient."""
    out, cache = net.forward(params, (x, z))
    losses, dout = loss(out, y)
    (_, dz), grads = net.backward(params, cache, dout)                        # grads of Σ_t L_t
    return losses, dz, tree_scale(grads, 1.0 / out.shape[0])


def infer_codes(net, params, x, y, z0, steps: int, lr: float, state=None, loss=mse_per_task):
    """Adam on the fast inputs (codes) of all T tasks at once, one array op a step:
    ``(ẑ, adam state)``. Without `state`, z0 is one task's start, shared by every task;
    with `state` (continuing an earlier call: a warm start) z0 is that call's ẑ (T, ...).
    Each task moves by its own gradient dL_t/dz_t."""
    xp = namespace(x)
    z = z0 if state is not None else xp.broadcast_to(z0, (x.shape[0],) + tuple(z0.shape))
    opt = Adam(lr)
    state = opt.init({"z": z}) if state is None else state
    for _ in range(steps):
        _, dz, _ = code_gradient(net, params, x, z, y, loss)
        new, state = opt.update({"z": dz}, state, {"z": z})
        z = new["z"]
    return z, state


def outer_gradient(net, params, x, z_hat, y):
    """First-order outer step: (mean task loss, ∂_θ (1/T) Σ_t L_t(ẑ_t, θ)) with ẑ held fixed;
    by the envelope theorem, d/dθ min_ẑ L = ∂_θ L at the minimiser."""
    losses, _, grads = code_gradient(net, params, x, z_hat, y)
    return float(namespace(losses).mean(losses)), grads


def meta_step(net, inner_steps: int, inner_lr: float):
    """One first-order meta step as a pure ``loss_and_grads(params, (x, y, z0), step)``:
    :func:`infer_codes` from the shared start z0, then the outer gradient at the inferred codes
    (mean task loss as an array, as :func:`outer_gradient` without its ``float``). Traceable:
    ``tinynim.compile`` compiles it whole (the inner loop unrolled)."""
    def loss_and_grads(params, batch, step):
        x, y, z0 = batch
        z, _ = infer_codes(net, params, x, y, z0, inner_steps, inner_lr)
        losses, _, grads = code_gradient(net, params, x, z, y)
        return namespace(losses).mean(losses), grads
    return loss_and_grads


def best_codes_linear(layer: HyperLinear, params, x, y):
    """argmin_ẑ ½ mean (x W(ẑ)/√n − y)² per task, in closed form (the student is linear in ẑ):
    features Φ_t[:, m] = vec(x_t Θ_m)/√n, ẑ_t = (Φ_tᵀ Φ_t)⁻¹ Φ_tᵀ vec(y_t).            (T, M)"""
    xp = namespace(x)
    T, B, n = x.shape
    M, o = layer.d_code, layer.d_out
    Theta = xp.reshape(xp.permute_dims(params["Theta"], (1, 0, 2)), (n, M * o))   # (n, M·o)
    Phi = layer.scale * xp.reshape(xp.reshape(x, (T * B, n)) @ Theta, (T, B, M, o))
    Phi = xp.reshape(xp.permute_dims(Phi, (0, 1, 3, 2)), (T, B * o, M))      # (T, B·o, M)
    rhs = xp.matrix_transpose(Phi) @ xp.reshape(y, (T, B * layer.d_out, 1))   # (T, M, 1)
    return xp.linalg.solve(xp.matrix_transpose(Phi) @ Phi, rhs)[..., 0]


# -- metrics ---------------------------------------------------------------------------------

def decoding_r2(z_hat, z, l2: float = 0.01) -> float:
    """R² of ridge regression (no intercept, penalty l2) decoding z (T, M) from ẑ (T, M̂),
    one regression per module, averaged (official ``ridge_r2_score``)."""
    Zh, Z = np.asarray(to_numpy(z_hat), dtype=np.float64), np.asarray(to_numpy(z), dtype=np.float64)
    W = np.linalg.solve(Zh.T @ Zh + l2 * np.eye(Zh.shape[1]), Zh.T @ Z)
    ss_res = ((Z - Zh @ W) ** 2).sum(axis=0)
    ss_tot = ((Z - Z.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1.0 - ss_res / ss_tot))


def module_alignment(teacher_params, student_params, z, z_hat) -> float:
    """min over teacher hidden units i of max over student units j of cos(Θ_i, Θ̂_j F⁺).

    F: least squares z ≈ ẑ Fᵀ (T tasks); student unit j in the teacher's code basis is
    U_j = Σ_m F⁺_{m k} Θ̂_m[:, j] (its pre-activation weights as a function of z); teacher
    unit i is Θ_k[:, i]; both (M, n), compared flattened."""
    Th, Sh = (np.asarray(to_numpy(p["0"]["Theta"]), dtype=np.float64) for p in (teacher_params, student_params))
    Z, Zh = np.asarray(to_numpy(z), dtype=np.float64), np.asarray(to_numpy(z_hat), dtype=np.float64)
    F = np.linalg.lstsq(Zh, Z, rcond=None)[0].T                               # (M, M̂): z ≈ F ẑ
    U = np.einsum("mk,mnj->knj", np.linalg.pinv(F), Sh)                      # (M, n, ĥ)
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), 1e-300)
    Ti, Uj = unit(Th.reshape(-1, Th.shape[2])), unit(U.reshape(-1, U.shape[2]))
    return float((Ti.T @ Uj).max(axis=1).min())


# -- the meta-learning experiments -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MetaExperiment:
    """A teacher–student meta-learning run (our CPU scale; the paper's run_theory.py uses
    n = h = 16, o = 4, M = 6, a student 2h × 2M, 300 inner steps, 60k outer steps). The
    student has its ĥ = 2h hidden units; the outer Adam's lr is constant, then decays
    linearly to 0 over the last `cooldown` steps (:func:`tinynim.optim.linear_cooldown`)."""
    support: str = "ring"
    kind: str = "continuous"
    M: int = 6
    n: int = 8
    h: int = 4
    o: int = 2
    h_student: int = 8
    M_student: int = 6
    tasks_per_family: int = 8
    batch: int = 64
    steps: int = 8000
    lr: float = 1e-2
    cooldown: int = 5000
    inner_steps: int = 1
    inner_lr: float = 1e-2
    seed: int = 0                   # teacher RNG(seed), student RNG(seed + 1), z₀, the pool and data
    equal_readouts: bool = False

    def reseeded(self, offset: int) -> "MetaExperiment":
        return dataclasses.replace(self, seed=self.seed + offset)


EVAL_INNER_STEPS, EVAL_INNER_LR, EVAL_BATCH = 300, 0.1, 128
EXPERIMENTS = {"ring": MetaExperiment(support="ring"),
               "triangles": MetaExperiment(support="triangles"),
               "onehot": MetaExperiment(support="onehot")}


def meta_train(exp: MetaExperiment, *, quick_mode=None, log=None, eval_every=None):
    """Train a student on a fixed pool of the support's tasks (module docstring):
    ``(teacher (net, params), student params, z₀, history)``, float64 on the active backend."""
    net, tparams = teacher(exp.M, exp.n, exp.h, exp.o, exp.seed, equal_readouts=exp.equal_readouts)
    student = network(exp.M_student, exp.n, exp.h_student, exp.o)
    rng = RNG(exp.seed + 2)
    params = student.init(RNG(exp.seed + 1))
    z0 = rng.normal((exp.M_student,))
    masks = support(exp.support, exp.M)
    z_pool = asarray(sample_codes(rng, masks, exp.tasks_per_family * len(masks), exp.kind))
    carry = {"z": z0, "state": None}

    def loss_and_grads(params, x, step):
        y, _ = net.forward(tparams, (x, z_pool))
        carry["z"], carry["state"] = infer_codes(student, params, x, y, carry["z"], exp.inner_steps,
                                                 exp.inner_lr, carry["state"])
        return outer_gradient(student, params, x, carry["z"], y)

    eval_fn = (lambda p, done: evaluate(exp, (net, tparams), student, p, z0, quick_mode=quick_mode, brief=True))
    steps = scaled(exp.steps, quick_mode=quick_mode)
    lr = linear_cooldown(exp.lr, steps, scaled(exp.cooldown, quick_mode=quick_mode))
    params, history = fit(loss_and_grads, params, Adam(lr), steps=steps, log=log, log_every=max(steps // 5, 1),
                          data=lambda step: inputs(rng, z_pool.shape[0], exp.batch, exp.n),
                          eval_fn=eval_fn if eval_every else None, eval_every=eval_every)
    return (net, tparams), student, params, z0, history


def evaluate(exp, teacher_net, student, params, z0, *, quick_mode=None, brief=False) -> dict:
    """Relative loss on fresh tasks of the training families ("train") and of every held-out
    pair ("ood"), codes re-inferred from z₀; R² of decoding z from ẑ and module alignment
    (on the OOD tasks). ``brief``: the OOD loss only (for curves during training)."""
    net, tparams = teacher_net
    rng = RNG(10_000 + exp.seed)
    masks = support(exp.support, exp.M)
    out = {}
    for name, fam in (("ood", held_out(masks)),) + (() if brief else (("train", masks),)):
        z = asarray(sample_codes(rng, fam, len(fam) * max(scaled(8, quick_mode=quick_mode), 2), exp.kind))
        x = inputs(rng, z.shape[0], EVAL_BATCH, exp.n)
        y, _ = net.forward(tparams, (x, z))
        z_hat, _ = infer_codes(student, params, x, y, z0, EVAL_INNER_STEPS, EVAL_INNER_LR)
        out[name] = relative_loss(student, params, x, z_hat, y)
        if name == "ood" and not brief:
            out["r2"] = decoding_r2(z_hat, z)
            out["alignment"] = module_alignment(tparams, params, z, z_hat)
    return out


# -- the constructions, measured (exact claims) ----------------------------------------------

def construction_errors(seed: int = 0) -> dict:
    """Float64 measurements of the exact statements on a teacher n = 8, h = 8, o = 2, M = 6:
    identification (max relative error of f̂(x; Fz) vs f(x; z) on dense random codes), the
    same with one negative scale (relative loss), the counterexample on its training
    families / on e₀ + e₅ / on the bridging family (2, 3), and the envelope identity on a
    linear student (|d/dθ min L − ∂_θ L| relative, central differences ε = 1e-5)."""
    with use_dtype("float64"):
        rng, host_rng = RNG(seed), np.random.default_rng(seed)
        net, tp = teacher(6, 8, 8, 2, seed)
        F = np.linalg.qr(host_rng.normal(size=(6, 6)))[0] @ np.diag(host_rng.uniform(0.5, 2.0, 6))
        perm, c = host_rng.permutation(8), host_rng.uniform(0.5, 2.0, 8)
        x, z = inputs(rng, 32, 64, 8), rng.normal((32, 6))
        zF, y = z @ _like(F.T, z), net(tp, (x, z))
        xp = namespace(y)
        ident = float(xp.max(xp.abs(net(identified_student(tp, F, perm, c), (x, zF)) - y)) / xp.max(xp.abs(y)))
        c[0] = -c[0]
        negative = relative_loss(net, identified_student(tp, F, perm, c), x, zF, y)
        net, tq = teacher(6, 8, 8, 2, seed, equal_readouts=True)
        sp = counterexample_student(tq, np.roll(np.arange(8), 1))
        losses = {}
        for name, fam in (("train", support("counterexample")), ("ood", masks_from([(0, 5)], 6)),
                          ("bridge", masks_from([(2, 3)], 6))):
            zc = _like(sample_codes(rng, fam, 8 * len(fam), "continuous" if name != "ood" else "discrete"), y)
            xc = inputs(rng, zc.shape[0], 64, 8)
            losses[name] = relative_loss(net, sp, xc, zc, net(tq, (xc, zc)))
        return {"identification": ident, "negative_scale": negative, "counterexample_train": losses["train"],
                "counterexample_ood": losses["ood"], "bridge": losses["bridge"], "envelope": envelope_error(seed)}


def envelope_error(seed: int = 0) -> float:
    """|d/dθ L(ẑ*(θ), θ) − ∂_θ L(ẑ*, θ)| / (1 + |∂_θ L|) along a random direction of Θ, on
    a linear student x W(ẑ)/√n (T = 4 tasks, n = 3, M = 3, o = 2, ẑ* in closed form)."""
    rng = RNG(seed)
    layer = HyperLinear(3, 3, 2)
    p = layer.init(rng)
    x, y, V = rng.normal((4, 16, 3)), rng.normal((4, 16, 2)), rng.normal((3, 3, 2))
    loss_at = lambda q: outer_gradient(layer, q, x, best_codes_linear(layer, q, x, y), y)
    _, grads = loss_at(p)
    partial = float(namespace(V).sum(grads["Theta"] * V))
    eps = 1e-5
    total = (loss_at({"Theta": p["Theta"] + eps * V})[0] - loss_at({"Theta": p["Theta"] - eps * V})[0]) / (2 * eps)
    return abs(total - partial) / (1.0 + abs(partial))


MEASUREMENTS = ("constructions", "hyperteacher", "hyperteacher_k1")


def measure(name, *, quick_mode=None, log=None, seed_offset=0):
    """Metrics of "constructions" (exact), of the hyperteacher comparisons (hypernetwork vs
    ANIL, tasks/modular_fewshot.py) or of a meta-learning run in :data:`EXPERIMENTS`."""
    if name == "constructions":
        return construction_errors(seed_offset)
    if name.startswith("hyperteacher"):
        from tasks.modular_fewshot import comparison      # it builds on this module
        return comparison(name, quick_mode=quick_mode, log=log, seed_offset=seed_offset)
    if name not in EXPERIMENTS:
        raise ValueError(f"measure: unknown experiment {name!r}; known: {MEASUREMENTS + tuple(EXPERIMENTS)}")
    exp = EXPERIMENTS[name].reseeded(seed_offset)
    with use_dtype("float64"):
        (net, tp), student, params, z0, _ = meta_train(exp, quick_mode=quick_mode, log=log)
        return evaluate(exp, (net, tp), student, params, z0, quick_mode=quick_mode)


# -- claims ----------------------------------------------------------------------------------

PAPER = "2312.15001"
TITLE = ("Schug, Kobayashi, Akram, Wołczyk, Proca, von Oswald, Pascanu, Sacramento, Steger 2024, "
         "*Discovering modular solutions that generalize compositionally*")
_CLAIM = functools.partial(Claim, paper=PAPER)
_EXACT = dict(kind="exact", experiment="constructions", seeds="seed 0")
_ROUNDING = "float64 rounding of sums of O(1) products; observed ~1e-15"
_FAILS = ("a student that must be wrong: the bound is far above rounding (~1e-30 relative loss) and far below "
          "what generic draws give (0.04–1)")

CLAIMS = (
    _CLAIM(id="P6.identification", observed=(7.8e-16, 7.8e-16), metric="identification", bound=("<=", 1e-10), reference="exact",
           source="paper Theorem 2",
           statement="Θ̂ = c·F⁻¹Θ[σ], Â = A[σ]/c (c > 0): f̂(x; Fz) = f(x; z) on unseen dense codes (max rel. error)",
           why=_ROUNDING, **_EXACT),
    _CLAIM(id="P6.identification.negative", observed=(1.118, 1.118), metric="negative_scale", bound=(">", 1e-6), reference="> 0",
           source="paper Theorem 2 (ReLU: positive scales only)",
           statement="the same with one scale c_j < 0: relative loss > 0", why=_FAILS, **_EXACT),
    _CLAIM(id="P6.counterexample.train", observed=(4.0e-33, 4.0e-33), metric="counterexample_train", bound=("<=", 1e-20), reference="0",
           source="paper App. A.3",
           statement="disconnected support (0,1),(1,2),(3,4),(4,5), equal readouts, units of modules 3–5 permuted: "
                     "relative loss on every training family",
           why="exactly 0 in exact arithmetic (a permuted sum); float64 rounding of the squared error ~1e-30", **_EXACT),
    _CLAIM(id="P6.counterexample.ood", observed=(0.03782, 0.03782), metric="counterexample_ood", bound=(">", 1e-3), reference="> 0",
           source="paper App. A.3",
           statement="the same student on z* = (e₀ + e₅)/√2: relative loss > 0", why=_FAILS, **_EXACT),
    _CLAIM(id="P6.counterexample.bridge", observed=(0.05232, 0.05232), metric="bridge", bound=(">", 1e-3), reference="> 0",
           source="paper App. A.3",
           statement="adding the bridging family (2, 3) (connected support) exposes it: relative loss there > 0",
           why=_FAILS, **_EXACT),
    _CLAIM(id="P6.envelope", observed=(4.6e-11, 4.6e-11), metric="envelope", bound=("<=", 1e-7), reference="exact", source="paper Eq. 2",
           statement="linear student: d/dθ min_ẑ L = ∂_θ L at ẑ* (the first-order outer gradient)",
           why="central differences ε = 1e-5 of an analytic map: truncation ~1e-10, rounding ~1e-11", **_EXACT),
)

_RING = dict(kind="statistical", experiment="ring", seeds="seeds 0–2")
_RING_RUN = "ring support, student ĥ = 2h, 8000 outer steps (lr 1e-2, linearly to 0 over the last 5000)"
CLAIMS += (
    _CLAIM(id="P6.ring.train", observed=(0.0005, 0.004631), metric="train", bound=("<", 0.01), reference="≈ 0", source="paper Fig. 2 (ours: CPU scale)",
           statement=f"{_RING_RUN}: relative loss on fresh tasks of the training families (codes re-inferred)",
           why="5e-4–0.0046 over seeds 0–2: fresh tasks and codes re-inferred from z₀ add a little to the pool's fit",
           **_RING),
    _CLAIM(id="P6.ring.ood", observed=(0.016, 0.02151), metric="ood", bound=("<", 0.05), reference="≈ 0", source="paper Fig. 2 (ours: CPU scale)",
           statement=f"{_RING_RUN}: relative loss on the 9 held-out pairs (codes re-inferred from z₀)",
           why="0.016–0.022 over seeds 0–2; an untrained student gives ~0.8; the bound is the issue's (spec §2e). It "
               "holds on the claim's seeds, not on every seed: seeds 3 and 4, not used to choose the setting, give "
               "0.036 and 0.18 (seed 4 still falling slowly: 0.30, 0.26, 0.24, 0.22, 0.21, 0.20, 0.19, 0.18 every "
               "1000 steps; the former setting: 0.30 on seed 4). Two changes brought seeds 0–2 "
               "under it (was 0.023–0.087 with ĥ = 4h at a constant lr for 5000 steps): the paper's student width "
               "ĥ = 2h (run_theory.py; with 4h the OOD loss fell 2–3× slower: seed 0 0.087 vs 0.032 at 5000 steps) "
               "and the cooldown: at a constant lr 1e-2 the student now and then reorganises (seed 2: 0.027 at 4500 "
               "steps, 0.106 at 5500; seed 1: 0.047 at 5000, 0.43 at 6000), while a cosine decay from step 0 is too "
               "slow (seed 1: 0.096 at 5000) and a cooldown over only the last 2000 of 7000 steps starts after "
               "seed 2's jump (0.10). Seed 0 with ĥ = 4h: three inner steps a step instead of one 0.072 vs "
               "0.087, 4× the task pool 0.078; M̂ = 2M: 0.059 vs 0.047 (seed 1, ĥ = 2h); evaluation is not the limit "
               "(1000–3000 inner steps re-infer the same loss)",
           **_RING),
    _CLAIM(id="P6.ring.r2", observed=(0.9946, 0.9982), metric="r2", bound=(">", 0.9), reference="≈ 1", source="paper Fig. 3C",
           statement=f"{_RING_RUN}: R² of decoding z from ẑ on the held-out pairs (ridge, l2 = 0.01)",
           why="a linear map from ẑ to z exists when the modules are identified (Theorem 2); 0.995–0.998 over "
               "seeds 0–2; the bound is the issue's", **_RING),
    _CLAIM(id="P6.ring.alignment", observed=(0.8185, 0.9725), metric="alignment", bound=(">", 0.7), reference="≈ 1", source="paper Fig. 2C",
           statement=f"{_RING_RUN}: module alignment min_i max_j cos(Θ_i, Θ̂_j F⁺)",
           why="1 for an identified student; the worst of the 4 teacher units sets it (0.82–0.97 over seeds; "
               "seed 1 ended at 0.40–0.56 in the shorter or cosine-decayed runs of P6.ring.ood's why)", **_RING),
)

_HT = dict(kind="statistical", seeds="seeds 0–2")
_HT_RUN = ("hyperteacher M = 4, two generated 16×16 layers, 4 classes, 64 shots; first-order meta-training, "
           "500 outer steps × 16 tasks")
_HT_STATS = ("over seeds 0–2 hypernetwork 0.602 ± 0.010 vs ANIL 0.661 ± 0.005 OOD: ANIL ahead by 7.5 pooled std "
             "(the issue asked for the hypernetwork ahead by > 2)")
CLAIMS += (
    _CLAIM(id="P6.hyperteacher.anil_ood", observed=(0.6544, 0.6644), metric="anil_ood", bound=(">", 0.55),
           reference="60.78 % (Table A3, M = 4, K = 2)", source="paper Table A3 (ours: CPU scale)", experiment="hyperteacher",
           statement=f"{_HT_RUN}, K = 2: ANIL (30 inner steps on its head) query accuracy on the 25 held-out "
                     f"combinations (chance 0.25)",
           why="0.654–0.664 over seeds; the bound leaves ~0.1 of room for other seeds", **_HT),
    _CLAIM(id="P6.hyperteacher.hnet_ood", observed=(0.5917, 0.611), metric="hnet_ood", bound=(">", 0.5),
           reference="76.35 % (Table A3, M = 4, K = 2)", source="paper Table A3 (ours: CPU scale)", experiment="hyperteacher",
           statement=f"{_HT_RUN}, K = 2: linear hypernetwork (M̂ = 16, 10 inner steps on its code) query accuracy on "
                     f"the 25 held-out combinations (chance 0.25)",
           why="0.59–0.61 over seeds, well above chance; the paper's 76 % needs far longer training", **_HT),
    _CLAIM(id="P6.hyperteacher.maml_ood", observed=(0.5323, 0.5775), metric="maml_ood", bound=(">", 0.45),
           reference="55.41 % (Table A3, M = 4, K = 2)", source="paper Table A3 (ours: CPU scale)", experiment="hyperteacher",
           statement=f"{_HT_RUN}, K = 2: MAML (every weight of a 3 × 32 ReLU MLP adapted, 10 inner Adam steps from the "
                     f"learned start, first order) query accuracy on the 25 held-out combinations (chance 0.25)",
           why="0.53–0.58 over seeds with inner lr 0.03 (official 0.01; seed 0 with 0.03 / 0.1 / 0.3: 0.55 / 0.56 / "
               "0.37); the bound leaves ~0.08 of room", **_HT),
    _CLAIM(id="P6.hyperteacher.maml_ordering", observed=(0.02521, 0.07875), metric="maml_gap", bound=(">", 0.0),
           reference="> 0 (Table A3: +20.9 points)", source="paper Table A3 (ordering); ours: CPU scale",
           experiment="hyperteacher",
           statement=f"{_HT_RUN}, K = 2: hypernetwork OOD accuracy − MAML OOD accuracy: the paper's ordering "
                     f"against MAML holds at this scale",
           why="+0.025 to +0.079 over seeds (hypernetwork 0.59–0.61, MAML 0.53–0.58); each seed's OOD accuracy is "
               "over 64 episodes × 64 queries (binomial std ~0.008)", **_HT),
    _CLAIM(id="P6.hyperteacher.generalises", observed=(0.0434, 0.0479), metric="hnet_gen_gap", bound=("<", 0.15),
           reference="small (connected support, Theorem 1)", source="paper Sec. 4.1 (ours: CPU scale)",
           experiment="hyperteacher",
           statement=f"{_HT_RUN}, K = 2: hypernetwork train − OOD accuracy (held-out combinations nearly as good as "
                     f"trained ones)",
           why="0.043–0.048 over seeds vs 0.28–0.35 for K = 1 (P6.hyperteacher.k1.overfits); the bound sits between",
           **_HT),
    _CLAIM(id="P6.hyperteacher.ordering", observed=(-0.0727, -0.0517), metric="ood_gap", bound=("<", 0.0),
           reference="> 0 (Table A3: +15.6 points)", source="paper Table A3 (ordering); ours: CPU scale",
           experiment="hyperteacher",
           statement=f"{_HT_RUN}, K = 2: hypernetwork OOD accuracy − ANIL OOD accuracy: the paper's ordering does NOT "
                     f"reproduce at this scale",
           why=f"{_HT_STATS}; this test fails, i.e. detects the paper's ordering, once the hypernetwork catches up "
               f"(seed 0: 0.60 at 1000, 0.62 at 2500 outer steps, then unstable: 0.48 at 5000; ANIL 0.69 at 2500). "
               f"Tried on seed 0 (hypernetwork train / OOD, 0.64 / 0.59 as claimed): outer weight decay 1e-2: 0.63 / "
               f"0.59; the official outer lr 1e-3 with decay 1e-2: 0.56 / 0.56; second order through the 10 inner "
               f"steps (unrolled_gradients): 0.61 / 0.58; 64 tasks a step: 0.68 / 0.59; cosine lr over 2000 steps: "
               f"0.71 / 0.61; codes normalised to norm √M̂ (official embedding normalisation): 0.51 / 0.52; M = 8: "
               f"0.58 / 0.57 vs ANIL 0.65 / 0.65; the official learner's layout (smonsays/modular-hyperteacher: every "
               f"layer generated, each from its own code, the two hidden layers sharing one bank, a fast output "
               f"bias; its ANIL is 4× wider than the hypernetwork's base MLP, ours equal) with 16 code entries a "
               f"layer: 0.54 / 0.56, with 4: 0.50 / 0.51; every layer from the one code: 0.46 / 0.47, with the fast "
               f"bias 0.49 / 0.49; 30 inner steps as ANIL's: 0.53 / 0.52; width 64: 0.67 / 0.59. Its train accuracy "
               f"grows with compute, its OOD stays 0.47–0.61", **_HT),
    _CLAIM(id="P6.hyperteacher.k1", observed=(-0.2244, -0.1589), metric="ood_gap", bound=("<", 0.0),
           reference="< 0 (Table A3: −26.1 points)", source="paper Table A3, M = 4, K = 1 (ours: CPU scale)",
           experiment="hyperteacher_k1",
           statement=f"{_HT_RUN}, K = 1 (one-hot layer codes, 4 of 16 combinations held out): hypernetwork OOD "
                     f"accuracy − ANIL OOD accuracy: no hypernetwork advantage, as in the paper",
           why="−0.22 to −0.16 over seeds (hypernetwork 0.43–0.47, ANIL 0.62–0.65); each OOD task is evaluated on "
               "16 episodes of 64 queries", **_HT),
    _CLAIM(id="P6.hyperteacher.k1.maml", observed=(-0.06421, -0.009521), metric="maml_gap", bound=("<", 0.05),
           reference="≈ 0 (Table A3: −0.1 points, both near chance)", source="paper Table A3, M = 4, K = 1 (ours: CPU scale)",
           experiment="hyperteacher_k1",
           statement=f"{_HT_RUN}, K = 1: hypernetwork OOD accuracy − MAML OOD accuracy: no hypernetwork "
                     f"advantage (MAML level or ahead)",
           why="−0.064 to −0.010 over seeds vs +0.025 to +0.079 for K = 2; the bound sits between", **_HT),
    _CLAIM(id="P6.hyperteacher.k1.overfits", observed=(0.2781, 0.3503), metric="hnet_gen_gap", bound=(">", 0.15),
           reference="large (K = 1: the paper's hypernetworks fall to ~20 % OOD)", source="paper Table A3 (ours: CPU scale)",
           experiment="hyperteacher_k1",
           statement=f"{_HT_RUN}, K = 1: hypernetwork train − OOD accuracy: it fits the trained combinations "
                     f"(0.73–0.79) and fails on new ones",
           why="0.28–0.35 over seeds vs 0.04–0.05 for K = 2; the bound sits between", **_HT),
)
