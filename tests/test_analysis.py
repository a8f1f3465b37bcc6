"""tinynim.analysis: Jacobians from the layers' own backward, cosine alignment, grid search.

References are independent: closed forms (a Linear layer's Jacobian is its weight matrix),
central finite differences of the forward, and plain numpy formulas.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim import analysis
from tinynim.backend import asarray
from tinynim.gradcheck import numerical_grad, torch_func_jacobian
from tinynim.nn import ACTIVATIONS, MLP, REGISTRY, Linear, SoftmaxAttention
from tinynim.random import RNG
from tinynim.tree import get, leaves_with_paths, set_leaf, tree_map
from helpers import KINK_TOL, assert_close, host


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


# -- per-example gradients, params Jacobians and the empirical NTK --------------------------------

ROUTES = sorted((name, route) for name, cls in REGISTRY.items() for route in cls.examples(RNG(0)))
PER_EXAMPLE = [(n, r) for n, r in ROUTES if REGISTRY[n].examples(RNG(0))[r][0].per_example]


def _flat(tree, lead):
    """Host leaves of a tree, each (lead..., P_leaf) flattened after `lead` axes, concatenated."""
    parts = [host(g).reshape(host(g).shape[:lead] + (-1,)) for _, g in leaves_with_paths(tree)]
    return np.concatenate(parts, axis=-1) if parts else None


def test_per_example_covers_the_plain_layers():
    """Which framework layers keep examples apart: Linear, the activations, and containers of
    them; a container holding attention does not (the analysis falls back to the loop)."""
    names = {n for n, _ in PER_EXAMPLE}
    assert {"Linear", "MLP", "Sequential", "Residual", *(c.__name__ for c in ACTIVATIONS.values())} <= names
    assert ("Sequential", "keywords") not in PER_EXAMPLE and not SoftmaxAttention(4, 2).per_example


@pytest.mark.parametrize("name, route", PER_EXAMPLE, ids=[f"{n}/{r}" for n, r in PER_EXAMPLE])
def test_per_example_backward_and_gram(backend, name, route):
    """backward_per_example: the same dx as backward, and grads whose sum over the examples is
    backward's; backward_gram: those per-example grads contracted (all pairs, and a split),
    None for a layer without parameters. Float64, 1e-12."""
    layer, x, kwargs = REGISTRY[name].examples(RNG(0))[route]
    params = layer.init(RNG(1))
    out, cache = layer.forward(params, x, **kwargs)
    dout = RNG(2).normal(tuple(out.shape))
    dx, grads = layer.backward(params, cache, dout)
    dx_n, grads_n = layer.backward_per_example(params, cache, dout)
    assert_close(dx_n, dx, 1e-12, "dx")
    summed = tree_map(lambda g: np.sum(host(g), axis=0), grads_n)
    for (path, g), (_, s) in zip(leaves_with_paths(grads), leaves_with_paths(summed)):
        assert_close(s, g, 1e-12, f"Σ_n {path}")
    P = _flat(grads_n, 1)                                                    # (n, P)
    m = x.shape[0] // 2
    for split, expected in [(None, None if P is None else P @ P.T), (m, None if P is None else P[:m] @ P[m:].T)]:
        dx_g, G = layer.backward_gram(params, cache, dout, split)
        assert_close(dx_g, dx, 1e-12, "dx (gram)")
        assert (G is None) == (expected is None)
        if G is not None:
            assert_close(G, expected, 1e-12, f"gram split={split}")


@pytest.mark.parametrize("name, route", PER_EXAMPLE, ids=[f"{n}/{r}" for n, r in PER_EXAMPLE])
def test_fast_jacobian_and_ntk_equal_the_plain_loop(backend, name, route):
    """jacobian(wrt="params") and ntk: the batched one-hot route equals one backward per
    example and output coordinate (the plain route, kept for any layer). Float64, 1e-12."""
    layer, x, kwargs = REGISTRY[name].examples(RNG(0))[route]
    params = layer.init(RNG(1))
    fast = analysis.jacobian(layer, params, x, wrt="params", kwargs=kwargs)
    plain = analysis.jacobian(layer, params, x, wrt="params", kwargs=kwargs, fast=False)
    assert [p for p, _ in leaves_with_paths(fast)] == [p for p, _ in leaves_with_paths(plain)]
    for (path, a), (_, b) in zip(leaves_with_paths(fast), leaves_with_paths(plain)):
        assert tuple(a.shape) == tuple(b.shape), path
        assert_close(a, b, 1e-12, path)
    x2 = RNG(3).normal((3,) + tuple(x.shape[1:]))
    for other in (None, x2):
        assert_close(analysis.ntk(layer, params, x, other, kwargs=kwargs),
                     analysis.ntk(layer, params, x, other, kwargs=kwargs, fast=False), 1e-12, "ntk")


def _fd_params_jacobian(layer, params, x, eps=1e-6):
    """Central differences of the whole output w.r.t. each parameter coordinate: host tree of
    (B, *out, *leaf) arrays (float64)."""
    def column(path, leaf, i):
        def at(delta):
            v = host(leaf).copy().reshape(-1)
            v[i] += delta
            return host(layer(set_leaf(params, path, asarray(v.reshape(tuple(leaf.shape)))), x))
        return (at(eps) - at(-eps)) / (2 * eps)                           # (B, *out)

    result = {}
    for path, leaf in leaves_with_paths(params):
        cols = [column(path, leaf, i) for i in range(math.prod(leaf.shape))]
        result[path] = np.stack(cols, axis=-1).reshape(cols[0].shape + tuple(leaf.shape))
    return result

MLP_CASES = st.tuples(st.sampled_from(sorted(ACTIVATIONS)), st.sampled_from(["standard", "ntk"]),
                      st.booleans(), st.integers(1, 2), st.integers(1, 3))


@given(case=MLP_CASES, seed=st.integers(0, 2**16))
def test_mlp_params_jacobian_and_ntk_match_finite_differences(backend, case, seed):
    """Every activation, both parametrisations, with and without biases: the params Jacobian
    (fast route) against central differences of the forward (float64; 1e-7 smooth, 1e-4 for
    ReLU, whose kinks a probe may straddle), and the NTK against those Jacobians contracted.
    The biases are drawn at random, not left at their zero init: with zero biases an example whose
    first hidden layer is all dead puts every later ReLU exactly at its kink (pre-activation 0),
    where a central difference measures the slope ½ and the layer's relu'(0) = 0 — both correct,
    and a false alarm (seed 1024, B = 3 drew one)."""
    activation, parametrization, bias, d_out, B = case
    layer = MLP([2, 5, 3, d_out], activation=activation, bias=bias, parametrization=parametrization)
    params = layer.init(RNG(seed))
    for path, leaf in leaves_with_paths(params):
        if path.endswith("b"):
            params = set_leaf(params, path, RNG(seed + 2).normal(tuple(leaf.shape)))
    x = RNG(seed + 1).normal((B, 2))
    tol = KINK_TOL if activation == "relu" else 1e-7
    J = analysis.jacobian(layer, params, x, wrt="params")
    fd = _fd_params_jacobian(layer, params, x)
    for path, a in leaves_with_paths(J):
        assert_close(a, fd[path], tol, path)
    F = np.concatenate([fd[p].reshape(B, d_out, -1) for p, _ in leaves_with_paths(J)], axis=-1)
    assert_close(analysis.ntk(layer, params, x), np.einsum("akp,blp->abkl", F, F), tol, "ntk")


@given(case=MLP_CASES, seed=st.integers(0, 2**16))
def test_mlp_params_jacobian_and_ntk_match_torch_func(f64, case, seed):
    """The same MLPs against torch.func.vmap(jacrev) through the layer's own forward: the
    Jacobian leaf by leaf and Θ̂(x1, x2) = J(x1) J(x2)ᵀ, to 1e-10 (same maths, float64)."""
    pytest.importorskip("torch")
    activation, parametrization, bias, d_out, B = case
    layer = MLP([2, 5, 3, d_out], activation=activation, bias=bias, parametrization=parametrization)
    params = layer.init(RNG(seed))
    x1, x2 = RNG(seed + 1).normal((B, 2)), RNG(seed + 2).normal((B + 1, 2))
    J1, J2 = (torch_func_jacobian(layer, params, x) for x in (x1, x2))
    for path, a in leaves_with_paths(analysis.jacobian(layer, params, x1, wrt="params")):
        assert_close(a, get(J1, path), 1e-10, path)
    flat = lambda J, n: np.concatenate([host(g).reshape(n, d_out, -1) for _, g in leaves_with_paths(J)], -1)  # noqa: E731
    expected = np.einsum("akp,blp->abkl", flat(J1, B), flat(J2, B + 1))
    assert_close(analysis.ntk(layer, params, x1, x2), expected, 1e-10, "ntk")


@given(activation=st.sampled_from(sorted(ACTIVATIONS)), seed=st.integers(0, 2**16), N=st.integers(1, 6))
def test_ntk_is_symmetric_psd(backend, activation, seed, N):
    """Θ̂(x, x) as an (N·K)×(N·K) matrix is symmetric and positive semi-definite (a Gram
    matrix): asymmetry ≤ 1e-12 relative, eigenvalues ≥ −1e-10·λ_max; and Θ̂(x2, x1) is the
    transpose of Θ̂(x1, x2)."""
    layer = MLP([3, 8, 2], activation=activation, parametrization="ntk")
    params = layer.init(RNG(seed))
    x, x2 = RNG(seed + 1).normal((N, 3)), RNG(seed + 2).normal((2, 3))
    T = host(analysis.ntk(layer, params, x))                              # (N, N, 2, 2)
    M = T.transpose(0, 2, 1, 3).reshape(2 * N, 2 * N)
    assert_close(M, M.T, 1e-12, "symmetry")
    eig = np.linalg.eigvalsh((M + M.T) / 2)
    assert eig.min() >= -1e-10 * max(eig.max(), 1e-300)
    assert_close(analysis.ntk(layer, params, x2, x), host(analysis.ntk(layer, params, x, x2)).transpose(1, 0, 3, 2),
                 1e-12, "Θ̂(x2, x1)")


def test_ntk_and_jacobian_errors(f64):
    layer = MLP([3, 4, 1])
    params = layer.init(RNG(0))
    x = RNG(1).normal((2, 3))
    with pytest.raises(TypeError, match="ntk: expected x as one array"):
        analysis.ntk(layer, params, (x,))
    with pytest.raises(TypeError, match="ntk: expected x as one array"):
        analysis.ntk(layer, params, x, [x])
    with pytest.raises(ValueError, match=r"jacobian: expected x with a batch axis \(B, ...\), got shape \(\)"):
        analysis.jacobian(layer, params, x[0, 0])
    lin = Linear(3, 2)
    p = lin.init(RNG(0))
    out, cache = lin.forward(p, RNG(0).normal((3,)))                     # no batch axis
    with pytest.raises(ValueError, match=r"Linear: expected x \(per-example .*\) with at least 2 dims"):
        lin.backward_per_example(p, cache, out)
    with pytest.raises(NotImplementedError, match="SoftmaxAttention: no per-example backward"):
        SoftmaxAttention(4, 2).backward_per_example({}, None, None)
    with pytest.raises(ValueError, match="MLP: parametrization must be one of"):
        MLP([2, 3], parametrization="mup")
    with pytest.raises(ValueError, match="Linear: parametrization must be one of"):
        Linear(2, 3, parametrization="NTK")


def test_ntk_parametrization_is_the_standard_one_rescaled(f64):
    """out = x W/√d_in + b with W ~ N(0, 1) equals the standard Linear at W/√d_in; its
    per-weight gradients are 1/√d_in times the standard ones at the same point."""
    std, ntk = Linear(4, 3), Linear(4, 3, parametrization="ntk")
    params = ntk.init(RNG(0))
    params["b"] = RNG(2).normal((3,))
    x = RNG(1).normal((5, 4))
    scaled = {"W": params["W"] / 2.0, "b": params["b"]}                  # √d_in = 2
    assert_close(ntk(params, x), std(scaled, x), 1e-14, "forward")
    dout = RNG(3).normal((5, 3))
    (dxn, gn), (dxs, gs) = (l.backward(p, l.forward(p, x)[1], dout) for l, p in ((ntk, params), (std, scaled)))
    assert_close(dxn, dxs, 1e-14, "dx")
    assert_close(gn["W"], host(gs["W"]) / 2.0, 1e-14, "dW")
    assert abs(float(np.std(host(ntk.init(RNG(5))["W"]))) - 1.0) < 0.5     # 12 draws of N(0, 1)


def test_jacobian_and_ntk_of_an_empty_batch(backend):
    """B = 0: every route returns empty arrays of the right shapes (no reshape of -1 on 0)."""
    layer = MLP([3, 4, 2], activation="tanh")
    params = layer.init(RNG(0))
    x = RNG(1).normal((0, 3))
    for fast in (True, False):
        J = analysis.jacobian(layer, params, x, wrt="params", fast=fast)
        assert tuple(J["0"]["W"].shape) == (0, 2, 3, 4) and tuple(J["2"]["b"].shape) == (0, 2, 2)
        assert tuple(analysis.ntk(layer, params, x, RNG(2).normal((3, 3)), fast=fast).shape) == (0, 3, 2, 2)
    assert tuple(analysis.jacobian(layer, params, x).shape) == (0, 2, 3)
