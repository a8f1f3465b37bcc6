"""The mesa layer (arXiv:2309.05858): exact properties in float64 on every backend.

Tolerances: identities computed two ways in float64 (prefix sums + batched solve vs explicit
per-position solves) differ by rounding amplified by the condition number of H_t; with
keys ~ N(0, 1) and λ ∈ [0.1, 10], cond(H_t) ≤ λ·(1/λ + Σ‖k_i‖²) ≲ 10³, so 1e-10 relative
leaves a margin of 10³ over the observed ~1e-14.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.mesa import MesaLayer, sherman_morrison_inverses
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

EXACT = 1e-10

shapes = dict(D=st.integers(1, 5), H=st.integers(1, 3), k=st.integers(1, 5), T=st.integers(1, 7),
              B=st.integers(1, 3), log_lam=st.floats(math.log(0.1), math.log(10.0)), seed=st.integers(0, 2**16))


def build(D, H, k, T, B, log_lam, seed, fast=True):
    """A layer with per-head λ around exp(log_lam) (heads differ by factors up to 2)."""
    rng = RNG(seed)
    layer = MesaLayer(D, H, k, init_std=0.7, fast=fast)
    params = layer.init(rng)
    params["log_lam"] = asarray(log_lam + rng.uniform((H,), -0.35, 0.35, host=True))
    return layer, params, rng.normal((B, T, D))


def ridge_reference(params, x):
    """out_t = Σ_h Φ̂_{h,t} q_{h,t} Wp_h with Φ̂ solved per head and position from its pairs
    (k_i → v_i), i ≤ t: Φ̂ᵀ = (KᵀK + I/λ)⁻¹ KᵀV, plain numpy loops."""
    p = {name: host(a) for name, a in params.items()}
    x = host(x)
    B, T, D = x.shape
    out = np.zeros_like(x)
    for h in range(p["Wq"].shape[0]):
        q, k, v = x @ p["Wq"][h], x @ p["Wk"][h], x @ p["Wv"][h]
        eye = np.eye(k.shape[-1]) / math.exp(p["log_lam"][h])
        for b in range(B):
            for t in range(T):
                K, V = k[b, :t + 1], v[b, :t + 1]
                Phi = np.linalg.solve(K.T @ K + eye, K.T @ V).T
                out[b, t] += (Phi @ q[b, t]) @ p["Wp"][h]
    return out


@given(**shapes, fast=st.booleans())
def test_mesa_gradients(backend, D, H, k, T, B, log_lam, seed, fast):
    """Hand-derived backward (both paths) vs central differences and torch autograd, λ included."""
    layer, params, x = build(D, H, k, T, B, log_lam, seed, fast)
    assert_gradients(layer, params, x)


@given(**shapes)
def test_mesa_forward_is_a_ridge_solve_per_position(backend, D, H, k, T, B, log_lam, seed):
    """Both paths equal Φ̂_t q_t with Φ̂_t from an explicit ridge solve at every position."""
    layer, params, x = build(D, H, k, T, B, log_lam, seed)
    want = ridge_reference(params, x)
    assert_close(layer(params, x), want, EXACT, "mesa (score form) vs per-position ridge")
    plain = MesaLayer(D, H, k, fast=False)
    assert_close(plain(params, x), want, EXACT, "mesa (plain) vs per-position ridge")


@given(**shapes)
def test_plain_and_score_form_backward_agree(backend, D, H, k, T, B, log_lam, seed):
    layer, params, x = build(D, H, k, T, B, log_lam, seed)
    plain = MesaLayer(D, H, k, fast=False)
    dout = RNG(seed + 1).normal(tuple(x.shape))
    dx, grads = layer.backward(params, layer.forward(params, x)[1], dout)
    dx_p, grads_p = plain.backward(params, plain.forward(params, x)[1], dout)
    assert_close(dx, dx_p, EXACT, "dx")
    for name in grads:
        assert_close(grads[name], grads_p[name], EXACT, name)


@given(d=st.integers(1, 5), T=st.integers(1, 12), batch=st.integers(1, 3), heads=st.integers(1, 3),
       log_lam=st.floats(math.log(0.1), math.log(10.0)), seed=st.integers(0, 2**16))
def test_sherman_morrison_equals_closed_form_inverse(backend, d, T, batch, heads, log_lam, seed):
    """Every R_t of the rank-one recursion equals (Σ_{i≤t} k_i k_iᵀ + I/λ)⁻¹ (per-head λ)."""
    rng = RNG(seed)
    k = rng.normal((batch, heads, T, d))
    lam = np.exp(log_lam + rng.uniform((heads,), -0.35, 0.35, host=True))
    R = host(sherman_morrison_inverses(k, asarray(lam)))
    kh = host(k)
    for t in range(T):
        Ht = np.einsum("bhid,bhie->bhde", kh[:, :, :t + 1], kh[:, :, :t + 1]) + np.eye(d) / lam[:, None, None]
        assert_close(R[:, :, t], np.linalg.inv(Ht), EXACT, f"R_{t}")
    assert host(sherman_morrison_inverses(k[0, 0, ...], float(lam[0]))).shape == (T, d, d)   # a float λ


@given(d=st.integers(1, 4), T=st.integers(5, 12), seed=st.integers(0, 2**16),
       log10_lam=st.floats(6.0, 10.0), fast=st.booleans())
def test_large_lambda_gives_ordinary_least_squares(backend, d, T, seed, log10_lam, fast):
    """λ → ∞ with t ≥ d: mesa → OLS. Ridge minus OLS is exactly
    Φ̂_λ q − Φ̂_0 q = −(1/λ) Φ̂_0 (S + I/λ)⁻¹ q  (S = KᵀK, (S+εI)⁻¹ − S⁻¹ = −ε (S+εI)⁻¹ S⁻¹),
    so ‖Φ̂_λ q − Φ̂_0 q‖ ≤ ‖Φ̂_0‖₂ ‖q‖ / (λ σ_min(S)): the bound asserted per position (×1.01,
    plus float64 rounding of the OLS solve, cond(S)·1e-15·‖Φ̂_0 q‖)."""
    lam = 10.0 ** log10_lam
    rng = RNG(seed)
    layer = MesaLayer(d, 1, d, lam_init=lam, fast=fast)
    params = layer.init(rng)
    eye = np.eye(d)
    params.update(Wq=asarray(eye[None]), Wk=asarray(eye[None]), Wv=asarray(eye[None]), Wp=asarray(eye[None]))
    x = rng.normal((2, T, d))                                      # q = k = v = x
    out, xh = host(layer(params, x)), host(x)
    for b in range(2):
        for t in range(d, T):                                      # t + 1 ≥ d + 1 pairs
            K = xh[b, :t + 1]
            S = K.T @ K
            Phi0 = np.linalg.lstsq(K, K, rcond=None)[0].T          # OLS of v on k
            ols = Phi0 @ xh[b, t]
            sig = np.linalg.eigvalsh(S)
            bound = np.linalg.norm(Phi0, 2) * np.linalg.norm(xh[b, t]) / (lam * sig[0])
            rounding = sig[-1] / sig[0] * 1e-15 * (1 + np.linalg.norm(ols))
            assert np.linalg.norm(out[b, t] - ols) <= 1.01 * bound + rounding, (b, t)


def test_mesa_small_lambda_is_scaled_linear_attention(f64):
    """λ → 0: H_t⁻¹ → λI, so out → λ · causal linear attention (relative error O(λ·‖KᵀK‖))."""
    from tinynim.nn.linear_attention import LinearSelfAttention
    layer = MesaLayer(3, 2, 2, lam_init=1e-9)
    params = layer.init(RNG(0))
    lsa = LinearSelfAttention(3, 2, 2, causal=True)
    lsa_params = {name: params[name] for name in ("Wq", "Wk", "Wv", "Wp")}
    x = RNG(1).normal((2, 6, 3))
    assert_close(layer(params, x), 1e-9 * lsa(lsa_params, x), 1e-7, "mesa(λ→0) vs λ·LSA")


@given(T=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_mesa_is_causal(f64, T, seed):
    """Changing tokens after t leaves outputs 0..t unchanged."""
    rng = RNG(seed)
    layer = MesaLayer(3, 2, 2)
    params = layer.init(rng)
    x = rng.normal((2, T, 3), host=True)
    x2 = x.copy()
    t = T // 2 - 1
    x2[:, t + 1:] += rng.normal((2, T - t - 1, 3), host=True)
    a, b = host(layer(params, asarray(x))), host(layer(params, asarray(x2)))
    np.testing.assert_allclose(a[:, :t + 1], b[:, :t + 1], rtol=1e-12, atol=1e-12)
    assert np.abs(a[:, t + 1:] - b[:, t + 1:]).max() > 1e-6


def test_lambda_parametrisation(f64):
    """λ = exp(log_lam) starts at lam_init; any real log_lam is a valid λ > 0."""
    layer = MesaLayer(4, 3, lam_init=2.5)
    params = layer.init(RNG(0))
    np.testing.assert_allclose(host(layer.lam(params)), 2.5, rtol=1e-15)
    params["log_lam"] = asarray(np.array([-30.0, 0.0, 30.0]))
    out = host(layer(params, RNG(1).normal((2, 5, 4))))
    assert np.isfinite(out).all()


def test_mesa_errors(f64):
    layer = MesaLayer(4, 2, 3)
    p = layer.init(0)
    x = RNG(0).normal((2, 3, 4))
    with pytest.raises(ValueError, match=r"MesaLayer: expected x of shape \(\.\.\., 4\), got shape \(2, 3, 5\)"):
        layer.forward(p, RNG(0).normal((2, 3, 5)))
    with pytest.raises(ValueError, match=r"MesaLayer: expected x with 3 dims, got shape \(3, 4\)"):
        layer.forward(p, RNG(0).normal((3, 4)))
    with pytest.raises(ValueError, match=r"MesaLayer: expected params\['log_lam'\] of shape \(2,\), got shape \(\)"):
        layer.forward({**p, "log_lam": asarray(np.float64(0.0))}, x)
    with pytest.raises(ValueError, match=r"MesaLayer: params lack \['log_lam'\]"):
        layer.forward({k: v for k, v in p.items() if k != "log_lam"}, x)
    out, cache = layer.forward(p, x)
    with pytest.raises(ValueError, match=r"MesaLayer: expected dout of shape \(2, 3, 4\), got shape \(2, 3, 2\)"):
        layer.backward(p, cache, RNG(0).normal((2, 3, 2)))
    with pytest.raises(ValueError, match=r"MesaLayer: the mesa layer is causal by definition .* got False"):
        MesaLayer(4, causal=False)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"MesaLayer: lam_init must be a finite float > 0"):
            MesaLayer(4, lam_init=bad)
    with pytest.raises(ValueError, match=r"MesaLayer: d_key must be a positive integer, got 0"):
        MesaLayer(4, 1, 0)
    with pytest.raises(TypeError, match=r"MesaLayer: expected x with dtype kind 'real floating'"):
        layer.forward(p, asarray(np.ones((2, 3, 4)), "int64"))
    with pytest.raises(ValueError, match=r"sherman_morrison_inverses: expected k of shape \(\.\.\., T, d\)"):
        sherman_morrison_inverses(asarray(np.ones(3)), 1.0)


def test_cache_sizes(f64):
    """The memory question: the score-form cache (default) holds x and five (B, H, T, k)
    arrays, O(T·(D + k)) numbers per sequence; the plain path also keeps H_t and G_t, two
    (B, H, T, k, k) arrays: the O(T·k²) per head and sequence the score form avoids."""
    B, T, D, H, k = 2, 7, 5, 3, 4
    x = RNG(0).normal((B, T, D))
    size = {}
    for fast in (True, False):
        layer = MesaLayer(D, H, k, fast=fast)
        _, cache = layer.forward(layer.init(RNG(1)), x)
        size[fast] = sum(math.prod(a.shape) for a in cache)
    assert size[True] == B * T * D + 5 * B * H * T * k + H
    assert size[False] == size[True] + 2 * B * H * T * k * k
