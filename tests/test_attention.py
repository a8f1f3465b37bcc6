import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.attention import SoftmaxAttention
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

MASK_SHAPES = ["none", "TT", "BTT", "BHTT", "1HTT"]


def draw_mask(kind, B, H, T, seed, p=0.6, diagonal=False):
    """A random host boolean mask of the named layout (True = may attend), or None."""
    if kind == "none":
        return None
    shape = {"TT": (T, T), "BTT": (B, T, T), "BHTT": (B, H, T, T), "1HTT": (1, H, T, T)}[kind]
    m = np.random.default_rng(seed).uniform(size=shape) < p
    return m | np.eye(T, dtype=bool) if diagonal else m


@given(B=st.integers(1, 3), T=st.integers(1, 5), H=st.integers(1, 3), d_head=st.integers(1, 3),
       causal=st.booleans(), kind=st.sampled_from(MASK_SHAPES), seed=st.integers(0, 2**16))
def test_attention_gradients(backend, B, T, H, d_head, causal, kind, seed):
    """Random masks may leave a row with no allowed key: its output is the constant 0, a
    smooth (flat) function, so finite differences and autograd must agree there too.
    Default tolerances, every D: a query row with one allowed key has a constant softmax, so
    with sparse or causal masks ∂L/∂Wq, ∂L/∂Wk can be tiny (and with D = 1, the logit
    x_t x_j Wq Wk of two scalar weights is often ≈ 0); the check's absolute part, at the
    rounding noise of the differences, judges such arrays by their absolute error."""
    D = H * d_head
    rng = RNG(seed)
    layer = SoftmaxAttention(D, H, causal=causal)
    mask = draw_mask(kind, B, H, T, seed)
    kwargs = {} if mask is None else {"mask": asarray(mask)}
    params = layer.init(rng)
    assert_gradients(layer, params, rng.normal((B, T, D)), kwargs)


def test_fully_masked_row_is_zero_with_finite_grads(backend):
    """Query row 1 may attend to nothing: its output is exactly 0 (the documented
    convention) and every gradient stays finite and passes the gradient checks (finite
    differences, and torch autograd when installed)."""
    rng = RNG(3)
    layer = SoftmaxAttention(4, 2)
    params, x = layer.init(rng), rng.normal((2, 3, 4))
    m = np.ones((3, 3), dtype=bool)
    m[1] = False
    out, cache = layer.forward(params, x, mask=asarray(m))
    assert np.all(host(out)[:, 1] == 0.0)
    assert np.all(np.isfinite(host(out)))
    dx, grads = layer.backward(params, cache, asarray(np.random.default_rng(0).standard_normal((2, 3, 4))))
    for got in [dx, *grads.values()]:
        assert np.all(np.isfinite(host(got)))
    assert_gradients(layer, params, x, {"mask": asarray(m)})


@given(B=st.integers(1, 3), T=st.integers(1, 6), H=st.integers(1, 3), d_head=st.integers(1, 4),
       causal=st.booleans(), kind=st.sampled_from(MASK_SHAPES), seed=st.integers(0, 2**16))
def test_attention_matches_torch_sdpa(backend, B, T, H, d_head, causal, kind, seed):
    """Our forward vs torch's scaled_dot_product_attention fed the same projections, float64.
    Tolerance 1e-12 (relative, whole output): both compute the same sums in float64, only in
    a different order. The diagonal is always allowed, since torch gives NaN for empty rows."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = RNG(seed)
    D = H * d_head
    layer = SoftmaxAttention(D, H, causal=causal)
    params, x = layer.init(rng), rng.normal((B, T, D))
    mask = draw_mask(kind, B, H, T, seed, diagonal=True)
    out = layer(params, x, **({} if mask is None else {"mask": asarray(mask)}))

    P = {k: torch.as_tensor(host(v)) for k, v in params.items()}
    X = torch.as_tensor(host(x))
    heads = lambda t: t.reshape(B, T, H, d_head).transpose(1, 2)          # (B, H, T, d)
    allowed = torch.ones(T, T, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
    if mask is not None and mask.ndim == 3:
        allowed = allowed[:, None]
    if causal:
        allowed = allowed & torch.tril(torch.ones(T, T, dtype=torch.bool))
    O = F.scaled_dot_product_attention(heads(X @ P["Wq"]), heads(X @ P["Wk"]), heads(X @ P["Wv"]),
                                       attn_mask=allowed)
    ref = O.transpose(1, 2).reshape(B, T, D) @ P["Wo"]
    assert_close(out, ref.numpy(), 1e-12, "softmax attention vs torch SDPA")


@given(B=st.integers(1, 2), T=st.integers(1, 5), H=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_causal_equals_lower_triangular_mask(backend, B, T, H, seed):
    """causal=True is the same computation as causal=False with mask=tril(1): equal to 1e-14."""
    rng = RNG(seed)
    causal = SoftmaxAttention(2 * H, H, causal=True)
    params, x = causal.init(rng), rng.normal((B, T, 2 * H))
    tril = asarray(np.tril(np.ones((T, T), dtype=bool)))
    assert_close(causal(params, x), SoftmaxAttention(2 * H, H)(params, x, mask=tril), 1e-14)
    full = asarray(np.ones((T, T), dtype=bool))
    assert_close(causal(params, x, mask=full), causal(params, x), 1e-14)


def test_huge_logits_stay_finite(backend):
    """Logits of order 1e5 would overflow a naive exp (the RuntimeWarning is an error in
    this suite); the max-subtracted softmax must give finite outputs and gradients."""
    rng = RNG(1)
    layer = SoftmaxAttention(4, 1, causal=True)
    params, x = layer.init(rng), rng.normal((1, 4, 4))
    params = {**params, "Wq": params["Wq"] * 1e3, "Wk": params["Wk"] * 1e3}
    out, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, out)
    for a in [out, dx, *grads.values()]:
        assert np.all(np.isfinite(host(a)))
    # the causal first row attends only to itself: out_0 = x_0 Wv Wo exactly
    assert_close(host(out)[0, 0], host(x)[0, 0] @ host(params["Wv"]) @ host(params["Wo"]), 1e-12)


def test_attention_errors(f64):
    with pytest.raises(ValueError, match=r"SoftmaxAttention: d_model=6 is not divisible by n_heads=4"):
        SoftmaxAttention(6, 4)
    layer = SoftmaxAttention(4, 2)
    params, x = layer.init(0), RNG(0).normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"SoftmaxAttention: expected x with 3 dims, got shape \(3, 4\)"):
        layer.forward(params, x[0])
    with pytest.raises(ValueError, match=r"SoftmaxAttention: expected x of shape \(\.\.\., 4\), got shape \(2, 3, 5\)"):
        layer.forward(params, RNG(0).normal((2, 3, 5)))
    for bad in [(3,), (3, 4), (2, 4, 3), (3, 3, 3), (2, 3, 3, 3), (2, 2, 2, 3, 3)]:
        with pytest.raises(ValueError, match=r"SoftmaxAttention: expected mask .* broadcastable to "
                                             r"\(2, 2, 3, 3\), got shape " + re.escape(str(bad))):
            layer.forward(params, x, mask=asarray(np.ones(bad, dtype=bool)))
    with pytest.raises(TypeError, match=r"SoftmaxAttention: expected mask with dtype kind 'bool', got dtype \S*float64"):
        layer.forward(params, x, mask=asarray(np.ones((3, 3))))
