"""The relaxed adversarial risk R̂_{q,m} of arXiv:2408.10818 (our reconstruction of the
objective its reviews describe; see :mod:`tasks.randomized_algorithms`), with its
hand-derived gradient, on any backend. Shared by the paper's tasks (the memory game,
associative recall, colouring, exploration).
"""
from __future__ import annotations

import math

from tinynim.backend import namespace


def power_mean_risk(losses, q: float):
    """R̂_{q,m} of a loss array and its gradient: ``(value, dlosses)``.

    losses: (..., n, m), ℓ_ij ≥ 0 for input i and seed j (leading axes are a batch, e.g.
    an ES population); q ∈ [1, ∞] a Python number (q = math.inf: the worst case).

    Forward, with ℓ̄_i = 1/m Σ_j ℓ_ij and t = max_i ℓ̄_i, in log space (the max shift of a
    logsumexp, taken on ratios so that ℓ̄_i = 0 needs no log 0)::

        log R = log t + 1/q · log( 1/n Σ_i (ℓ̄_i / t)^q )          (t = 0: R = 0)
        q = 1: R = 1/n Σ_i ℓ̄_i        q = ∞: R = t

    Every ratio is ≤ 1 and the sum holds a term equal to 1, so nothing overflows or
    underflows to a zero sum for any q; R ∈ [n^(−1/q) t, t] (this brackets the q → ∞ limit).

    Backward: from R^q = 1/n Σ_i ℓ̄_i^q, q R^(q−1) dR = 1/n Σ_i q ℓ̄_i^(q−1) dℓ̄_i, so::

        ∂R/∂ℓ_ij = 1/(n m) · (ℓ̄_i / R)^(q−1) = 1/(n m) · exp((q − 1)(log(ℓ̄_i/t) − log(R/t)))

    a softmax-like weight on the hardest inputs (bounded by n/(n m) since ℓ̄_i/R ≤ n^(1/q)).
    q = ∞: the subgradient 1/m spread equally over the inputs that attain the max. At
    ℓ = 0 (R not differentiable for q > 1) the value 1/(n m), the q = 1 gradient, is returned.
    """
    if losses.ndim < 2:
        raise ValueError(f"power_mean_risk: losses must be (..., n_inputs, m_seeds), got shape {tuple(losses.shape)}")
    if not (isinstance(q, (int, float)) and q >= 1):
        raise ValueError(f"power_mean_risk: q must be a number in [1, inf], got {q!r}")
    xp = namespace(losses)
    n, m = losses.shape[-2:]
    mean = xp.mean(losses, axis=-1)                                      # (..., n) ℓ̄
    top = xp.max(mean, axis=-1, keepdims=True)                           # (..., 1) t
    if math.isinf(q):
        hit = xp.astype(mean == top, losses.dtype)
        weight = hit / xp.sum(hit, axis=-1, keepdims=True)               # (..., n)
        return top[..., 0], xp.zeros_like(losses) + weight[..., None] / m
    positive = top > 0
    ratio = xp.where(positive, mean / xp.where(positive, top, xp.ones_like(top)), xp.ones_like(mean))  # (..., n)
    log_rho = xp.log(xp.mean(ratio ** q, axis=-1, keepdims=True)) / q    # (..., 1) log(R/t) ≤ 0
    value = top * xp.exp(log_rho)                                        # (..., 1)
    weight = ratio ** (q - 1) * xp.exp(-(q - 1) * log_rho) / n           # (..., n) ∂R/∂ℓ̄_i
    return value[..., 0], xp.zeros_like(losses) + weight[..., None] / m
