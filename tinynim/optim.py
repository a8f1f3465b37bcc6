"""Optimisers, gradient clipping and learning-rate schedules, as pure functions of trees.

An optimiser holds hyperparameters only; its state is an explicit tree::

    opt = Adam(1e-3, clip_norm=1.0)
    state = opt.init(params)                           # {"step": 0, "m": ..., "v": ...}
    params, state = opt.update(grads, state, params)   # new trees; inputs are never mutated

``lr`` is a float or a schedule: any callable ``step -> lr``, called with the number of
updates already done (0 for the first update). Gradients are clipped before the step:
first element-wise to ``[-clip_value, clip_value]``, then to global norm ``clip_norm``.

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

from tinynim.backend import namespace
from tinynim.tree import global_norm, scale, tree_map, zeros_like


# -- clipping ----------------------------------------------------------------------------

def clip_by_global_norm(grads, max_norm):
    """Rescale `grads` so that their global norm is at most `max_norm`.

    Returns ``(grads, norm)`` with `norm` the norm *before* clipping (a Python float).
    Below the threshold the tree is returned unchanged.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_by_global_norm: max_norm must be > 0, got {max_norm}")
    norm = global_norm(grads)
    if norm > max_norm:
        grads = scale(grads, max_norm / norm)
    return grads, norm


def clip_elementwise(grads, limit):
    """Clamp every gradient entry to ``[-limit, limit]``."""
    if not limit > 0:
        raise ValueError(f"clip_elementwise: limit must be > 0, got {limit}")
    return tree_map(lambda g: namespace(g).clip(g, -limit, limit), grads)


# -- schedules ---------------------------------------------------------------------------

def warmup_cosine(peak_lr, warmup_steps, total_steps, final_lr=0.0):
    """Linear warm-up then cosine decay, as a callable ``step -> lr``.

    lr(s) = peak·(s+1)/warmup                         for s < warmup (reaches peak at s = warmup−1)
    lr(s) = final + (peak − final)·½(1 + cos(π p))    p = (s − warmup)/(total − warmup), clamped to 1
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_cosine: need 0 <= warmup_steps < total_steps, "
                         f"got {warmup_steps} and {total_steps}")

    def lr(step):
        if step < warmup_steps:
            return peak_lr * (step + 1) / warmup_steps
        p = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
        return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    return lr


def cosine(peak_lr, total_steps, final_lr=0.0):
    """Cosine decay from `peak_lr` at step 0 to `final_lr` at `total_steps` (then constant)."""
    return warmup_cosine(peak_lr, 0, total_steps, final_lr)


def linear_warmup(peak_lr, warmup_steps):
    """lr(s) = peak·min(1, (s+1)/warmup): a linear ramp, then constant."""
    if not warmup_steps > 0:
        raise ValueError(f"linear_warmup: warmup_steps must be > 0, got {warmup_steps}")
    return lambda step: peak_lr * min(1.0, (step + 1) / warmup_steps)


# -- optimisers --------------------------------------------------------------------------

class Optimizer:
    """Shared behaviour: learning rate (float or schedule) and gradient clipping."""

    def __init__(self, lr, *, clip_norm=None, clip_value=None):
        self.lr, self.clip_norm, self.clip_value = lr, clip_norm, clip_value

    def lr_at(self, step) -> float:
        """The learning rate of the update that follows `step` earlier updates."""
        return float(self.lr(step)) if callable(self.lr) else float(self.lr)

    def clip(self, grads):
        if self.clip_value is not None:
            grads = clip_elementwise(grads, self.clip_value)
        if self.clip_norm is not None:
            grads, _ = clip_by_global_norm(grads, self.clip_norm)
        return grads

    def init(self, params) -> dict:
        raise NotImplementedError

    def update(self, grads, state, params):
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent with optional heavy-ball momentum (see the module docstring)."""

    def __init__(self, lr, momentum=0.0, *, clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.momentum = momentum

    def init(self, params) -> dict:
        return {"step": 0, "velocity": zeros_like(params)}

    def update(self, grads, state, params):
        lr, mu = self.lr_at(state["step"]), self.momentum
        v = tree_map(lambda vi, g: mu * vi + g, state["velocity"], self.clip(grads))
        new_params = tree_map(lambda p, vi: p - lr * vi, params, v)
        return new_params, {"step": state["step"] + 1, "velocity": v}


class Adam(Optimizer):
    """Adam, or AdamW when ``weight_decay > 0`` (decoupled decay; module docstring)."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, *,
                 clip_norm=None, clip_value=None):
        super().__init__(lr, clip_norm=clip_norm, clip_value=clip_value)
        self.b1, self.b2, self.eps, self.weight_decay = b1, b2, eps, weight_decay

    def init(self, params) -> dict:
        return {"step": 0, "m": zeros_like(params), "v": zeros_like(params)}

    def update(self, grads, state, params):
        b1, b2, eps, wd = self.b1, self.b2, self.eps, self.weight_decay
        lr, t = self.lr_at(state["step"]), state["step"] + 1
        c1, c2 = 1.0 - b1 ** t, math.sqrt(1.0 - b2 ** t)        # bias corrections
        grads = self.clip(grads)
        m = tree_map(lambda mi, g: b1 * mi + (1.0 - b1) * g, state["m"], grads)
        v = tree_map(lambda vi, g: b2 * vi + (1.0 - b2) * (g * g), state["v"], grads)

        def step(p, mi, vi):
            xp = namespace(p)
            return p * (1.0 - lr * wd) - (lr / c1) * mi / (xp.sqrt(vi) / c2 + eps)
        return tree_map(step, params, m, v), {"step": t, "m": m, "v": v}
