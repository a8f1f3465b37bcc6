"""Noisy in-context regression (P4, arXiv:2402.14180): one training step of the 4-layer FULL
and DIAG models.

n = 20 context tokens and a query in d = 10 dimensions (tokens of size 11), B = 2048, float32,
unshared layers, σ_τ ~ U(0, 5). ½-MSE on ŷ = −(query's y after the last layer).

* FULL: single-head merged LSA layers, H ← H + ((H Q)(C)ᵀ) C P, C the context rows. tinynim:
  ``tasks.icl_regression.LinearTransformer`` (the S = Cᵀ C association, the last layer for
  the query row only, and only that row backpropagated into it).
* DIAG: the ω layer, X ← X + ω_xx X Σ + ω_xy y αᵀ, y ← y + ω_yx X α + ω_yy λ y with ω = scale·θ.
  tinynim: ``tasks.noisy_regression.OmegaLSA``, one D×D matrix K = Ω ⊙ CᵀC per sequence and
  layer (out = H K), its hand-derived backward, the last layer for the query row only.

torch / JAX: the textbook formulas above, differentiated by autograd / ``jit(value_and_grad)``.

    python -m benchmarks.run --only noisy
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import Case, TinynimStep, f32, host_flat, jax_step, torch_step

B, N, D, L = 2048, 20, 10, 4


def _data():
    from tasks.noisy_regression import sample
    from tinynim.backend import to_numpy, use_backend
    from tinynim.random import RNG
    with use_backend("numpy", dtype="float64"):
        tokens, targets, _ = sample(RNG(0), B, N, D, sigma_max=5.0)
        return f32(to_numpy(tokens)), f32(to_numpy(targets))


def _loss(pred, targets):
    return 0.5 * ((pred - targets) ** 2).sum() / pred.shape[0]


def _full_loss(p, tokens, targets):
    H = tokens
    for l in range(L):
        C = H[:, :N]
        H = H + (((H @ p[f"{l}/Q"][0]) @ C.mT) @ C) @ p[f"{l}/P"][0]
    return _loss(-H[:, -1, D:], targets)


def _diag_loss(p, tokens, targets, scales):
    """The last layer's x update is not computed: it does not reach ŷ (and autograd refuses
    parameters that do not reach the loss: their gradient is 0 in tinynim)."""
    X, y = tokens[..., :D], tokens[..., D:]
    for l in range(L):
        w = {t: scales[t] * p[f"{l}/{t}"] for t in ("xx", "xy", "yx", "yy") if f"{l}/{t}" in p}
        Xc, yc = X[:, :N], y[:, :N]
        S, a, lam = Xc.mT @ Xc, Xc.mT @ yc, yc.mT @ yc
        y_new = y + w["yx"] * (X @ a) + w["yy"] * (y @ lam)
        if l < L - 1:
            X = X + w["xx"] * (X @ S) + w["xy"] * (y @ a.mT)
        y = y_new
    return _loss(-y[:, -1], targets)


def _setup(kind):
    def setup(impl):
        from tasks import noisy_regression as nr
        from tinynim.backend import asarray
        from tinynim.random import RNG
        from tinynim.train import supervised
        model = nr.full_model(L) if kind == "FULL" else nr.diag_model(L, init_std=0.3)
        params = model.init(RNG(0))
        tokens, targets = _data()
        if impl == "tinynim":
            return TinynimStep(supervised(model), params, (asarray(tokens), asarray(targets)))
        if kind == "FULL":
            loss = _full_loss
        else:
            scales = model.lsa.scales
            loss = lambda p, t, y: _diag_loss(p, t, y, scales)
        flat = {k: v for k, v in host_flat(params).items() if k not in (f"{L - 1}/xx", f"{L - 1}/xy")}
        return {"torch": torch_step, "jax": jax_step}[impl](loss, flat, tokens, targets)
    return setup


# Structure-aware (the S = CᵀC association, the query row only in the last layer): issue 10's
# goal for such cases is eager tinynim <= 0.5x torch autograd.
CASES = [Case("FULL-4layers", _setup("FULL"), info=f"merged P, Q, unshared, n={N}, d={D}, B={B}", goal_vs_torch=0.5),
         Case("DIAG-4layers", _setup("DIAG"), info=f"ω parametrisation, n={N}, d={D}, B={B}", goal_vs_torch=0.5)]
