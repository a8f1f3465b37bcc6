"""Losses: values against torch.nn.functional, gradients against float64 central finite
differences (tolerance FD_TOL, see helpers) and torch autograd of the same code (TORCH_TOL)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.gradcheck import numerical_grad
from tinynim.losses import categorical_log_prob, log_softmax, mse, softmax, softmax_cross_entropy
from tinynim.random import RNG
from helpers import FD_TOL, TORCH_TOL, assert_close, host

torch = pytest.importorskip("torch")
F = torch.nn.functional

lead_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def _autograd(f, x):
    """Gradient of the scalar f(x) by torch autograd, x a host float64 array."""
    t = torch.tensor(x, requires_grad=True)
    f(t).backward()
    return t.grad.numpy()


@given(shape=lead_shapes, seed=st.integers(0, 2**16))
def test_mse(backend, shape, seed):
    rng = RNG(seed)
    pred, target = rng.normal(shape, host=True), rng.normal(shape, host=True)
    value, dpred = mse(backend.asarray(pred), backend.asarray(target))
    assert tuple(value.shape) == () and tuple(dpred.shape) == shape
    ref = F.mse_loss(torch.tensor(pred), torch.tensor(target), reduction="sum") / (2 * shape[0])
    assert_close(host(value), ref.numpy(), 1e-14, "mse value")
    fd = numerical_grad(lambda p: float(mse(backend.asarray(p), backend.asarray(target))[0]), pred)
    assert_close(dpred, fd, FD_TOL, "mse dpred vs finite differences")
    ag = _autograd(lambda t: mse(t, torch.tensor(target))[0], pred)
    assert_close(dpred, ag, TORCH_TOL, "mse dpred vs torch autograd")


@given(lead=lead_shapes, n_classes=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy(backend, lead, n_classes, seed):
    rng = RNG(seed)
    logits = rng.normal(lead + (n_classes,), host=True)
    labels = rng.integers(0, n_classes, lead, host=True)
    value, dlogits = softmax_cross_entropy(backend.asarray(logits), backend.asarray(labels))
    assert tuple(value.shape) == () and tuple(dlogits.shape) == logits.shape
    ref = F.cross_entropy(torch.tensor(logits).reshape(-1, n_classes), torch.tensor(labels).reshape(-1))
    assert_close(host(value), ref.numpy(), 1e-14, "cross-entropy value")
    lab = backend.asarray(labels)
    fd = numerical_grad(lambda z: float(softmax_cross_entropy(backend.asarray(z), lab)[0]), logits)
    assert_close(dlogits, fd, FD_TOL, "cross-entropy dlogits vs finite differences")
    ag = _autograd(lambda t: softmax_cross_entropy(t, torch.tensor(labels))[0], logits)
    assert_close(dlogits, ag, TORCH_TOL, "cross-entropy dlogits vs torch autograd (same code)")
    ag = _autograd(lambda t: F.cross_entropy(t.reshape(-1, n_classes), torch.tensor(labels).reshape(-1)),
                   logits)
    assert_close(dlogits, ag, TORCH_TOL, "cross-entropy dlogits vs torch F.cross_entropy")


@given(lead=lead_shapes, n_classes=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_large_logits(backend, lead, n_classes, seed):
    """Logits of std 30: probabilities down to e^-200, gradients nearly 0 or ±1/M. The
    entries of softmax − onehot are O(1) quantities rounded in float64, so they are compared
    in absolute terms (≤ 1e-14); a norm-wise relative error would be ruled by rounding
    whenever the whole gradient is tiny, and so would finite differences."""
    rng = RNG(seed)
    logits = rng.normal(lead + (n_classes,), std=30.0, host=True)
    labels = rng.integers(0, n_classes, lead, host=True)
    value, dlogits = softmax_cross_entropy(backend.asarray(logits), backend.asarray(labels))
    t = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(t.reshape(-1, n_classes), torch.tensor(labels).reshape(-1))
    ref.backward()
    assert abs(float(value) - ref.item()) <= 1e-14 * max(1.0, ref.item())
    assert np.max(np.abs(host(dlogits) - t.grad.numpy())) <= 1e-14


@given(lead=lead_shapes, n_classes=st.integers(1, 6), seed=st.integers(0, 2**16),
       weighted=st.booleans())
def test_categorical_log_prob(backend, lead, n_classes, seed, weighted):
    rng = RNG(seed)
    logits = rng.normal(lead + (n_classes,), host=True)
    actions = rng.integers(0, n_classes, lead, host=True)
    w = rng.normal(lead, host=True) if weighted else np.ones(lead)
    logp, dlogits = categorical_log_prob(backend.asarray(logits), backend.asarray(actions),
                                         backend.asarray(w) if weighted else None)
    ref = np.take_along_axis(F.log_softmax(torch.tensor(logits), -1).numpy(), actions[..., None], -1)[..., 0]
    assert_close(host(logp), ref, 1e-14, "log-prob value")

    def weighted_sum(z):
        return float(np.sum(w * host(categorical_log_prob(backend.asarray(z), backend.asarray(actions))[0])))
    assert_close(dlogits, numerical_grad(weighted_sum, logits), FD_TOL, "dlogits vs finite differences")
    ag = _autograd(lambda t: (torch.tensor(w) * categorical_log_prob(t, torch.tensor(actions))[0]).sum(), logits)
    assert_close(dlogits, ag, TORCH_TOL, "dlogits vs torch autograd")


@given(lead=lead_shapes, n_classes=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_softmax_helpers(backend, lead, n_classes, seed):
    logits = RNG(seed).normal(lead + (n_classes,), std=50.0, host=True)
    z = torch.tensor(logits)
    assert_close(host(log_softmax(backend.asarray(logits))), F.log_softmax(z, -1).numpy(), 1e-14, "log_softmax")
    assert_close(host(softmax(backend.asarray(logits))), F.softmax(z, -1).numpy(), 1e-14, "softmax")


def test_cross_entropy_is_stable_for_huge_logits(f64):
    """exp(1000) overflows float64: a naive log Σ exp would give inf/nan."""
    logits = f64.asarray(np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 2000.0]]))
    value, dlogits = softmax_cross_entropy(logits, f64.asarray(np.array([0, 1])))
    assert float(value) == pytest.approx(500.0, rel=1e-15)     # (0 + 1000) / 2
    np.testing.assert_allclose(host(dlogits), [[0, 0, 0], [0, -0.5, 0.5]], atol=1e-300)


def test_float32_stays_float32():
    from tinynim.backend import use_backend
    with use_backend("numpy", dtype="float32") as b:
        value, d = softmax_cross_entropy(b.asarray(np.zeros((2, 3))), b.asarray(np.array([0, 2])))
        assert value.dtype == np.float32 and d.dtype == np.float32
        value, d = mse(b.asarray(np.zeros((2, 3))), b.asarray(np.ones((2, 3))))
        assert value.dtype == np.float32 and float(value) == pytest.approx(1.5)


def test_errors(backend):
    z = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in \[0, 3\), got min 0, max 3"):
        softmax_cross_entropy(z, backend.asarray(np.array([0, 3])))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in \[0, 3\), got min -1, max 1"):
        softmax_cross_entropy(z, backend.asarray(np.array([-1, 1])))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\) \(logits without the class axis\), got \(2, 1\)"):
        softmax_cross_entropy(z, backend.asarray(np.array([[0], [1]])))
    with pytest.raises(ValueError, match="softmax_cross_entropy: labels must be integers, got dtype"):
        softmax_cross_entropy(z, backend.asarray(np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match=r"categorical_log_prob: labels must lie in \[0, 3\), got min 5, max 5"):
        categorical_log_prob(z, backend.asarray(np.array([5, 5])))
    with pytest.raises(ValueError, match=r"categorical_log_prob: weights must have the shape of actions \(2,\), got \(3,\)"):
        categorical_log_prob(z, backend.asarray(np.array([0, 1])), backend.asarray(np.ones(3)))
    with pytest.raises(ValueError, match=r"mse: pred and target need the same shape \(batch, \.\.\.\), got \(2, 3\) and \(3, 2\)"):
        mse(z, backend.asarray(np.zeros((3, 2))))
