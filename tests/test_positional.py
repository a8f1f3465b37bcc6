"""Sinusoidal positional encoding: the table against the closed formula, the layer's
backward vs finite differences and torch autograd, both modes, error messages."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import namespace
from tinynim.nn.positional import SinusoidalPositional, sinusoidal
from tinynim.random import RNG
from helpers import assert_gradients, host


def test_sinusoidal_hand_values(backend):
    """Entries worked out by hand for T = 3, d = 5 (odd: the last column is a sine);
    10000^(-2/5) = 10^-1.6 and 10000^(-4/5) = 10^-3.2. Tolerance 1e-14: float64 rounding."""
    pe = host(sinusoidal(3, 5))
    assert pe.shape == (3, 5)
    np.testing.assert_allclose(pe[0], [0, 1, 0, 1, 0], atol=1e-14)
    expected = {(1, 0): math.sin(1), (1, 1): math.cos(1), (1, 2): math.sin(10**-1.6),
                (2, 3): math.cos(2 * 10**-1.6), (2, 4): math.sin(2 * 10**-3.2)}
    for (t, j), value in expected.items():
        assert pe[t, j] == pytest.approx(value, rel=1e-14, abs=1e-14), (t, j)


@given(T=st.integers(1, 12), d=st.integers(1, 9))
def test_sinusoidal_closed_formula(backend, T, d):
    """Every entry vs PE[t, j] = sin/cos(t · 10000^(−2⌊j/2⌋/d)) computed entry by entry with
    math (1e-12: float64, arguments up to ~11 rad); sine/cosine pairs lie on the unit circle."""
    pe = host(sinusoidal(T, d))
    ref = [[(math.sin if j % 2 == 0 else math.cos)(t / 10000 ** (2 * (j // 2) / d)) for j in range(d)]
           for t in range(T)]
    np.testing.assert_allclose(pe, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pe[:, 0:d - 1:2] ** 2 + pe[:, 1::2] ** 2, 1.0, rtol=1e-12)


def test_sinusoidal_dtype_and_backend(backend):
    pe = sinusoidal(4, 6, dtype="float32")
    xp = backend.xp
    assert namespace(pe) is namespace(xp.zeros(1)) and pe.dtype == xp.float32


@pytest.mark.parametrize("mode", ["add", "concat"])
@given(lead=st.lists(st.integers(1, 3), max_size=2), T=st.integers(1, 4), d=st.integers(1, 4),
       d_pos=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_positional_gradients(backend, mode, lead, T, d, d_pos, seed):
    layer = SinusoidalPositional(d_pos, mode=mode)
    d_in = d_pos if mode == "add" else d
    assert_gradients(layer, layer.init(0), RNG(seed).normal(tuple(lead) + (T, d_in)))


def test_positional_forward(backend):
    """add: x + PE[:T]; concat: [x, PE[:T]] broadcast over the batch (exact copies and one
    addition, 1e-15)."""
    x = RNG(0).normal((2, 3, 4))
    pe = host(sinusoidal(3, 4))
    np.testing.assert_allclose(host(SinusoidalPositional(4)({}, x)), host(x) + pe, rtol=1e-15)
    out = host(SinusoidalPositional(4, mode="concat")({}, x))
    assert out.shape == (2, 3, 8)
    np.testing.assert_array_equal(out[..., :4], host(x))
    np.testing.assert_array_equal(out[..., 4:], np.broadcast_to(pe, (2, 3, 4)))


def test_positional_errors(f64):
    with pytest.raises(ValueError, match=r"SinusoidalPositional: unknown mode 'mul'; valid: add, concat"):
        SinusoidalPositional(4, mode="mul")
    with pytest.raises(ValueError, match=r"SinusoidalPositional: expected x of shape \(\.\.\., 4\), got shape \(2, 3, 5\)"):
        SinusoidalPositional(4).forward({}, RNG(0).normal((2, 3, 5)))
    with pytest.raises(ValueError, match=r"SinusoidalPositional: expected x with at least 2 dims, got shape \(4,\)"):
        SinusoidalPositional(4, mode="concat").forward({}, RNG(0).normal(4))
    layer = SinusoidalPositional(2, mode="concat")
    _, cache = layer.forward({}, RNG(0).normal((3, 5)))
    with pytest.raises(ValueError, match=r"SinusoidalPositional: expected dout of shape \(3, 7\), got shape \(3, 5\)"):
        layer.backward({}, cache, RNG(0).normal((3, 5)))
