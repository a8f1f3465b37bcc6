"""Finite two-player zero-sum games (NumPy/SciPy only: ``scipy.optimize.linprog`` is not part
of the Array API): the value of the best pure strategy, of the best mixture (an LP), and the
best response to a fixed input distribution. The exact references of arXiv:2408.10818's tasks
(:mod:`tasks.randomized_algorithms`, :mod:`tasks.grid_exploration`) are games A[input, strategy]
of losses; the adversary picks the input (a row), the algorithm a strategy (a column).
"""
from __future__ import annotations

import numpy as np


def deterministic_value(A) -> float:
    """min over pure strategies (columns) of the worst case over inputs (rows): min_s max_i A[i, s]."""
    return float(np.min(np.max(A, axis=0)))


def lp_value(A):
    """Value of the matrix game min_x max_i (A x)_i over mixtures x of the columns: ``(value, x)``.

    LP over (x, t): minimise t subject to A x ≤ t·1, Σ x = 1, x ≥ 0 (HiGHS, tolerance ~1e-9).
    """
    from scipy.optimize import linprog
    A = np.asarray(A, dtype=np.float64)
    n, c = A.shape
    res = linprog(np.r_[np.zeros(c), 1.0], A_ub=np.c_[A, -np.ones(n)], b_ub=np.zeros(n),
                  A_eq=np.r_[np.ones(c), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * c + [(None, None)],
                  method="highs")
    if not res.success:
        raise RuntimeError(f"lp_value: linprog failed on a {A.shape} game: {res.message}")
    return float(res.x[-1]), res.x[:-1]


def best_response_value(A, p):
    """min over mixtures x of the expected loss pᵀ A x under a *fixed* input distribution p,
    by the same LP machinery: ``(value, x)``. Its optimum sits at a vertex of the simplex,
    a pure strategy (derandomisation): value = min_s (pᵀA)_s."""
    from scipy.optimize import linprog
    A, p = np.asarray(A, dtype=np.float64), np.asarray(p, dtype=np.float64)
    c = A.shape[1]
    res = linprog(p @ A, A_eq=np.ones((1, c)), b_eq=[1.0], bounds=[(0, None)] * c, method="highs")
    if not res.success:
        raise RuntimeError(f"best_response_value: linprog failed: {res.message}")
    return float(res.fun), res.x
