"""Losses with their gradients: each returns ``(value, gradient w.r.t. the first argument)``.

Values are 0-d arrays of the input's namespace (no device sync; ``float(value)`` when a
Python number is needed), except :func:`categorical_log_prob`, which is per sample.

Traceable (``jax.jit``): shape and dtype checks are static. The one value check, labels in
[0, C), runs when the labels hold values (numpy, torch, cupy, array-api-strict: a
ValueError); on lazy arrays (``array_api_compat.is_lazy_array``: jax, traced or not) it
cannot, and a position whose label is out of range gives a NaN loss instead of a silent 0.

mse, over a batch of N samples (leading axis), features summed::

    L = 1/(2N) Σ_n ‖pred_n − target_n‖²            dpred = (pred − target) / N

softmax cross-entropy over the last axis (C classes), mean over the M label positions::

    log p = z − max z − log Σ_c exp(z_c − max z)   (stable: no exp overflows; −inf logits allowed)
    L = −1/M Σ_i log p_i[y_i]                       dz = (softmax(z) − onehot(y)) / M

categorical log-probability of a policy π(·|s) = softmax(z), actions a, weights w::

    logp_i = log p_i[a_i]                           ∂(Σ_i w_i logp_i)/∂z_i = w_i (onehot(a_i) − π_i)
"""
from __future__ import annotations

import math

import array_api_compat

from tinynim.backend import namespace


def log_softmax(logits):
    """log softmax over the last axis, stabilised by subtracting the max."""
    xp = namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(logits):
    """softmax over the last axis (exp of :func:`log_softmax`)."""
    return namespace(logits).exp(log_softmax(logits))


def mse(pred, target):
    """½ · mean over the leading (batch) axis of the squared error summed over features.

    Returns ``(L, dpred)``: a 0-d array and an array shaped like `pred`.
    """
    xp = namespace(pred, target)
    if tuple(pred.shape) != tuple(target.shape) or pred.ndim == 0:
        raise ValueError(f"mse: pred and target need the same shape (batch, ...), "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[0] == 0:
        raise ValueError(f"mse: the batch is empty (pred shape {tuple(pred.shape)}); the mean "
                         f"over 0 samples is undefined")
    n = pred.shape[0]
    diff = pred - target                                   # (N, ...)
    flat = xp.reshape(diff, (-1,))                         # a view: diff is new and contiguous
    return 0.5 * xp.vecdot(flat, flat) / n, diff / n       # Σ diff² without a diff² array


def _label_mask(who, logits, labels):
    """mask[..., c] = (labels == c), shape (..., C), after checking dtypes and shapes (static)
    and, when the labels have values (not while tracing), their range."""
    xp = namespace(logits, labels)
    n_classes = logits.shape[-1]
    if not xp.isdtype(logits.dtype, "real floating"):
        raise ValueError(f"{who}: logits must be real floating, got dtype {logits.dtype}")
    if not xp.isdtype(labels.dtype, "integral"):
        raise ValueError(f"{who}: labels must be integers, got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"{who}: labels must have shape {tuple(logits.shape[:-1])} "
                         f"(logits without the class axis), got {tuple(labels.shape)}")
    if math.prod(labels.shape) == 0:
        raise ValueError(f"{who}: no labels (shape {tuple(labels.shape)})")
    if not array_api_compat.is_lazy_array(labels):
        lo, hi = int(xp.min(labels)), int(xp.max(labels))
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{who}: labels must lie in [0, {n_classes}), got min {lo}, max {hi}")
    classes = xp.arange(n_classes, device=array_api_compat.device(logits))
    return labels[..., None] == classes                            # (..., C) bool


def _pick(logp, mask):
    """logp[..., label] as Σ_c where(mask, logp, 0): a −inf logit of another class (a masked
    logit) contributes 0, not 0·(−inf) = NaN. Lazy (traced) labels out of range, whose rows of
    `mask` are all False, give NaN instead of a silent 0."""
    xp = namespace(logp)
    picked = xp.sum(xp.where(mask, logp, 0.0), axis=-1)           # (...)
    if array_api_compat.is_lazy_array(mask):
        picked = xp.where(xp.any(mask, axis=-1), picked, xp.nan)
    return picked


def softmax_cross_entropy(logits, labels):
    """Mean of −log softmax(logits)[label] over all label positions.

    logits: (..., C) floats (−inf allowed for masked classes other than the label, as in
    torch); labels: (...) integers in [0, C).
    Returns ``(L, dlogits)``: a 0-d array and an array shaped like `logits`.
    """
    xp = namespace(logits, labels)
    mask = _label_mask("softmax_cross_entropy", logits, labels)   # (..., C)
    logp = log_softmax(logits)                                     # (..., C)
    m = math.prod(labels.shape)
    return -xp.sum(_pick(logp, mask)) / m, (xp.exp(logp) - xp.astype(mask, logits.dtype)) / m


def categorical_log_prob(logits, actions, weights=None):
    """log π(a|s) for a categorical policy π = softmax(logits), per sample.

    logits: (..., C) (−inf for masked actions); actions: (...) integers; weights: (...) or None (ones).
    Returns ``(logp, dlogits)``: logp shaped like `actions`, and
    dlogits = ∂(Σ_i w_i logp_i)/∂logits = w_i (onehot(a_i) − π_i), shaped like `logits`.
    REINFORCE: weights = returns (or advantages), then *negate* dlogits for a loss gradient.
    """
    xp = namespace(logits, actions)
    mask = _label_mask("categorical_log_prob", logits, actions)    # (..., C)
    logp_all = log_softmax(logits)                                 # (..., C)
    logp = _pick(logp_all, mask)                                   # (...)
    dlogits = xp.astype(mask, logits.dtype) - xp.exp(logp_all)     # (..., C)
    if weights is not None:
        if tuple(weights.shape) != tuple(actions.shape):
            raise ValueError(f"categorical_log_prob: weights must have the shape of actions "
                             f"{tuple(actions.shape)}, got {tuple(weights.shape)}")
        dlogits = weights[..., None] * dlogits
    return logp, dlogits
