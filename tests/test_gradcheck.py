"""The verifiers themselves: they must agree with known derivatives and catch a wrong backward."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.gradcheck import TOLERANCES, check_layer, complex_step_grad, numerical_grad, perturb, rel_error
from tinynim.nn import Embedding, LayerNorm, Linear
from tinynim.random import RNG
from helpers import host


@given(seed=st.integers(0, 2**16), n=st.integers(1, 6))
def test_numerical_and_complex_step_match_the_analytic_derivative(seed, n):
    """f(x) = Σ sin(x) e^{x/2}: f' = (cos x + ½ sin x) e^{x/2}, known in closed form, on
    [−2, 2] where every term is O(1) (|terms| ≤ e). Central differences (eps 1e-6): error
    O(eps²) ~1e-12 plus rounding u·|f|/eps ≲ 1e-9 per coordinate; complex step (h 1e-20): no
    subtraction, rounding u·|terms of f'| ≲ 1e-15. Criterion ‖Δ‖ ≤ rtol‖f'‖ + atol√n with
    (rtol, atol) = (1e-8, 1e-8) and (1e-14, 1e-14): absolute parts, because near a zero of f'
    (tan x = −2) a relative error of the tiny derivative is meaningless."""
    x = np.random.default_rng(seed).uniform(-2, 2, n)
    exact = (np.cos(x) + 0.5 * np.sin(x)) * np.exp(x / 2)
    f = lambda v: np.sum(np.sin(v) * np.exp(v / 2))
    norm = np.linalg.norm(exact)
    assert np.linalg.norm(numerical_grad(f, x) - exact) <= 1e-8 * norm + 1e-8 * np.sqrt(n)
    assert np.linalg.norm(complex_step_grad(f, x) - exact) <= 1e-14 * norm + 1e-14 * np.sqrt(n)


def test_derivative_at_a_zero_of_f_prime():
    """At x* = π − arctan 2 (cos + ½ sin = 0) f'(x*) = 0 up to rounding: both differences stay
    within their absolute error although their relative error to ~1e-16 is O(1)."""
    x = np.array([np.pi - np.arctan(2.0)])
    f = lambda v: np.sum(np.sin(v) * np.exp(v / 2))
    exact = (np.cos(x) + 0.5 * np.sin(x)) * np.exp(x / 2)
    assert np.abs(exact).max() < 1e-15
    assert np.abs(numerical_grad(f, x)).max() < 1e-8
    assert np.abs(complex_step_grad(f, x)).max() < 1e-14


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
    assert not errors.passed and set(errors.failures()) == {"W"}
    assert "W: ‖Δ‖" in errors.report() and f"rtol {TOLERANCES[method][0]:g}" in errors.report()


class _Scaled(Linear):
    """out = x (s W) + b: with b = O(1) the probe loss is O(1) while dL/dx = dout (s W)ᵀ and
    dL/dW = s xᵀ dout are as small as s; `bad` scales dx by (1 + bad), a wrong backward."""

    def __init__(self, s, bad=0.0):
        super().__init__(3, 2)
        self.s, self.bad = s, bad

    def forward(self, params, x):
        return super().forward({**params, "W": self.s * params["W"]}, x)

    def backward(self, params, cache, dout):
        dx, grads = super().backward({**params, "W": self.s * params["W"]}, cache, dout)
        return dx * (1 + self.bad), {**grads, "W": self.s * grads["W"]}


def _scaled_check(layer, method):
    params = {**layer.init(RNG(0)), "b": RNG(2).normal(2)}
    return check_layer(layer, params, RNG(1).normal((4, 3)), method=method)


@pytest.mark.parametrize("method", ["fd", "torch"])
def test_tiny_and_zero_gradients_do_not_cry_wolf(f64, method):
    """dx, dW ~ 1e-12 next to O(1) db: finite differences resolve them only to their noise
    (u·|L|/eps ~ 1e-10), a relative error of O(1), yet the check passes on its absolute part;
    with s = 0 the references are exactly zero and pass too. (Before the absolute part:
    rel. errors ~1 on such arrays were false failures under HYPOTHESIS_PROFILE=thorough.)"""
    if method == "torch":
        pytest.importorskip("torch")
    for s in (1e-12, 0.0):
        result = _scaled_check(_Scaled(s), method)
        assert result.passed, result.report()
        assert result.arrays["x"].norm < 1e-10 and result.arrays["b"].norm > 0.1
    if method == "fd":
        assert _scaled_check(_Scaled(1e-12), "fd")["x"] > 1e-3        # what the old test judged


@pytest.mark.parametrize("method", ["fd", "torch"])
def test_small_gradient_errors_above_the_noise_still_fail(f64, method):
    """dx of size ~1e-3 wrong by 1 %: an error of ~1e-5, far above the FD noise (~1e-9 per
    coordinate) though tiny next to ‖db‖ = O(1): the check fails on x alone."""
    if method == "torch":
        pytest.importorskip("torch")
    result = _scaled_check(_Scaled(1e-3, bad=1e-2), method)
    assert set(result.failures()) == {"x"}, result.report()


@pytest.mark.parametrize("method", ["fd", "torch"])
def test_a_nonzero_gradient_where_the_truth_is_zero_fails(f64, method):
    """A backward that reports 1e-6 where the exact gradient is 0 fails."""
    if method == "torch":
        pytest.importorskip("torch")

    class Leaky(_Scaled):
        def backward(self, params, cache, dout):
            dx, grads = super().backward(params, cache, dout)
            return dx + 1e-6, grads
    assert set(_scaled_check(Leaky(0.0), method).failures()) == {"x"}


def test_check_layer_skips_integer_inputs(f64):
    layer = Embedding(5, 3)
    errors = check_layer(layer, layer.init(RNG(0)), RNG(1).integers(0, 5, (2, 4)))
    assert set(errors) == {"W"} and errors["W"] < 1e-7


def test_check_layer_rejects_unknown_method(f64):
    layer = Linear(2, 2)
    with pytest.raises(ValueError, match="method must be 'fd' or 'torch'"):
        check_layer(layer, layer.init(0), RNG(0).normal((1, 2)), method="jax")


def test_assert_gradients_without_torch_still_checks_by_finite_differences(f64, monkeypatch):
    """Without torch the FD half runs and counts (a wrong backward fails); only the autograd
    half is left out, with a warning instead of a skip."""
    import helpers
    monkeypatch.setattr(helpers, "HAS_TORCH", False)
    layer = Linear(3, 2)
    with pytest.warns(UserWarning, match="finite differences only"):
        helpers.assert_gradients(layer, layer.init(RNG(0)), RNG(1).normal((4, 3)))
    wrong = _WrongLinear(3, 2)
    with pytest.raises(AssertionError, match=r"_WrongLinear: fd check .*\n  W: "):
        helpers.assert_gradients(wrong, wrong.init(RNG(0)), RNG(1).normal((4, 3)))


def test_perturb_moves_every_float_array_by_its_scale(f64):
    """γ = 1 and β = 0 (LayerNorm init) both move, by about 0.5 × RMS (1 for an all-zero
    array); the same seed gives the same numbers; inputs are not mutated."""
    params = LayerNorm(400).init(0)
    a, b = perturb(params, seed=1), perturb(params, seed=1)
    for k in params:
        assert np.array_equal(host(a[k]), host(b[k]))
        assert 0.45 < np.std(host(a[k]) - host(params[k])) < 0.55     # 400 draws: ±10 % is 4σ
    assert host(params["gamma"]).tolist() == [1.0] * 400
    assert not np.array_equal(host(perturb(params, seed=2)["gamma"]), host(a["gamma"]))


def test_perturb_leaves_non_float_leaves_alone(f64):
    """An integer array (an index table, a step counter) passes through unchanged, values and
    dtype; the float leaf beside it still moves."""
    params = {"w": RNG(0).normal((3, 2)), "index": np.arange(6).reshape(3, 2)}
    out = perturb(params, seed=4)
    assert out["index"].dtype == params["index"].dtype and np.array_equal(host(out["index"]), host(params["index"]))
    assert not np.array_equal(host(out["w"]), host(params["w"]))


def test_check_at_perturbed_params_catches_what_init_hides(f64):
    """A LayerNorm backward that forgets γ in dx passes at init (γ = 1) and fails once the
    parameters are perturbed."""
    class NoGamma(LayerNorm):
        def backward(self, params, cache, dout):
            return super().backward({**params, "gamma": params["gamma"] * 0 + 1}, cache, dout)[0], \
                super().backward(params, cache, dout)[1]
    layer, x = NoGamma(4), RNG(1).normal((3, 4))
    assert check_layer(layer, layer.init(0), x).passed
    assert set(check_layer(layer, perturb(layer.init(0)), x).failures()) == {"x"}


@pytest.mark.parametrize("method", ["fd", "torch"])
def test_check_layer_runs_in_float64_whatever_the_active_dtype(method):
    """The README's Linear in the default float32: check_layer casts to float64 and runs the
    layer under use_dtype("float64"), so a right backward passes at float64 precision
    (rel. errors ≪ 1e-6, where float32 differences gave ~1e-2) and a 1 % error still fails."""
    if method == "torch":
        pytest.importorskip("torch")
    from tinynim.backend import use_backend
    with use_backend("numpy", dtype="float32"):        # the default dtype
        layer, x = Linear(3, 2), RNG(1).normal((4, 3))
        params = layer.init(RNG(0))
    assert params["W"].dtype == x.dtype and str(x.dtype).endswith("float32")
    ok = check_layer(layer, perturb(params), x, method=method)
    assert ok.passed and max(ok.values()) < 1e-8, ok.report()
    assert "float64" in ok.report()
    bad = check_layer(_WrongLinear(3, 2), perturb(params), x, method=method)
    assert set(bad.failures()) == {"W"}, bad.report()
