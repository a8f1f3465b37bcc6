"""Losses: values against torch.nn.functional, gradients against float64 central finite
differences (tolerance FD_TOL, see helpers) and torch autograd of the same code (TORCH_TOL)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import to_numpy
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


def _out_of_range(backend, match, loss, *args):
    """Labels out of range: a ValueError where labels hold values; jax arrays are lazy (no
    value check, see tinynim.losses): a NaN at the bad position instead."""
    if backend.name == "jax":
        assert np.isnan(np.asarray(loss(*args)[0])).any()
        return
    with pytest.raises(ValueError, match=match):
        loss(*args)


def test_errors(backend):
    z = backend.asarray(np.zeros((2, 3)))
    _out_of_range(backend, r"softmax_cross_entropy: labels must lie in \[0, 3\), got min 0, max 3",
                  softmax_cross_entropy, z, backend.asarray(np.array([0, 3])))
    _out_of_range(backend, r"softmax_cross_entropy: labels must lie in \[0, 3\), got min -1, max 1",
                  softmax_cross_entropy, z, backend.asarray(np.array([-1, 1])))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\) \(logits without the class axis\), got \(2, 1\)"):
        softmax_cross_entropy(z, backend.asarray(np.array([[0], [1]])))
    with pytest.raises(ValueError, match="softmax_cross_entropy: labels must be integers, got dtype"):
        softmax_cross_entropy(z, backend.asarray(np.array([0.0, 1.0])))
    _out_of_range(backend, r"categorical_log_prob: labels must lie in \[0, 3\), got min 5, max 5",
                  categorical_log_prob, z, backend.asarray(np.array([5, 5])))
    with pytest.raises(ValueError, match=r"categorical_log_prob: weights must have the shape of actions \(2,\), got \(3,\)"):
        categorical_log_prob(z, backend.asarray(np.array([0, 1])), backend.asarray(np.ones(3)))
    with pytest.raises(ValueError, match=r"mse: pred and target need the same shape \(batch, \.\.\.\), got \(2, 3\) and \(3, 2\)"):
        mse(z, backend.asarray(np.zeros((3, 2))))


def _torch_ce(logits, labels):
    """torch's cross-entropy value and gradient (the reference semantics), in logits' dtype."""
    t = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(t.reshape(-1, logits.shape[-1]), torch.tensor(labels).reshape(-1))
    ref.backward()
    return ref.item(), t.grad.numpy()


def test_masked_logits_follow_torch(backend):
    """−inf logits (masked classes) other than the label: a finite loss, as torch (it was
    NaN: 0·(−inf) in the one-hot product). A −inf label logit: an infinite loss, as torch."""
    inf = float("inf")
    logits = np.array([[0.5, -inf, 2.0, -inf], [-inf, -inf, 1.0, -3.0], [1.0, 0.0, -inf, 0.0]])
    labels = np.array([2, 3, 0])
    value, dlogits = softmax_cross_entropy(backend.asarray(logits), backend.asarray(labels))
    ref, ref_grad = _torch_ce(logits, labels)
    assert np.isfinite(float(value)) and float(value) == pytest.approx(ref, rel=1e-14)
    np.testing.assert_allclose(host(dlogits), ref_grad, rtol=0, atol=1e-15)
    # by hand, row 1: log p = [−inf, −inf, −log(1 + e⁻⁴), −4 − log(1 + e⁻⁴)]; label 3
    row1 = 4 + np.log1p(np.exp(-4))
    row0 = np.log1p(np.exp(-1.5)) + 0.0                      # label logit 2.0 vs 0.5
    row2 = np.log(np.exp(1.0) + 2.0) - 1.0
    assert float(value) == pytest.approx((row0 + row1 + row2) / 3, rel=1e-14)
    value, _ = softmax_cross_entropy(backend.asarray(logits), backend.asarray(np.array([1, 3, 0])))
    assert float(value) == inf == _torch_ce(logits, np.array([1, 3, 0]))[0]
    logp, d = categorical_log_prob(backend.asarray(logits), backend.asarray(labels))
    np.testing.assert_allclose(host(logp), [-row0, -row1, -row2], rtol=1e-14)
    assert np.all(np.isfinite(host(d)))


def test_logits_spanning_the_float32_range():
    """Logits ±3e38 in float32: z − max z overflows to −inf for the smallest, which then
    counts as a masked logit. Value and gradient equal torch's float32 results, and by hand:
    label 2 of [3e38, −3e38, 0] costs 3e38 with gradient [1, 0, −1]; label 0 costs 0.
    NumPy (and array-api-strict, built on it) warn about that overflow: silenced here."""
    from tinynim.backend import use_backend
    logits = np.array([[3e38, -3e38, 0.0], [3e38, -3e38, 0.0], [-3e38, 3e38, 3e38]], dtype=np.float32)
    labels = np.array([2, 0, 1])
    for name in ("numpy", "torch", "array_api_strict"):
        with use_backend(name, dtype="float32") as b, np.errstate(over="ignore"):
            value, dlogits = softmax_cross_entropy(b.asarray(logits), b.asarray(labels))
            assert to_numpy(value).dtype == np.float32 and to_numpy(dlogits).dtype == np.float32
            ref, ref_grad = _torch_ce(logits, labels)
            assert float(value) == pytest.approx(ref, rel=1e-6) and np.isfinite(float(value)), name
            np.testing.assert_allclose(host(dlogits), ref_grad, rtol=1e-6, atol=1e-7, err_msg=name)
            one, d_one = softmax_cross_entropy(b.asarray(logits[:1]), b.asarray(labels[:1]))
            assert float(one) == pytest.approx(3e38, rel=1e-6)
            np.testing.assert_array_equal(host(d_one), [[1, 0, -1]])
            zero, d_zero = softmax_cross_entropy(b.asarray(logits[1:2]), b.asarray(labels[1:2]))
            assert float(zero) == 0 and np.all(host(d_zero) == 0)


def test_mse_of_an_empty_batch_is_an_error(backend):
    """0 samples: a clear error (it was NaN with a RuntimeWarning); 0 features is fine (0)."""
    empty = backend.asarray(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"^mse: the batch is empty \(pred shape \(0, 3\)\); the mean over 0 "
                                         r"samples is undefined$"):
        mse(empty, empty)
    value, d = mse(backend.asarray(np.zeros((2, 0))), backend.asarray(np.zeros((2, 0))))
    assert float(value) == 0 and tuple(d.shape) == (2, 0)


def test_losses_trace_under_jax_jit():
    """The losses compile with jax.jit (no value-dependent Python branch) and give numpy's
    values. Traced labels cannot be range-checked: one out of range gives NaN, not a silent 0."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy                                         # float32 / int32 (jax's defaults)
    rng = RNG(3)
    logits = rng.normal((4, 5), host=True).astype(np.float32)
    labels = rng.integers(0, 5, (4,), host=True).astype(np.int32)
    ce = jax.jit(softmax_cross_entropy)(jnp.asarray(logits), jnp.asarray(labels))
    lp = jax.jit(categorical_log_prob)(jnp.asarray(logits), jnp.asarray(labels))
    sq = jax.jit(mse)(jnp.asarray(logits), jnp.asarray(logits[::-1]))
    for ours, ref in [(ce, softmax_cross_entropy(logits, labels)), (lp, categorical_log_prob(logits, labels)),
                      (sq, mse(logits, logits[::-1]))]:
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-7)     # float32 rounding
    bad = jnp.asarray(np.array([0, 5, 1, 2], dtype=np.int32))
    assert np.isnan(float(jax.jit(softmax_cross_entropy)(jnp.asarray(logits), bad)[0]))
    logp = np.asarray(jax.jit(categorical_log_prob)(jnp.asarray(logits), bad)[0])
    assert np.isnan(logp[1]) and np.all(np.isfinite(logp[[0, 2, 3]]))


def test_non_float_logits_are_an_error(backend):
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: logits must be real floating, got dtype .*int64"):
        softmax_cross_entropy(backend.asarray(np.zeros((2, 3), dtype=np.int64)), backend.asarray(np.array([0, 1])))
