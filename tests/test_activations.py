"""Elementwise activations: hand-derived f' vs finite differences and torch autograd, and
forward and derivative vs torch.nn.functional (an implementation independent of ours)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.activations import ACTIVATIONS, ReLU
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
