"""Evolution strategies: gradient estimates from loss values alone (no backward pass).

With θ the flattened parameters (D entries), n antithetic pairs ε_i ~ N(0, I_D) and
L±_i = L(θ ± σ ε_i), the plain estimator is

    ĝ = 1/(2nσ) Σ_i (L+_i − L−_i) ε_i

an unbiased estimate of the gradient of the Gaussian-smoothed loss E[L(θ + σε)]
(exactly ∇L for a quadratic, whose even terms cancel within a pair).

Rank shaping replaces every loss by its centred rank among all 2n losses,
u = rank/(2n − 1) − ½ ∈ [−½, ½] (rank 0 for the smallest loss; tied losses share their
average rank, so equal losses carry no direction), then applies the same formula:
invariant to any increasing transform of L and robust to outliers, it estimates a
*direction*, not the gradient's magnitude (combine it with Adam, not plain SGD).

Both follow the gradient's sign convention (they point uphill), so they plug into the
optimisers of :mod:`tinynim.optim` exactly as backprop gradients do. Loss values and
their ranks are host numbers (numpy); the noise and the estimate live on the params' backend.
"""
from __future__ import annotations

import numpy as np
import array_api_compat

from tinynim.backend import namespace, to_numpy
from tinynim.random import RNG, as_rng
from tinynim.tree import flatten, unflatten


def centered_ranks(losses):
    """Losses (any shape, any backend) -> centred ranks in [−½, ½], same shape: rank/(n − 1) − ½
    with rank 0 for the smallest of the n losses. Tied losses share the average of the ranks
    they span (as ``scipy.stats.rankdata(method="average")``), so the ranks always sum to
    n(n − 1)/2: an all-tied population gets all zeros, hence a zero ES gradient, and the
    result does not depend on the order of the members.

    With s the sorted losses, the ranks spanned by the value x are searchsorted(s, x, left)
    to searchsorted(s, x, right) − 1; their mean needs no loop and no value-dependent
    branch (traceable for jax.jit). Needs n ≥ 2.
    """
    xp = namespace(losses)
    n = 1
    for k in losses.shape:
        n *= k
    if n < 2:
        raise ValueError(f"centered_ranks: need at least 2 losses, got shape {tuple(losses.shape)}")
    flat = xp.reshape(losses, (n,))
    s = xp.sort(flat)
    span = xp.searchsorted(s, flat, side="left") + xp.searchsorted(s, flat, side="right") - 1   # (n,) 2 × mean rank
    dtype = losses.dtype if xp.isdtype(losses.dtype, "real floating") else xp.float64
    return xp.reshape(xp.astype(span, dtype) / (2 * (n - 1)) - 0.5, tuple(losses.shape))


def _noise(params, rng, sigma, n_pairs, who):
    """(θ, spec, ε) for an antithetic estimate: ε (n, D) drawn on the host, on θ's device."""
    if not (sigma > 0 and n_pairs >= 1):
        raise ValueError(f"{who}: need sigma > 0 and n_pairs >= 1, "
                         f"got sigma={sigma}, n_pairs={n_pairs}")
    theta, spec = flatten(params)                                        # (D,)
    xp = namespace(theta)
    host = as_rng(rng).normal((n_pairs, theta.shape[0]), host=True)
    eps = xp.asarray(host, dtype=theta.dtype, device=array_api_compat.device(theta))  # (n, D)
    return theta, spec, eps


def _estimate(losses, eps, spec, sigma, rank_shaping, who):
    """The estimate from host losses (2, n) of θ ± σε_i: ``(grad_tree, info)``."""
    n_pairs = eps.shape[0]
    if not np.all(np.isfinite(losses)):
        bad = np.argwhere(~np.isfinite(losses))[0]
        raise FloatingPointError(f"{who}: loss is {losses[tuple(bad)]} at perturbation "
                                 f"{'+-'[bad[0]]}ε_{bad[1]}")
    shaped = centered_ranks(losses) if rank_shaping else losses
    xp = namespace(eps)
    w = (shaped[0] - shaped[1]) / (2 * n_pairs * sigma)                  # (n,)
    w = xp.asarray(w, dtype=eps.dtype, device=array_api_compat.device(eps))
    grad = xp.matmul(w, eps)                                             # (D,)
    return unflatten(grad, spec), {"loss": float(losses.mean()), "losses": losses}


def es_gradient(loss_fn, params, rng, *, sigma, n_pairs, rank_shaping=True):
    """Antithetic ES estimate of ∇L at `params`: ``(grad_tree, info)``.

    loss_fn(tree) -> scalar (0-d array or float), evaluated 2·n_pairs times.
    rng: an :class:`~tinynim.random.RNG`, numpy Generator or int seed (ε is drawn on the
    host, so a seed gives the same estimate on every backend).
    info: {"loss": mean of the 2n perturbed losses, "losses": host array (2, n) of L+ and L−}.
    A NaN or infinite loss raises FloatingPointError.
    """
    theta, spec, eps = _noise(params, rng, sigma, n_pairs, "es_gradient")
    losses = np.empty((2, n_pairs))
    for i in range(n_pairs):
        for row, sign in enumerate((1.0, -1.0)):
            losses[row, i] = float(loss_fn(unflatten(theta + (sign * sigma) * eps[i, :], spec)))
    return _estimate(losses, eps, spec, sigma, rank_shaping, "es_gradient")


def es_gradient_population(population_loss_fn, params, rng, *, sigma, n_pairs, rank_shaping=True):
    """The same estimate as :func:`es_gradient` (same ε for the same rng), with the whole
    population evaluated in ONE call: ``population_loss_fn(tree) -> (2n,)`` losses, where
    every leaf of `tree` has a leading population axis of 2n members, θ + σε_1 … θ + σε_n
    then θ − σε_1 … θ − σε_n. No Python loop over members: a model written for a batch of
    parameter sets (einsum over the leading axis) evaluates them in one vectorised pass.
    """
    theta, spec, eps = _noise(params, rng, sigma, n_pairs, "es_gradient_population")
    xp = namespace(theta)
    members = theta[None, :] + sigma * xp.concat([eps, -eps], axis=0)   # (2n, D)
    losses = np.asarray(to_numpy(population_loss_fn(unflatten(members, spec))), dtype=np.float64)
    if losses.shape != (2 * n_pairs,):
        raise ValueError(f"es_gradient_population: population_loss_fn must return ({2 * n_pairs},) losses, "
                         f"got shape {losses.shape}")
    return _estimate(losses.reshape(2, n_pairs), eps, spec, sigma, rank_shaping, "es_gradient_population")


def es_loss_and_grads(loss_fn, *, sigma, n_pairs, rank_shaping=True, seed=0, population=False):
    """Wrap ``loss_fn(params, batch) -> scalar`` as ``f(params, batch, step) -> (loss, grads)``
    for :func:`tinynim.train.fit`. The noise of step s comes from the seed sequence
    (seed, s), so a resumed run draws the same perturbations. The reported loss is the mean
    of the 2n perturbed losses (no extra evaluation at θ). ``population=True``: `loss_fn`
    takes a population tree and returns (2n,) losses (:func:`es_gradient_population`)."""
    estimate = es_gradient_population if population else es_gradient

    def loss_and_grads(params, batch, step):
        rng = RNG(np.random.default_rng([seed, step]))
        grads, info = estimate(lambda p: loss_fn(p, batch), params, rng, sigma=sigma,
                               n_pairs=n_pairs, rank_shaping=rank_shaping)
        return info["loss"], grads
    return loss_and_grads
