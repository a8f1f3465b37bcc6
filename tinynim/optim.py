"""Optimisers, gradient clipping and learning-rate schedules, as pure functions of trees.

An optimiser holds hyperparameters only; its state is an explicit tree::

    opt = Adam(1e-3, clip_norm=1.0)
    state = opt.init(params)                           # {"step": 0, "m": ..., "v": ...}
    params, state = opt.update(grads, state, params)   # new trees; inputs are never mutated

``lr`` is a float or a schedule: any callable ``step -> lr``, called with the number of
updates already done (0 for the first update). Gradients are clipped before the step:
first element-wise to ``[-clip_value, clip_value]``, then to global norm ``clip_norm``.
Hyperparameters are checked at construction, gradients against the parameters' shapes and
dtypes at every update (see :class:`Optimizer`); everything in ``update`` is traceable
for a Python-int ``step``.

SGD (as ``torch.optim.SGD``, dampening 0)::

    v ← μ v + g ;   θ ← θ − lr v               (μ = 0: plain gradient descent)

Adam (as ``torch.optim.Adam``); with ``weight_decay`` λ > 0 the decay is *decoupled*
(AdamW, as ``torch.optim.AdamW``): it shrinks the weights directly instead of adding λθ
to the gradient, so it is not rescaled by the adaptive denominator::

    θ ← θ − lr λ θ
    m ← β₁ m + (1 − β₁) g ;   v ← β₂ v + (1 − β₂) g²           (t = step + 1)
    θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
"""
from __future__ import annotations

import math
import numbers

from tinynim.backend import namespace
from tinynim.tree import leaves_with_paths, tree_map, zeros_like


def _require(ok, who, what, value):
    if not ok:
        raise ValueError(f"{who}: {what}, got {value!r}")


def _finite(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


# -- clipping ----------------------------------------------------------------------------

def clip_by_global_norm(grads, max_norm):
    """Rescale `grads` so that their global norm ‖g‖ = √(Σ leaves Σ g²) is at most `max_norm`.

    Returns ``(grads, norm)`` with `norm` the norm *before* clipping, a 0-d array
    (``float(norm)`` for a number). Traceable: the factor min(1, max_norm/‖g‖) is chosen by
    ``where``, not by a Python branch; below the threshold every entry is multiplied by 1
    (the same values, a new tree).
    """
    _require(_finite(max_norm) and max_norm > 0, "clip_by_global_norm", "max_norm must be > 0", max_norm)
    leaves = [g for _, g in leaves_with_paths(grads)]
    xp = namespace(*leaves)
    norm = xp.sqrt(sum(xp.sum(g * g) for g in leaves))                 # 0-d
    factor = xp.where(norm > max_norm, max_norm / norm, 1.0)           # 0-d
    return tree_map(lambda g: g * xp.astype(factor, g.dtype), grads), norm


def clip_elementwise(grads, limit):
    """Clamp every gradient entry to ``[-limit, limit]``."""
    _require(_finite(limit) and limit > 0, "clip_elementwise", "limit must be > 0", limit)
    return tree_map(lambda g: namespace(g).clip(g, -limit, limit), grads)


# -- schedules ---------------------------------------------------------------------------

def _check_step(who, step):
    _require(step >= 0, who, "step (the number of updates done) must be >= 0", step)


def _check_rates(who, peak_lr, final_lr):
    for name, value in (("peak_lr", peak_lr), ("final_lr", final_lr)):
        _require(_finite(value) and value >= 0, who, f"{name} must be a finite number >= 0", value)


def warmup_cosine(peak_lr, warmup_steps, total_steps, final_lr=0.0):
    """Linear warm-up then cosine decay, as a callable ``step -> lr`` (step >= 0).

    lr(s) = peak·(s+1)/warmup                         for s < warmup (reaches peak at s = warmup−1)
    lr(s) = final + (peak − final)·½(1 + cos(π p))    p = (s − warmup)/(total − warmup), clamped to 1
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_cosine: need 0 <= warmup_steps < total_steps, "
                         f"got {warmup_steps} and {total_steps}")
    _check_rates("warmup_cosine", peak_lr, final_lr)

    def lr(step):
        _check_step("warmup_cosine", step)
        if step < warmup_steps:
            return peak_lr * (step + 1) / warmup_steps
        p = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
        return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    return lr


def cosine(peak_lr, total_steps, final_lr=0.0):
    """Cosine decay from `peak_lr` at step 0 to `final_lr` at `total_steps` (then constant)."""
    return warmup_cosine(peak_lr, 0, total_steps, final_lr)


def linear_cooldown(peak_lr, total_steps, cooldown_steps, final_lr=0.0):
    """Constant, then a linear decay over the last `cooldown_steps` ("warmup-stable-decay"
    without the warm-up, Hu et al., arXiv:2404.06395), as a callable ``step -> lr``::

        lr(s) = peak                                            for s <= total − cooldown
        lr(s) = final + (peak − final)·(total − s)/cooldown     after, clamped to final from total on
    """
    if not 0 < cooldown_steps <= total_steps:
        raise ValueError(f"linear_cooldown: need 0 < cooldown_steps <= total_steps, "
                         f"got {cooldown_steps} and {total_steps}")
    _check_rates("linear_cooldown", peak_lr, final_lr)

    def lr(step):
        _check_step("linear_cooldown", step)
        left = min(max((total_steps - step) / cooldown_steps, 0.0), 1.0)
        return final_lr + (peak_lr - final_lr) * left
    return lr


def linear_warmup(peak_lr, warmup_steps):
    """lr(s) = peak·min(1, (s+1)/warmup): a linear ramp, then constant (step >= 0)."""
    if not warmup_steps > 0:
        raise ValueError(f"linear_warmup: warmup_steps must be > 0, got {warmup_steps}")
    _require(_finite(peak_lr) and peak_lr >= 0, "linear_warmup", "peak_lr must be a finite number >= 0", peak_lr)

    def lr(step):
        _check_step("linear_warmup", step)
        return peak_lr * min(1.0, (step + 1) / warmup_steps)
    return lr


# -- optimisers --------------------------------------------------------------------------

class Optimizer:
    """Shared behaviour: learning rate (float or schedule), gradient clipping, and the checks.

    Hyperparameters are validated at construction (ValueError naming the optimiser, the
    hyperparameter and the value). ``update`` requires every gradient to have its
    parameter's path, shape and dtype (static checks, traceable): a (16,) gradient is never
    broadcast into a (16, 16) parameter, and float64 gradients never promote float32
    parameters and optimiser state (cast the data or the params so that they agree).
    """

    def __init__(self, lr, *, clip_norm=None, clip_value=None):
        who = type(self).__name__
        if not callable(lr):
            _require(_finite(lr) and lr >= 0, who, "lr must be a finite number >= 0 or a schedule step -> lr", lr)
        for name, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if value is not None:
                _require(_finite(value) and value > 0, who, f"{name} must be a finite number > 0 or None", value)
        self.lr, self.clip_norm, self.clip_value = lr, clip_norm, clip_value

    def lr_at(self, step) -> float:
        """The learning rate of the update that follows `step` earlier updates."""
        if not callable(self.lr):
            return float(self.lr)
        lr = float(self.lr(step))
        _require(math.isfinite(lr) and lr >= 0, type(self).__name__,
                 f"the schedule must give a finite lr >= 0, at step {step} it gave", lr)
        return lr

    def clip(self, grads):
        """Element-wise to [−clip_value, clip_value] first, then to global norm clip_norm."""
        if self.clip_value is not None:
            grads = clip_elementwise(grads, self.clip_value)
        if self.clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, self.clip_norm)
        return grads

    def check(self, grads, params):
        """Raise ValueError unless every gradient has its parameter's path, shape and dtype."""
        who = f"{type(self).__name__}.update"
        gs, ps = leaves_with_paths(grads), leaves_with_paths(params)
        if [p for p, _ in gs] != [p for p, _ in ps]:
            only_g = sorted({p for p, _ in gs} - {p for p, _ in ps})
            only_p = sorted({p for p, _ in ps} - {p for p, _ in gs})
            raise ValueError(f"{who}: gradient and parameter trees differ: only in the gradient "
                             f"{only_g}, only in the parameters {only_p}")
        for (path, g), (_, p) in zip(gs, ps):
            if tuple(g.shape) != tuple(p.shape) or g.dtype != p.dtype:
                raise ValueError(f"{who}: the gradient of {path} has shape {tuple(g.shape)} and dtype "
                                 f"{g.dtype}, but the parameter has shape {tuple(p.shape)} and dtype {p.dtype}")

    def init(self, params) -> dict:
        raise NotImplementedError

    def update(self, grads, state, params):
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent with optional heavy-ball momentum μ >= 0 (see the module docstring)."""

    def __init__(self, lr, momentum=0.0, *, clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        _require(_finite(momentum) and momentum >= 0, "SGD", "momentum must be a finite number >= 0", momentum)
        self.momentum = momentum

    def init(self, params) -> dict:
        return {"step": 0, "velocity": zeros_like(params)}

    def update(self, grads, state, params):
        self.check(grads, params)
        lr, mu = self.lr_at(state["step"]), self.momentum
        v = tree_map(lambda vi, g: mu * vi + g, state["velocity"], self.clip(grads))
        new_params = tree_map(lambda p, vi: p - lr * vi, params, v)
        return new_params, {"step": state["step"] + 1, "velocity": v}


class Adam(Optimizer):
    """Adam, or AdamW when ``weight_decay > 0`` (decoupled decay; module docstring).
    0 <= b1, b2 < 1 (b = 1 would divide by a zero bias correction), eps > 0."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, *,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        for name, value in (("b1", b1), ("b2", b2)):
            _require(_finite(value) and 0 <= value < 1, "Adam", f"{name} must lie in [0, 1)", value)
        _require(_finite(eps) and eps > 0, "Adam", "eps must be a finite number > 0", eps)
        _require(_finite(weight_decay) and weight_decay >= 0, "Adam", "weight_decay must be a finite number >= 0",
                 weight_decay)
        self.b1, self.b2, self.eps, self.weight_decay = b1, b2, eps, weight_decay

    def init(self, params) -> dict:
        return {"step": 0, "m": zeros_like(params), "v": zeros_like(params)}

    def update(self, grads, state, params):
        self.check(grads, params)
        b1, b2, eps, wd = self.b1, self.b2, self.eps, self.weight_decay
        lr, t = self.lr_at(state["step"]), state["step"] + 1
        c1 = 1.0 - b1 ** t                                       # bias corrections; under jit t is
        c2 = math.sqrt(1.0 - b2 ** t) if isinstance(t, int) else (1.0 - b2 ** t) ** 0.5   # a 0-d array
        grads = self.clip(grads)
        m = tree_map(lambda mi, g: b1 * mi + (1.0 - b1) * g, state["m"], grads)
        v = tree_map(lambda vi, g: b2 * vi + (1.0 - b2) * (g * g), state["v"], grads)

        def step(p, mi, vi):
            # p (1 - lr wd) - (lr/c1) m / (√v/c2 + ε), operation for operation (same rounding
            # as the one-expression form), with the temporaries updated in place: they are this
            # function's own new arrays (no input changes). Rewriting it as
            # (lr c2/c1) m / (√v + ε c2) saves two passes but rounds differently, and P2's deep
            # LSA run (arXiv:2309.05858) was seen to end elsewhere from that alone.
            denom = namespace(p).sqrt(vi)
            denom /= c2
            denom += eps
            update = (lr / c1) * mi
            update /= denom
            return (p * (1.0 - lr * wd) if wd else p) - update
        return tree_map(step, params, m, v), {"step": t, "m": m, "v": v}
