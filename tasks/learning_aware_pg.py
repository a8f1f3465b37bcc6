"""Learning-aware policy gradients: Meulemans, Kobayashi, von Oswald, Scherrer, Elmoznino,
Richards, Lajoie, Agüera y Arcas, Sacramento, *Multi-agent cooperation through learning-aware
policy gradients* (COALA-PG; ICLR 2025, arXiv:2410.18636). There is no official code; the
environment and the analytic game live in :mod:`tasks.ipd`.

A *meta agent* plays M inner episodes of T steps against a *naive* co-player who learns after
every episode from a batch of B parallel episodes; the meta agent's objective is its reward
over the whole meta-trajectory (the co-player's learning included). This module holds the
paper's claims and their measurements; the exact ones first:

* the analytic iterated prisoner's dilemma (App. C): the hand-derived gradient, the swap
  symmetry of the two players' values, the Neumann series, the complex-step meta-gradient
  through the naive learner's unrolled steps, and the zero-determinant identity (Eq. 18).
"""
from __future__ import annotations

import functools

import numpy as np

from tinynim.backend import asarray, to_numpy, use_dtype
from tinynim.claims import Claim
from tinynim.random import RNG

from tasks import ipd


# -- exact measurements ------------------------------------------------------------------------

def _numerical_gradient(f, x, eps=1e-6):
    """Central differences of a batched f: (...) from x (..., n), all coordinates at once."""
    n = x.shape[-1]
    eye = asarray(np.eye(n))
    cols = [(f(x + eps * eye[k, :]) - f(x - eps * eye[k, :])) / (2 * eps) for k in range(n)]
    return np.stack([to_numpy(c) for c in cols], axis=-1)


def _rel(a, b):
    a, b = np.asarray(to_numpy(a), dtype=np.float64), np.asarray(to_numpy(b), dtype=np.float64)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


def analytic_errors(seed=0, gamma=0.9, n_naive=5, eta=5.0) -> dict:
    """The exact identities of the analytic IPD (float64, active backend), on 16 random pairs
    of logits φ ~ N(0, 2²): relative errors, and the ZD identity's max |violation|."""
    with use_dtype("float64"):
        rng = RNG(seed)
        phi1, phi2 = rng.normal((16, 5), std=2.0), rng.normal((16, 5), std=2.0)
        J, d1, d2 = ipd.value_and_grads(phi1, phi2, gamma)
        J1, J2 = ipd.values(phi1, phi2, gamma)
        shaping, meta_grad = ipd.shaping_gradient(phi1, phi2, n_naive, eta, gamma)
        fd_meta = _numerical_gradient(lambda x: ipd.shaping_objective(x, phi2, n_naive, eta, gamma), phi1)
        m = {"grad_own_vs_fd": _rel(d1, _numerical_gradient(lambda x: ipd.values(x, phi2, gamma)[0], phi1)),
             "grad_other_vs_fd": _rel(d2, _numerical_gradient(lambda x: ipd.values(phi1, x, gamma)[0], phi2)),
             "fast_vs_solve": _rel(J, J1),
             "swap_symmetry": _rel(ipd.values(phi2, phi1, gamma)[1], J1),
             "neumann": _rel(ipd.neumann_value(phi1, phi2, gamma, 400), J1),
             "meta_grad_vs_fd": _rel(meta_grad, fd_meta)}
        q = rng.uniform((8, 4), 0.05, 0.95)                                     # interior co-players
        violation, fit = 0.0, 0.0
        for chi in (1.0, 2.0, 3.5):
            phi = 0.8 / (1 + 2 * chi)                                           # inside the ZD range
            p = asarray(np.broadcast_to(np.array(ipd.zd_strategy(chi, phi)), (8, 4)).copy())
            s_x, s_y = ipd.long_run_rewards(p, q)
            P = ipd.PAYOFFS[3]
            violation = max(violation, float(np.max(np.abs(to_numpy((s_x - P) - chi * (s_y - P))))))
            chi_fit, phi_fit, _ = ipd.zd_fit(p)
            fit = max(fit, float(np.max(np.abs(to_numpy(chi_fit) - chi))), float(np.max(np.abs(to_numpy(phi_fit) - phi))))
        m.update(zd_identity=violation, zd_fit=fit,
                 tit_for_tat=float(np.max(np.abs(np.array(ipd.zd_strategy(1.0, 1 / 3)) - [1, 0, 1, 0]))))
        return m


EXPERIMENTS: dict = {}
MEASUREMENTS = ("analytic",)


def measure(name, *, quick_mode=None, log=None, seed_offset=0):
    """Metrics of "analytic" (exact identities of the analytic IPD)."""
    if name == "analytic":
        return analytic_errors(seed_offset)
    raise ValueError(f"measure: unknown experiment {name!r}; known: {MEASUREMENTS + tuple(EXPERIMENTS)}")


# -- claims --------------------------------------------------------------------------------------

PAPER = "2410.18636"
TITLE = "Meulemans et al. 2025, *Multi-agent cooperation through learning-aware policy gradients*"
_CLAIM = functools.partial(Claim, paper=PAPER)
_ANALYTIC = dict(kind="exact", experiment="analytic", reference="exact", seeds="seed 0")
_FD = "central differences (h = 1e-6) in float64: truncation ~h² and rounding ~1e-16/h, ~1e-9 relative"

CLAIMS = (
    _CLAIM(id="P9.analytic.grad_own", metric="grad_own_vs_fd", bound=("<=", 1e-7), source="paper App. C (Eq. 15–16)",
           statement="analytic IPD: hand-derived ∂J¹/∂φ¹ vs central differences (rel. error)", observed=(8.2e-10, 8.2e-10),
           why=_FD, **_ANALYTIC),
    _CLAIM(id="P9.analytic.grad_other", metric="grad_other_vs_fd", bound=("<=", 1e-7), source="paper App. C",
           statement="analytic IPD: hand-derived ∂J¹/∂φ² (the co-player's logits) vs central differences",
           observed=(5.8e-10, 5.8e-10), why=_FD, **_ANALYTIC),
    _CLAIM(id="P9.analytic.fast", metric="fast_vs_solve", bound=("<=", 1e-12), source="ours",
           statement="J¹ by the batched 4 × 4 LU (no pivoting) = J¹ by linalg.solve", observed=(2.1e-16, 2.1e-16),
           why="the same linear system solved two ways: rounding only", **_ANALYTIC),
    _CLAIM(id="P9.analytic.swap", metric="swap_symmetry", bound=("<=", 1e-12), source="paper App. C",
           statement="swap symmetry J¹(φ, ψ) = J²(ψ, φ) (own-action-first states)", observed=(1.1e-16, 1.1e-16),
           why="the same number computed in a permuted order: rounding only", **_ANALYTIC),
    _CLAIM(id="P9.analytic.neumann", metric="neumann", bound=("<=", 1e-12), source="paper Eq. 15",
           statement="Σ_{t<400} γ^t rᵀ M^t s0 = rᵀ (I − γM)⁻¹ s0 (γ = 0.9)", observed=(4.2e-16, 4.2e-16),
           why="the neglected tail is γ^400/(1 − γ) ≈ 5e-18 of the payoff scale: rounding only", **_ANALYTIC),
    _CLAIM(id="P9.analytic.meta_grad", metric="meta_grad_vs_fd", bound=("<=", 1e-6), source="paper App. C (Eq. 17)",
           statement="∇J̄ by the complex step through 5 unrolled naive steps (η = 5) vs central differences",
           observed=(6.2e-10, 6.2e-10), why=_FD + "; the unrolled map has larger curvature, so 1e-6", **_ANALYTIC),
    _CLAIM(id="P9.zd.identity", metric="zd_identity", bound=("<=", 1e-12), source="paper Eq. 18 (Press & Dyson)",
           statement="ZD strategy (χ ∈ {1, 2, 3.5}) vs 8 interior co-players: max |s_X − P − χ(s_Y − P)|",
           observed=(4.4e-16, 4.4e-16), why="an identity of the stationary distribution, one 4 × 4 solve: rounding only", **_ANALYTIC),
    _CLAIM(id="P9.zd.fit", metric="zd_fit", bound=("<=", 1e-12), source="ours",
           statement="the least-squares (χ, φ) fit recovers the parameters of an exact ZD strategy (max |error|)",
           observed=(8.9e-16, 8.9e-16), why="a consistent 2 × 2 normal-equation solve: rounding only", **_ANALYTIC),
    _CLAIM(id="P9.zd.tft", metric="tit_for_tat", bound=("<=", 1e-15), source="paper Sec. 4.2",
           statement="χ = 1, φ = 1/3 is tit-for-tat [1, 0, 1, 0] (max |difference|)", observed=(0.0, 0.0),
           why="exact arithmetic on thirds up to one rounding", **_ANALYTIC),
)
