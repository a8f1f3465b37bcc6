"""Embedding: forward and dW vs torch.nn.functional.embedding, dW vs finite differences
and torch autograd on our own forward (x is integer: no dx)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.embedding import Embedding
from tinynim.random import RNG
from helpers import assert_gradients, host


@given(n_tokens=st.integers(1, 6), d=st.integers(1, 4), lead=st.lists(st.integers(1, 4), max_size=3),
       seed=st.integers(0, 2**16))
def test_embedding_gradients(backend, n_tokens, d, lead, seed):
    """Few tokens, many positions: repeated ids exercise the scatter-add of dW."""
    rng = RNG(seed)
    layer = Embedding(n_tokens, d)
    assert_gradients(layer, layer.init(rng), rng.integers(0, n_tokens, tuple(lead)))


@given(n_tokens=st.integers(1, 6), d=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_embedding_matches_torch(backend, n_tokens, d, seed):
    """Forward (exact: a copy) and dW vs torch's own embedding and its autograd (1e-12:
    sums of the same float64 numbers in another order)."""
    torch = pytest.importorskip("torch")
    rng = RNG(seed)
    layer = Embedding(n_tokens, d)
    params, x, dout = layer.init(rng), rng.integers(0, n_tokens, (3, 5)), rng.normal((3, 5, d))
    out, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, dout)
    W = torch.tensor(host(params["W"]), requires_grad=True)
    ref = torch.nn.functional.embedding(torch.as_tensor(np.asarray(host(x), dtype=np.int64)), W)
    (dW,) = torch.autograd.grad((ref * torch.as_tensor(host(dout))).sum(), W)
    assert dx is None and tuple(out.shape) == (3, 5, d)
    np.testing.assert_array_equal(host(out), ref.detach().numpy())
    np.testing.assert_allclose(host(grads["W"]), dW.numpy(), rtol=1e-12, atol=1e-12)


def test_embedding_scatter_add_by_hand(backend):
    """Ids [[0, 2], [2, 2]]: row 2 of dW sums three upstream rows, row 1 gets none."""
    layer = Embedding(3, 2)
    _, cache = layer.forward(layer.init(0), asarray(np.array([[0, 2], [2, 2]])))
    _, grads = layer.backward({}, cache, asarray(np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])))
    assert host(grads["W"]).tolist() == [[1.0, 2.0], [0.0, 0.0], [15.0, 18.0]]


def test_embedding_errors(backend):
    layer = Embedding(5, 3)
    params = layer.init(0)
    for bad in ([[0, 5]], [[-1, 2]]):
        with pytest.raises(ValueError, match=r"Embedding: token ids must lie in \[0, 5\), got min -?\d, max \d"):
            layer.forward(params, asarray(np.array(bad)))
    with pytest.raises(TypeError, match=r"Embedding: expected token ids x with dtype kind 'integral', got dtype \S*float64"):
        layer.forward(params, asarray(np.zeros((2, 3))))
    _, cache = layer.forward(params, asarray(np.array([1, 2])))
    with pytest.raises(ValueError, match=r"Embedding: expected dout of shape \(2, 3\), got shape \(2, 4\)"):
        layer.backward(params, cache, asarray(np.zeros((2, 4))))
