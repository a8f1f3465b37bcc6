"""Sequential, Residual and MLP: composed backwards vs finite differences and torch autograd,
forward vs explicit composition, parameter layout, error messages."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.nn.activations import ACTIVATIONS, Tanh
from tinynim.nn import REGISTRY
from tinynim.nn.containers import Residual, Sequential
from tinynim.nn.linear import Linear
from tinynim.nn.mlp import MLP
from tinynim.nn.norm import LayerNorm
from tinynim.random import RNG
from helpers import FD_TOL, KINK_TOL, assert_gradients, host

# Widths ≥ 2: every checked array then has several entries, so its gradient is not near 0
# by chance (a lone scalar derivative can be, e.g. −6e-6 for one seed of a 1-wide chain,
# where a relative error only measures the ~1e-10 noise of finite differences).
dims = st.integers(2, 4)


@given(d0=dims, d1=st.integers(3, 5), d2=dims, lead=st.lists(dims, min_size=1, max_size=2),
       seed=st.integers(0, 2**16))
def test_sequential_gradients(backend, d0, d1, d2, lead, seed):
    rng = RNG(seed)
    layer = Sequential(Linear(d0, d1), Tanh(), LayerNorm(d1), Linear(d1, d2))
    assert_gradients(layer, layer.init(rng), rng.normal(tuple(lead) + (d0,)))


@given(d=dims, h=dims, lead=st.lists(dims, max_size=2), seed=st.integers(0, 2**16))
def test_residual_gradients(backend, d, h, lead, seed):
    rng = RNG(seed)
    layer = Residual(Sequential(Linear(d, h), Tanh(), Linear(h, d)))
    assert_gradients(layer, layer.init(rng), rng.normal(tuple(lead) + (d,)))


def test_sequential_and_residual_compose(backend):
    """Sequential = nested calls; Residual = x + inner; params keyed by position, each child
    from its own stream (two equal-shaped Linears get different W). Tolerance 1e-14:
    the same float64 operations in the same order."""
    a, b = Linear(3, 3), Linear(3, 3)
    seq = Sequential(a, Tanh(), b)
    params = seq.init(0)
    assert sorted(params) == ["0", "1", "2"] and params["1"] == {}
    assert not np.allclose(host(params["0"]["W"]), host(params["2"]["W"]))
    x = RNG(1).normal((2, 3))
    np.testing.assert_allclose(host(seq(params, x)), host(b(params["2"], Tanh()({}, a(params["0"], x)))), rtol=1e-14)
    res = Residual(seq)
    np.testing.assert_allclose(host(res(params, x)), host(x) + host(seq(params, x)), rtol=1e-14)


def test_container_errors(f64):
    x = RNG(0).normal((2, 3))
    res = Residual(Linear(3, 4))
    with pytest.raises(ValueError, match=r"Residual: inner Linear maps x of shape \(2, 3\) to shape \(2, 4\)"):
        res.forward(res.init(0), x)
    with pytest.raises(ValueError, match=r"Sequential: needs at least one layer"):
        Sequential()
    seq = Sequential(Linear(3, 2), Linear(3, 2))
    with pytest.raises(ValueError, match=r"Linear: expected x of shape \(\.\.\., 3\), got shape \(2, 2\)"):
        seq.forward(seq.init(0), x)
    with pytest.raises(ValueError, match=r"Sequential: params lack \['1'\]"):
        seq.forward({"0": seq.init(0)["0"]}, x)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@given(sizes=st.lists(dims, min_size=2, max_size=4), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_mlp_gradients(backend, activation, sizes, bias, seed):
    """Biases drawn from N(0, 0.5²): with the init's b = 0, a ReLU output of exactly 0 feeds
    a pre-activation of exactly 0, right on the kink. ReLU MLPs still use KINK_TOL: a hidden
    pre-activation may fall within eps of the kink. Margin: over 400 seeds of sigmoid MLPs
    of this size (the worst case: each σ' ≤ 1/4 shrinks the first layer's gradient towards
    the ~1e-10 noise of the differences) the largest error was 2e-8 against FD_TOL = 1e-7."""
    rng = RNG(seed)
    layer = MLP(sizes, activation=activation, bias=bias)
    params = {k: {**p, "b": rng.normal(p["b"].shape, std=0.5)} if "b" in p else p for k, p in layer.init(rng).items()}
    assert_gradients(layer, params, rng.normal((2, sizes[0])),
                     fd_tol=KINK_TOL if activation == "relu" else FD_TOL)


@pytest.mark.parametrize("activation, phi", [("relu", lambda z: np.maximum(z, 0)), ("tanh", np.tanh)])
def test_mlp_forward_by_hand(backend, activation, phi):
    """MLP([4, 5, 3, 2]) = Linear, φ, Linear, φ, Linear, recomputed in numpy (1e-12:
    float64, operation order only)."""
    mlp = MLP([4, 5, 3, 2], activation=activation)
    params = mlp.init(3)
    assert sorted(params) == ["0", "1", "2", "3", "4"]
    W = [host(params[k]["W"]) for k in "024"]
    b = [host(params[k]["b"]) for k in "024"]
    assert [w.shape for w in W] == [(4, 5), (5, 3), (3, 2)]
    x = RNG(4).normal((6, 4))
    h = phi(host(x) @ W[0] + b[0])
    h = phi(h @ W[1] + b[1])
    np.testing.assert_allclose(host(mlp(params, x)), h @ W[2] + b[2], rtol=1e-12, atol=1e-12)


def test_mlp_options_and_errors(f64):
    assert all("b" not in p for p in MLP([2, 3, 1], bias=False).init(0).values())
    assert len(MLP([2, 1]).layers) == 1
    with pytest.raises(ValueError, match=r"MLP: unknown activation 'swish'; valid: gelu, relu, sigmoid, softplus, tanh"):
        MLP([2, 3], activation="swish")
    with pytest.raises(ValueError, match=r"MLP: sizes must be \[d_in, \.\.\., d_out\] with at least 2 entries, got \[3\]"):
        MLP([3])


def test_examples_registered(f64):
    for cls in (Sequential, Residual, MLP):
        assert REGISTRY[cls.__name__] is cls
        for route, (layer, x, kwargs) in cls.examples(0).items():
            assert isinstance(layer, cls) and layer(layer.init(0), x, **kwargs) is not None, route
