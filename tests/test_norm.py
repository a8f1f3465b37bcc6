"""LayerNorm: hand-derived backward vs finite differences and torch autograd; forward vs
torch.nn.functional.layer_norm."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.nn.norm import LayerNorm
from tinynim.random import RNG
from helpers import assert_gradients, host


def random_params(rng, d):
    """γ, β drawn at random (not the 1, 0 of init) so that their role in dx is exercised."""
    return {"gamma": rng.normal(d), "beta": rng.normal(d)}


@given(d=st.integers(3, 6), lead=st.lists(st.integers(2, 3), min_size=1, max_size=2),
       scale=st.sampled_from([0.1, 1.0, 3.0]), seed=st.integers(0, 2**16))
def test_layernorm_gradients(backend, d, lead, scale, seed):
    """Well-conditioned draws, as the relative error is then meaningful: d ≥ 3 (for d = 2
    each x̂ is ±1/√(1 + eps/var), almost constant, dx is O(eps); d = 1: below); ≥ 2 rows
    (one row's dx lies in a (d−2)-dim subspace and can be near 0 by chance); scale ≤ 3
    (dx ∝ 1/σ shrinks while the ~1e-16·|L|/eps noise of the differences does not).
    Margin: over 600 such draws the largest error was 3e-9 against FD_TOL = 1e-7."""
    rng = RNG(seed)
    layer = LayerNorm(d)
    assert_gradients(layer, random_params(rng, d), rng.normal(tuple(lead) + (d,), std=scale, mean=1.0))


@given(d=st.integers(2, 6), eps=st.sampled_from([1e-5, 1e-2]), seed=st.integers(0, 2**16))
def test_layernorm_matches_torch(backend, d, eps, seed):
    """Forward vs torch's layer_norm (biased variance, eps inside the square root).
    Tolerance 1e-12: the same float64 maths up to operation order."""
    torch = pytest.importorskip("torch")
    rng = RNG(seed)
    layer = LayerNorm(d, eps=eps)
    params, x = random_params(rng, d), rng.normal((3, 2, d), std=3.0)
    t = {k: torch.as_tensor(host(v)) for k, v in params.items()}
    ref = torch.nn.functional.layer_norm(torch.as_tensor(host(x)), (d,), t["gamma"], t["beta"], eps)
    np.testing.assert_allclose(host(layer(params, x)), ref.numpy(), rtol=1e-12, atol=1e-12)


def test_layernorm_init_standardises(backend):
    """With the initial γ = 1, β = 0 every row has mean 0 and variance 1/(1 + eps/var).
    Tolerance 1e-12: exact identities in float64."""
    layer = LayerNorm(5, eps=1e-5)
    params = layer.init(0)
    assert host(params["gamma"]).tolist() == [1.0] * 5 and host(params["beta"]).tolist() == [0.0] * 5
    xb = RNG(3).normal((4, 5), std=2.0)
    x, out = host(xb), host(layer(params, xb))
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), x.var(-1) / (x.var(-1) + 1e-5), rtol=1e-12)


def test_layernorm_single_feature(backend):
    """d = 1: x − μ = 0 exactly, so out = β and dx = dγ = 0 (exact in floating point)."""
    layer = LayerNorm(1)
    params = random_params(RNG(1), 1)
    out, cache = layer.forward(params, RNG(2).normal((3, 1)))
    dx, grads = layer.backward(params, cache, RNG(4).normal((3, 1)))
    assert np.all(host(out) == host(params["beta"])) and not np.any(host(dx)) and not np.any(host(grads["gamma"]))


def test_layernorm_shape_errors(f64):
    layer = LayerNorm(4)
    params = layer.init(0)
    with pytest.raises(ValueError, match=r"LayerNorm: expected x of shape \(\.\.\., 4\), got shape \(2, 3\)"):
        layer.forward(params, RNG(0).normal((2, 3)))
    _, cache = layer.forward(params, RNG(0).normal((2, 4)))
    with pytest.raises(ValueError, match=r"LayerNorm: expected dout of shape \(2, 4\), got shape \(2, 5\)"):
        layer.backward(params, cache, RNG(0).normal((2, 5)))


def test_layernorm_huge_inputs_in_float32():
    """|x| ~ 1e20 in float32: (x − μ)² would overflow (3.4e38 max) and x̂ come out all zero
    (as torch's layer_norm does); the rescaled variance gives the standardised row. Expected
    values: the same row standardised in float64 (x̂ is scale-free). Tolerance 1e-6: float32."""
    from tinynim.backend import asarray, use_backend
    with use_backend("numpy", dtype="float32"):
        layer = LayerNorm(4)
        params = layer.init(0)
        rows = np.array([[1e20, -1e20, 3e19, 0.5], [3e37, -1e37, 2e37, 0.0], [1.0, 2.0, 3.0, 4.0]])
        out, cache = layer.forward(params, asarray(rows))
        dx, _ = layer.backward(params, cache, asarray(np.ones_like(rows)))
    r = rows - rows.mean(-1, keepdims=True)
    want = r / np.sqrt((r * r).mean(-1, keepdims=True) + 1e-5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(host(out), want, rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(host(dx)))


@given(d=st.integers(1, 9), scale=st.sampled_from([1e-3, 1.0, 1e3]), seed=st.integers(0, 2**16))
def test_direct_variance_equals_rescaled(f64, d, scale, seed):
    """The NumPy fast path (σ² = mean(xc²) directly) gives the plain rescaled 1/σ to rounding
    (1e-14 relative), and declines (None) when a row's mean square overflows."""
    from array_api_compat import numpy as xp
    layer = LayerNorm(d)
    x = scale * RNG(seed).normal((3, 5, d), host=True)
    xc = x - x.mean(-1, keepdims=True)
    np.testing.assert_allclose(layer._inv_sigma_direct(xp, xc), layer._inv_sigma(xp, xc), rtol=1e-14)
    assert layer._inv_sigma_direct(np, np.array([[1e200, -1e200]])) is None
