import pytest
from hypothesis import given, strategies as st

from tinynim.nn import Linear
from tinynim.random import RNG
from helpers import assert_gradients


@given(d_in=st.integers(1, 5), d_out=st.integers(1, 5), lead=st.lists(st.integers(1, 3), max_size=2),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_gradients(backend, d_in, d_out, lead, bias, seed):
    rng = RNG(seed)
    layer = Linear(d_in, d_out, bias=bias)
    assert_gradients(layer, layer.init(rng), rng.normal(tuple(lead) + (d_in,)))


def test_linear_shape_error(f64):
    layer = Linear(3, 2)
    with pytest.raises(ValueError, match=r"Linear: expected x of shape \(\.\.\., 3\), got shape \(4, 5\)"):
        layer.forward(layer.init(0), RNG(0).normal((4, 5)))
