"""Elementwise activations: hand-derived f' vs finite differences and torch autograd, and
forward and derivative vs torch.nn.functional (an implementation independent of ours)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.activations import ACTIVATIONS, ReLU, Softplus, sigmoid, sigmoid_tanh
from tinynim.nn import REGISTRY
from tinynim.random import RNG
from helpers import assert_gradients, host

NAMES = sorted(ACTIVATIONS)


def moderate_inputs(seed, shape):
    """|x| uniform in [0.1, 3], random sign. Away from 0, a finite-difference probe
    (eps = 1e-6) never straddles ReLU's kink, so the smooth tolerance applies to every
    activation; below 3, f' ≥ 0.01 where the activation saturates, so its relative error is
    not swamped by the ~1e-10 absolute noise of the differences. The saturated regions are
    checked against torch in test_activation_matches_torch_functional."""
    rng = RNG(seed)
    magnitude = rng.uniform(shape, 0.1, 3.0, host=True)
    return asarray(np.where(rng.uniform(shape, host=True) < 0.5, -magnitude, magnitude))


@pytest.mark.parametrize("name", NAMES)
@given(shape=st.lists(st.integers(1, 4), max_size=3), seed=st.integers(0, 2**16))
def test_activation_gradients(backend, name, shape, seed):
    layer = ACTIVATIONS[name]()
    assert layer.init(0) == {}
    assert_gradients(layer, {}, moderate_inputs(seed, tuple(shape)))


def _torch_reference(name):
    F = pytest.importorskip("torch.nn.functional")
    return {"relu": F.relu, "gelu": lambda t: F.gelu(t, approximate="tanh"), "tanh": F.tanh,
            "sigmoid": F.sigmoid, "softplus": F.softplus}[name]


@pytest.mark.parametrize("name", NAMES)
def test_activation_matches_torch_functional(backend, name):
    """Forward and f' against torch's own functions on float64, including |x| up to 800,
    where a naive exp(x) overflows (RuntimeWarnings are errors in this suite).
    Tolerance rtol 1e-12 (the same float64 maths up to operation order, errors ~1e-16·|x|)
    and atol 1e-13: torch's GELU computes 1 + tanh(u), which loses ~1e-16 absolutely to
    cancellation for u ≪ 0 (x ≈ −5 gives values ~1e-8 with only ~7 correct digits there);
    our σ(2u) form does not, so near-zero entries can differ by a few 1e-15."""
    torch = pytest.importorskip("torch")
    xs = np.concatenate([[-800.0, -40.0, -3.0, -0.5, 0.5, 3.0, 19.0, 40.0, 800.0],
                         RNG(7).normal(20, std=3.0, host=True)])
    layer = ACTIVATIONS[name]()
    out, cache = layer.forward({}, asarray(xs))
    dx, grads = layer.backward({}, cache, asarray(np.ones_like(xs)))
    t = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    ref = _torch_reference(name)(t)
    (dref,) = torch.autograd.grad(ref.sum(), t)
    np.testing.assert_allclose(host(out), ref.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(host(dx), dref.numpy(), rtol=1e-12, atol=1e-13)
    assert grads == {}


def test_relu_values_and_kink(f64):
    """ReLU by hand: max(x, 0), and slope 0 at the kink x = 0 (the subgradient we chose)."""
    out, cache = ReLU().forward({}, asarray([-2.0, 0.0, 3.0]))
    dx, _ = ReLU().backward({}, cache, asarray([5.0, 5.0, 5.0]))
    assert host(out).tolist() == [0.0, 0.0, 3.0]
    assert host(dx).tolist() == [0.0, 0.0, 5.0]


def test_activations_registered_and_dout_shape_checked(f64):
    for cls in ACTIVATIONS.values():
        assert REGISTRY[cls.__name__] is cls
        (layer, x, kwargs), = cls.examples(0).values()
        assert isinstance(layer, cls) and kwargs == {}
    _, cache = ReLU().forward({}, asarray(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"ReLU: expected dout of shape \(2, 3\), got shape \(3,\)"):
        ReLU().backward({}, cache, asarray(np.ones(3)))


def test_relu_propagates_nan_like_torch(f64):
    """ReLU(NaN) is NaN (torch semantics), not 0: a NaN input must stay visible."""
    out, cache = ReLU().forward({}, asarray([np.nan, -1.0, 2.0]))
    got = host(out)
    assert np.isnan(got[0]) and got[1:].tolist() == [0.0, 2.0]


def test_softplus_derivative_at_infinities(f64):
    """f'(+inf) = 1 and f'(−inf) = 0, as torch's softplus backward (exp(x − out) gave NaN at +inf)."""
    out, cache = Softplus().forward({}, asarray([np.inf, -np.inf, 0.0]))
    dx, _ = Softplus().backward({}, cache, asarray([1.0, 1.0, 1.0]))
    assert host(out).tolist() == [np.inf, 0.0, np.log(2.0)]
    assert host(dx).tolist() == [1.0, 0.0, 0.5]


def test_fast_sigmoid_equals_plain(backend):
    """The tanh form (used by Sigmoid, Softplus', GELU) equals the plain overflow-free form.
    Tolerance 4.5e-16 absolute, two ulps of 1: both round σ to within an ulp of 1 where σ is
    O(1); for x ≪ 0 the tanh form loses σ(x) < 1e-16 to that absolute rounding (torch's GELU
    does the same), hence no relative tolerance. The plain form is checked relatively."""
    xs = np.concatenate([[-800.0, -40.0, -3.0, -0.0, 0.0, 3.0, 40.0, 800.0, np.inf, -np.inf],
                         np.linspace(-30, 30, 601)])
    x = asarray(xs)
    xp = backend.xp
    plain, fast = host(sigmoid(xp, x)), host(sigmoid_tanh(xp, x))
    np.testing.assert_allclose(fast, plain, rtol=0, atol=4.5e-16)
    with np.errstate(over="ignore"):                   # e^800 = inf gives the exact σ = 0
        exact = 1 / (1 + np.exp(-xs))
    np.testing.assert_allclose(plain, exact, rtol=1e-15, atol=0)
