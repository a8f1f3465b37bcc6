"""Linear hypernetwork layers (tinynim/nn/hyper.py) on every backend, float64.

Gradients: central differences and torch autograd on the same forward (helpers.assert_gradients;
KINK_TOL where a ReLU sits between layers). Forward: against the plain per-task formula
written here with numpy, tolerance 1e-10 relative (the same sums in another order).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn import HyperLinear, HyperMLP
from tinynim.random import RNG
from helpers import KINK_TOL, assert_close, assert_gradients, host

sizes = st.integers(1, 4)
seeds = st.integers(0, 2**16)


@given(M=sizes, d_in=sizes, d_out=sizes, lead=st.lists(st.integers(1, 3), max_size=2), B=sizes, seed=seeds)
def test_hyper_linear_gradients(backend, M, d_in, d_out, lead, B, seed):
    rng = RNG(seed)
    layer = HyperLinear(M, d_in, d_out)
    x = (rng.normal(tuple(lead) + (B, d_in)), rng.normal(tuple(lead) + (M,)))
    assert_gradients(layer, layer.init(rng), x)


@given(M=sizes, B=sizes, T=sizes, hidden=st.lists(sizes, min_size=1, max_size=2), data=st.data(), seed=seeds)
def test_hyper_mlp_gradients(backend, M, B, T, hidden, data, seed):
    sizes_ = [3] + hidden + [2]
    generated = data.draw(st.lists(st.booleans(), min_size=len(sizes_) - 1, max_size=len(sizes_) - 1)
                          .filter(any))
    activation = data.draw(st.sampled_from(["relu", "tanh"]))
    rng = RNG(seed)
    layer = HyperMLP(M, sizes_, generated=generated, activation=activation, bias=data.draw(st.booleans()))
    x = (rng.normal((T, B, 3)), rng.normal((T, M)))
    assert_gradients(layer, layer.init(rng), x, fd_tol=KINK_TOL if activation == "relu" else 1e-7)


@given(M=sizes, d_in=sizes, d_out=sizes, T=sizes, B=sizes, seed=seeds)
def test_hyper_linear_is_the_per_task_formula(backend, M, d_in, d_out, T, B, seed):
    """out[t] = x[t] (Σ_m z[t, m] Θ_m) / √d_in, one task at a time."""
    rng = RNG(seed)
    layer = HyperLinear(M, d_in, d_out)
    p = layer.init(rng)
    x, z = rng.normal((T, B, d_in)), rng.normal((T, M))
    Th, X, Z = host(p["Theta"]), host(x), host(z)
    expected = np.stack([X[t] @ sum(Z[t, m] * Th[m] for m in range(M)) for t in range(T)]) / np.sqrt(d_in)
    assert_close(layer.forward(p, (x, z))[0], asarray(expected), 1e-10, "HyperLinear forward")
    # one task without a leading axis: z (M,), inputs (B, d_in)
    out, _ = layer.forward(p, (x[0, ...], z[0, ...]))
    assert tuple(out.shape) == (B, d_out)
    assert_close(out, asarray(expected[0]), 1e-10, "HyperLinear, one task")


@given(M=sizes, T=sizes, alpha=st.floats(-3, 3), beta=st.floats(-3, 3), seed=seeds)
def test_generated_weights_are_linear_in_the_code(backend, M, T, alpha, beta, seed):
    """W(αz + βz') = αW(z) + βW(z') (weight-space linearity)."""
    rng = RNG(seed)
    layer = HyperLinear(M, 3, 2)
    p = layer.init(rng)
    z, z2 = rng.normal((T, M)), rng.normal((T, M))
    lhs = layer.weights(p, alpha * z + beta * z2)
    rhs = alpha * layer.weights(p, z) + beta * layer.weights(p, z2)
    assert_close(lhs, rhs, 1e-10, "W(αz + βz')")


@given(T=sizes, B=sizes, seed=seeds)
def test_hyper_mlp_is_the_two_layer_formula(backend, T, B, seed):
    """HyperMLP(M, [n, h, o], generated=(True, False)) is ReLU(x W(z)/√n) A/√h."""
    rng = RNG(seed)
    M, n, h, o = 3, 4, 5, 2
    layer = HyperMLP(M, [n, h, o], generated=(True, False))
    p = layer.init(rng)
    x, z = rng.normal((T, B, n)), rng.normal((T, M))
    W = np.einsum("tm,mnh->tnh", host(z), host(p["0"]["Theta"]))
    expected = np.maximum(host(x) @ W / np.sqrt(n), 0) @ host(p["1"]["W"]) / np.sqrt(h)
    assert_close(layer.forward(p, (x, z))[0], asarray(expected), 1e-10, "HyperMLP forward")


def test_bad_inputs_name_the_layer(f64):
    layer = HyperLinear(3, 4, 2)
    p = layer.init(0)
    rng = RNG(0)
    with pytest.raises(TypeError, match=r"HyperLinear: expected x = \(inputs, z\)"):
        layer.forward(p, rng.normal((2, 5, 4)))
    with pytest.raises(ValueError, match=r"HyperLinear: expected z of shape \(\.\.\., 3\), got shape \(2, 4\)"):
        layer.forward(p, (rng.normal((2, 5, 4)), rng.normal((2, 4))))
    with pytest.raises(ValueError, match=r"HyperLinear: expected inputs \(\.\.\., B, 4\) and z \(\.\.\., 3\) with the "
                                         r"same leading dims, got shapes \(2, 5, 4\) and \(3, 3\)"):
        layer.forward(p, (rng.normal((2, 5, 4)), rng.normal((3, 3))))
    with pytest.raises(ValueError, match=r"HyperMLP: generated must flag each of the 2 layers"):
        HyperMLP(3, [4, 5, 2], generated=(False, False))
    with pytest.raises(ValueError, match=r"HyperMLP: unknown activation 'swish'"):
        HyperMLP(3, [4, 5, 2], activation="swish")
    with pytest.raises(ValueError, match=r"HyperLinear: d_code must be a positive integer, got 0"):
        HyperLinear(0, 4, 2)
