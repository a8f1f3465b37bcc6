"""tinynim.analysis: Jacobians from the layers' own backward, cosine alignment, grid search.

References are independent: closed forms (a Linear layer's Jacobian is its weight matrix),
central finite differences of the forward, and plain numpy formulas.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim import analysis
from tinynim.backend import asarray
from tinynim.gradcheck import numerical_grad
from tinynim.nn import MLP, Linear
from tinynim.random import RNG
from helpers import assert_close, host


def test_linear_jacobians_are_closed_forms(backend):
    """out = x W + b: ∂out_k/∂x_i = W[i, k]; ∂out_k/∂W[i, j] = x_i δ_jk; ∂out_k/∂b_j = δ_jk."""
    layer = Linear(3, 2)
    params = layer.init(RNG(0))
    x = RNG(1).normal((4, 3))
    J = analysis.jacobian(layer, params, x)                              # (B, 2, 3)
    assert_close(J, np.broadcast_to(host(params["W"]).T, (4, 2, 3)), 1e-12, "dout/dx")
    Jp = analysis.jacobian(layer, params, x, wrt="params")
    eye = np.eye(2)
    assert_close(Jp["W"], np.einsum("bi,kj->bkij", host(x), eye), 1e-12, "dout/dW")
    assert_close(Jp["b"], np.broadcast_to(eye, (4, 2, 2)), 1e-12, "dout/db")
    flat = analysis.flatten_params_jacobian(Jp)
    assert tuple(flat.shape) == (4, 2, 3 * 2 + 2)


@given(seed=st.integers(0, 2**16), B=st.integers(1, 3), d_out=st.integers(1, 3))
def test_mlp_jacobians_match_finite_differences(f64, seed, B, d_out):
    """A tanh MLP: every row of both Jacobians against central differences (float64, 1e-7)."""
    layer = MLP([3, 4, d_out], activation="tanh")
    params = layer.init(RNG(seed))
    x = RNG(seed + 1).normal((B, 3))
    J = host(analysis.jacobian(layer, params, x))
    Jp = analysis.jacobian(layer, params, x, wrt="params")
    xh = host(x)
    for b in range(B):
        for k in range(d_out):
            f = lambda v: float(host(layer(params, asarray(v[None, :])))[0, k])
            assert_close(J[b, k], numerical_grad(f, xh[b]), 1e-7, f"dx row {b},{k}")
            W = host(params["0"]["W"])
            g = lambda w: float(host(layer({**params, "0": {**params["0"], "W": asarray(w)}}, x[b:b + 1]))[0, k])
            assert_close(host(Jp["0"]["W"])[b, k], numerical_grad(g, W), 1e-7, f"dW row {b},{k}")


def test_jacobian_errors(f64):
    layer = Linear(3, 2)
    params = layer.init(RNG(0))
    with pytest.raises(ValueError, match="jacobian: wrt must be one of"):
        analysis.jacobian(layer, params, RNG(1).normal((2, 3)), wrt="x")
    with pytest.raises(TypeError, match="jacobian: expected x as one array"):
        analysis.jacobian(layer, params, (RNG(1).normal((2, 3)),))


def test_cosine_is_the_formula(backend):
    """Row-wise cosine over all trailing axes and the pairwise matrix, against numpy; a zero
    row has cosine 0 (not NaN)."""
    a = RNG(0).normal((4, 2, 3), host=True)
    b = RNG(1).normal((4, 2, 3), host=True)
    a[1] = 0.0
    fa, fb = a.reshape(4, -1), b.reshape(4, -1)
    norms = lambda v: np.maximum(np.linalg.norm(v, axis=1), np.finfo(float).tiny)
    expected = np.sum(fa * fb, axis=1) / (norms(fa) * norms(fb))
    assert_close(analysis.cosine(asarray(a), asarray(b)), expected, 1e-12, "cosine")
    assert host(analysis.cosine(asarray(a), asarray(b)))[1] == 0.0
    matrix = (fa / norms(fa)[:, None]) @ (fb / norms(fb)[:, None]).T
    assert_close(analysis.cosine_matrix(asarray(a), asarray(b)), matrix, 1e-12, "cosine matrix")
    with pytest.raises(ValueError, match="cosine: expected arrays of equal shape"):
        analysis.cosine(asarray(a), asarray(b[:2]))


def test_grid_search_finds_the_minimum():
    """A shifted quadratic in 1-D and 2-D: the zoom reaches the minimum to a fraction of the
    final cell (grid 11, 4 rounds of ±2 cells: cell width (hi−lo)/10·(4/10)^4 ≈ 2.6e-3)."""
    best, value = analysis.grid_search(lambda p: (p[0] - 0.337) ** 2, [(0.0, 1.0)], grid=11)
    assert abs(best[0] - 0.337) < 3e-3 and value < 1e-5
    f = lambda p: (p[0] - 1.23) ** 2 + 10 * (p[1] + 0.4) ** 2 if p[0] < 2 else float("nan")
    best, _ = analysis.grid_search(f, [(0.0, 3.0), (-1.0, 1.0)], grid=11)
    assert abs(best[0] - 1.23) < 1e-2 and abs(best[1] + 0.4) < 1e-2
    assert all(isinstance(v, float) for v in best)
    with pytest.raises(ValueError, match="grid_search: expected ranges"):
        analysis.grid_search(f, [(1.0, 0.0)])
