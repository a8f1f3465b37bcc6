"""GatedLinearRNN: scans, BPTT gradients, options (h0, final state, last step only), errors."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray, use_backend
from tinynim.nn.recurrent import GatedLinearRNN, parallel_scan, scan_reference
from tinynim.random import RNG
from helpers import assert_close, assert_gradients, host

RECURRENCES = ["sigmoid", "exp", "direct"]


def _with_decay(layer, params, lam_host):
    """`params` with λ set to `lam_host` (host array in (0, 1]) in the layer's parametrisation."""
    raw = {"sigmoid": np.log(lam_host / (1 - lam_host)), "exp": np.log(-np.log(lam_host)),
           "direct": lam_host}[layer.recurrence]
    return {**params, layer.decay_key: asarray(raw)}


@given(B=st.integers(1, 3), T=st.integers(1, 40), N=st.integers(1, 5), seed=st.integers(0, 2**16),
       with_h0=st.booleans(), extremes=st.booleans())
def test_parallel_scan_equals_loop(backend, B, T, N, seed, with_h0, extremes):
    """Doubling scan == the plain loop for any length (powers of two and not), λ ∈ [0, 1]
    including exactly 0 and 1. Tolerance 1e-12: the same sums in another order."""
    rng = RNG(seed)
    lam = rng.uniform((N,), host=True)
    if extremes:
        lam[: N // 2] = 0.0
        lam[N // 2:] = 1.0
    lam, u = asarray(lam), rng.normal((B, T, N))
    h0 = rng.normal((B, N)) if with_h0 else None
    assert_close(parallel_scan(lam, u, h0), scan_reference(lam, u, h0), 1e-12, "parallel scan vs loop")


def test_scan_matches_closed_form(f64):
    """h_t = λ^{t+1} h0 + Σ_{s≤t} λ^{t−s} u_s, written out with numpy (independent of both scans)."""
    rng = np.random.default_rng(0)
    lam, u, h0 = rng.uniform(size=3), rng.normal(size=(2, 7, 3)), rng.normal(size=(2, 3))
    t = np.arange(7)
    L = np.where(t[:, None] >= t[None, :], lam[:, None, None] ** np.maximum(t[:, None] - t[None, :], 0), 0)
    expected = np.einsum("nts,bsn->btn", L, u) + lam ** (t[:, None] + 1) * h0[:, None, :]
    for scan in (parallel_scan, scan_reference):
        assert_close(scan(asarray(lam), asarray(u), asarray(h0)), expected, 1e-13, scan.__name__)


@given(d_in=st.integers(1, 3), N=st.integers(1, 4), M=st.integers(1, 4), d_out=st.integers(1, 3),
       B=st.integers(1, 2), T=st.integers(1, 6), seed=st.integers(0, 2**16),
       recurrence=st.sampled_from(RECURRENCES), append_one=st.booleans(), with_h0=st.booleans(),
       return_state=st.booleans(), last_only=st.booleans(), scan=st.sampled_from(["parallel", "loop"]),
       fast=st.booleans())
def test_gradients(backend, d_in, N, M, d_out, B, T, seed, recurrence, append_one, with_h0,
                   return_state, last_only, scan, fast):
    """BPTT vs finite differences (FD_TOL) and torch autograd, every option combination.

    λ is drawn in [0.5, 0.95] so that λ^T (the factor on dh0) stays ≥ 0.5^6 ≈ 0.016: a
    tiny gradient would be swamped by the FD rounding error (~1e-10 absolute), which says
    nothing about the backward. The formulas do not depend on the range of λ."""
    rng = RNG(seed)
    layer = GatedLinearRNN(d_in, N, d_out, n_out_gates=M, append_one=append_one,
                           recurrence=recurrence, scan=scan, fast=fast)
    params = _with_decay(layer, layer.init(rng), rng.uniform((N,), 0.5, 0.95, host=True))
    x = rng.normal((B, T, d_in))
    if with_h0:
        x = (x, rng.normal((B, N)))
    assert_gradients(layer, params, x, {"return_state": return_state, "last_only": last_only})


def test_direct_decay_at_zero_and_one(backend):
    """λ exactly 0 and 1 (the construction's values): the backward still matches torch and FD
    (λ^k has derivative k λ^{k−1}, finite at 0 for k ≥ 1; 0⁰ = 1)."""
    rng = RNG(3)
    layer = GatedLinearRNN(2, 4, 2, recurrence="direct")
    params = {**layer.init(rng), "lam": asarray([0.0, 1.0, 0.0, 1.0])}
    for kw in ({}, {"last_only": True}):
        assert_gradients(layer, params, (rng.normal((2, 5, 2)), rng.normal((2, 4))), kw)


@given(seed=st.integers(0, 2**16), T=st.integers(1, 12), recurrence=st.sampled_from(RECURRENCES))
def test_last_only_and_state_agree_with_full_sequence(backend, seed, T, recurrence):
    """last_only returns out[:, -1] and the same h_T as the full scan; h_T is the last state."""
    rng = RNG(seed)
    layer = GatedLinearRNN(3, 5, 2, recurrence=recurrence)
    params = layer.init(rng)
    x = (rng.normal((2, T, 3)), rng.normal((2, 5)))
    out, h_T = layer(params, x, return_state=True)
    last, h_T2 = layer(params, x, return_state=True, last_only=True)
    assert_close(last, out[:, -1, :], 1e-12, "last-step output")
    assert_close(h_T2, h_T, 1e-12, "final state")


@given(seed=st.integers(0, 2**16), T1=st.integers(1, 8), T2=st.integers(1, 8))
def test_state_is_affine_in_h0_and_resumable(backend, seed, T1, T2):
    """h_T(h0) = Φ ⊙ h0 + s with Φ = decay_product = λ^T and s the zero-start state; and
    reading c1 then resuming from its state on c2 equals reading c1∘c2 in one go."""
    rng = RNG(seed)
    layer = GatedLinearRNN(2, 4, 1, recurrence="exp")
    params = layer.init(rng)
    c1, c2, h0 = rng.normal((3, T1, 2)), rng.normal((3, T2, 2)), rng.normal((3, 4))
    (_, s), _ = layer.forward(params, c1, return_state=True)
    (_, h), _ = layer.forward(params, (c1, h0), return_state=True)
    assert_close(h, layer.decay_product(params, T1) * h0 + s, 1e-12, "affine in h0")
    xp = backend.xp
    (y_all, h_all), _ = layer.forward(params, xp.concat([c1, c2], axis=1), return_state=True)
    (y2, h2), _ = layer.forward(params, (c2, s), return_state=True)
    assert_close(y2, y_all[:, T1:, :], 1e-12, "resumed outputs")
    assert_close(h2, h_all, 1e-12, "resumed state")


def test_same_seed_same_decays_for_every_parametrisation(f64):
    """init draws λ = σ(U(−2, 2)) and stores it in each parametrisation: same λ, same weights."""
    layers = {r: GatedLinearRNN(3, 6, 2, recurrence=r) for r in RECURRENCES}
    params = {r: l.init(RNG(7)) for r, l in layers.items()}
    lams = {r: host(layers[r].decay(params[r])) for r in RECURRENCES}
    for r in RECURRENCES:
        assert_close(lams[r], lams["sigmoid"], 1e-14, f"λ of {r}")
        assert_close(params[r]["Wx_out"], params["sigmoid"]["Wx_out"], 0.0, f"Wx_out of {r}")
    lam = lams["sigmoid"]
    assert lam.min() > 1 / (1 + math.e ** 2) and lam.max() < 1 / (1 + math.e ** -2)


def test_shape_errors(f64):
    layer = GatedLinearRNN(3, 4, 2)
    params = layer.init(0)
    with pytest.raises(ValueError, match=r"GatedLinearRNN: expected x of shape \(\.\.\., 3\), got shape \(2, 5, 4\)"):
        layer.forward(params, RNG(0).normal((2, 5, 4)))
    with pytest.raises(ValueError, match=r"GatedLinearRNN: expected x with 3 dims, got shape \(5, 3\)"):
        layer.forward(params, RNG(0).normal((5, 3)))
    with pytest.raises(ValueError, match=r"GatedLinearRNN: expected h0 of shape \(2, 4\), got shape \(2, 3\)"):
        layer.forward(params, (RNG(0).normal((2, 5, 3)), RNG(0).normal((2, 3))))
    with pytest.raises(ValueError, match="recurrence must be one of"):
        GatedLinearRNN(3, 4, 2, recurrence="tanh")
    with pytest.raises(ValueError, match="scan must be one of"):
        GatedLinearRNN(3, 4, 2, scan="fft")


@pytest.mark.parametrize("recurrence", RECURRENCES)
@pytest.mark.parametrize("with_h0, return_state", [(False, False), (True, False), (False, True), (True, True)])
def test_fast_last_only_equals_plain(backend, recurrence, with_h0, return_state):
    """The closed-form last-only path (fast=True) vs the plain one (scan, read step T−1,
    dout placed at that step): same output, state, dx, dh0 and every gradient. Tolerance
    1e-12 relative: the same sums, as powers of λ instead of a recursion."""
    rng = RNG(5)
    fast = GatedLinearRNN(3, 4, 2, n_out_gates=3, recurrence=recurrence)
    plain = GatedLinearRNN(3, 4, 2, n_out_gates=3, recurrence=recurrence, fast=False)
    params = fast.init(rng)
    x = (rng.normal((2, 6, 3)), rng.normal((2, 4))) if with_h0 else rng.normal((2, 6, 3))
    kw = {"last_only": True, "return_state": return_state}
    (out, cache), (out_p, cache_p) = fast.forward(params, x, **kw), plain.forward(params, x, **kw)
    assert type(cache).__name__ == "RNNLastCache" and type(cache_p).__name__ == "RNNCache"
    dout = tuple(rng.normal(tuple(o.shape)) for o in out) if return_state else rng.normal(tuple(out.shape))
    (dx, grads), (dx_p, grads_p) = fast.backward(params, cache, dout), plain.backward(params, cache_p, dout)
    for name, a, b in [("out", out, out_p), ("dx", dx, dx_p)]:
        for i, (ai, bi) in enumerate(zip(a, b) if isinstance(a, tuple) else [(a, b)]):
            assert_close(ai, bi, 1e-12, f"{name}[{i}]")
    assert set(grads) == set(grads_p) == set(params)
    for k in grads:
        assert_close(grads[k], grads_p[k], 1e-12, f"d{k}")


def test_sigmoid_decay_is_stable_at_extremes(backend):
    """ν = ∓800 (σ would overflow as 1/(1 + e^{−ν})): λ is exactly 0 and 1, as torch's sigmoid
    gives, with no overflow warning (warnings are errors in this suite) and finite gradients."""
    layer = GatedLinearRNN(2, 3, 1)
    params = {**layer.init(0), "nu": asarray([-800.0, 800.0, 0.0])}
    assert host(layer.decay(params)).tolist() == [0.0, 1.0, 0.5]
    x = RNG(1).normal((2, 4, 2))
    for kw in ({}, {"last_only": True}):
        out, cache = layer.forward(params, x, **kw)
        dx, grads = layer.backward(params, cache, out)
        assert all(np.all(np.isfinite(host(a))) for a in [out, dx, *grads.values()])


def test_negligible_powers_are_dropped_harmlessly():
    """float32, λ = 0.12, T = 64: λ^k falls below ε² = 1.4e−14 for k ≥ 16 and below 1.2e−38
    (subnormal, slow) for k ≳ 41. The last-only weights hold no nonzero entry below ε², and
    outputs and gradients (last-only and doubling scan) equal the float64 computation to
    float32 precision (relative 1e−5: float32 rounding over T = 64 terms; dropping a weight
    of 1e−3 would show)."""
    rng = RNG(5)
    layers = {"last": GatedLinearRNN(3, 8, 2, recurrence="direct"),
              "parallel": GatedLinearRNN(3, 8, 2, recurrence="direct", scan="parallel")}
    host = {k: np.asarray(v, dtype=np.float64) for k, v in layers["last"].init(rng, backend="numpy").items()}
    host["lam"] = np.full(8, 0.12)
    x = rng.normal((4, 64, 3), host=True)
    results = {}
    for dtype in ("float32", "float64"):
        with use_backend("numpy", dtype=dtype):
            params = {k: asarray(v) for k, v in host.items()}
            for name, layer in layers.items():
                kw = {"last_only": True} if name == "last" else {}
                out, cache = layer.forward(params, asarray(x), **kw)
                dx, grads = layer.backward(params, cache, out)
                results[name, dtype] = (out, dx, grads)
                if name == "last" and dtype == "float32":
                    w = np.asarray(cache.w)
                    assert np.all((w == 0) | (np.abs(w) >= np.finfo(np.float32).eps ** 2)) and np.any(w == 0)
    for name in layers:
        (out, dx, grads), (out64, dx64, grads64) = results[name, "float32"], results[name, "float64"]
        for a, b, what in [(out, out64, "out"), (dx, dx64, "dx")] + [(grads[k], grads64[k], k) for k in grads]:
            assert_close(a, b, 1e-5, f"{name}: {what}")


@pytest.mark.parametrize("d", [1, 2, 5])
def test_add_shifted_in_place_equals_plain(backend, d):
    """The parallel scan's level, fast path (in place, numpy-backed arrays only) vs plain
    (a new array): bit-identical, the input of the plain path untouched. Other backends run
    the plain path only (their slices are not guaranteed to write through)."""
    from tinynim.backend import numpy_backed
    from tinynim.nn.recurrent import add_shifted
    rng = RNG(d)
    h, decay = rng.normal((3, 7, 4)), rng.uniform((4,))
    before = host(h).copy()
    plain = add_shifted(h, decay, d)
    assert np.array_equal(host(h), before)
    want = before.copy()
    want[:, d:] = before[:, d:] + host(decay) * before[:, :-d]
    assert np.array_equal(host(plain), want)
    if numpy_backed(h):
        assert np.array_equal(host(add_shifted(h, decay, d, in_place=True)), want)
