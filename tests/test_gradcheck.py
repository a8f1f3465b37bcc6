"""The verifiers themselves: they must agree with known derivatives and catch a wrong backward."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.gradcheck import check_layer, complex_step_grad, numerical_grad, rel_error
from tinynim.nn import Embedding, Linear
from tinynim.random import RNG


@given(seed=st.integers(0, 2**16), n=st.integers(1, 6))
def test_numerical_and_complex_step_match_the_analytic_derivative(seed, n):
    """f(x) = Σ sin(x) e^{x/2}: f' = (cos x + ½ sin x) e^{x/2}, known in closed form.
    Central differences (eps 1e-6): error O(eps²) + rounding ~1e-10 -> tolerance 1e-8.
    Complex step (h 1e-20): no subtraction, exact to rounding -> tolerance 1e-14."""
    x = np.random.default_rng(seed).uniform(-2, 2, n)
    exact = (np.cos(x) + 0.5 * np.sin(x)) * np.exp(x / 2)
    f = lambda v: np.sum(np.sin(v) * np.exp(v / 2))
    assert rel_error(numerical_grad(f, x), exact) < 1e-8
    assert rel_error(complex_step_grad(f, x), exact) < 1e-14


def test_numerical_grad_probes_only_the_requested_coordinates():
    g = numerical_grad(lambda v: float(np.sum(v ** 2)), np.arange(4.0), coords=[1, 3])
    assert np.isnan(g[0]) and np.isnan(g[2])
    np.testing.assert_allclose(g[[1, 3]], [2.0, 6.0], rtol=1e-8)


def test_rel_error_is_normwise():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.ones(3), -np.ones(3)) == pytest.approx(1.0)
    assert rel_error(np.zeros(2), np.zeros(2)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(2), np.ones(3))


class _WrongLinear(Linear):
    """dW off by a factor 1.01: a 1 % error the checkers must see."""

    def backward(self, params, cache, dout):
        dx, grads = super().backward(params, cache, dout)
        return dx, {**grads, "W": 1.01 * grads["W"]}


@pytest.mark.parametrize("method", ["fd", "torch"])
def test_check_layer_catches_a_wrong_backward(f64, method):
    if method == "torch":
        pytest.importorskip("torch")
    layer = _WrongLinear(3, 2)
    errors = check_layer(layer, layer.init(RNG(0)), RNG(1).normal((4, 3)), method=method)
    assert errors["W"] > 1e-3                         # ≈ 0.01 / 2.01
    assert errors["b"] < 1e-7 and errors["x"] < 1e-7  # the untouched gradients still pass


def test_check_layer_skips_integer_inputs(f64):
    layer = Embedding(5, 3)
    errors = check_layer(layer, layer.init(RNG(0)), RNG(1).integers(0, 5, (2, 4)))
    assert set(errors) == {"W"} and errors["W"] < 1e-7


def test_check_layer_rejects_unknown_method(f64):
    layer = Linear(2, 2)
    with pytest.raises(ValueError, match="method must be 'fd' or 'torch'"):
        check_layer(layer, layer.init(0), RNG(0).normal((1, 2)), method="jax")
