import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.linear_attention import LinearSelfAttention
from tinynim.random import RNG
from helpers import assert_gradients, assert_close, host


def reference(p, x, form, causal, n):
    """The textbook formula in plain numpy loops over heads: scores first, then values."""
    x = host(x)
    p = {k: host(v) for k, v in p.items()}
    T = x.shape[1]
    C = x[:, :n]
    mask = np.tril(np.ones((T, n))) if causal else np.ones((T, n))
    out = np.zeros_like(x)
    for h in range(next(iter(p.values())).shape[0]):
        if form == "full":
            q, k, v, Wo = x @ p["Wq"][h], C @ p["Wk"][h], C @ p["Wv"][h], p["Wp"][h]
        else:
            q, k, v, Wo = x @ p["Q"][h], C, C, p["P"][h]
        out += ((q @ k.transpose(0, 2, 1)) * mask) @ v @ Wo
    return out


layers = st.fixed_dictionaries(dict(
    D=st.integers(1, 4), H=st.integers(1, 3), k=st.integers(1, 6), T=st.integers(1, 6),
    B=st.integers(1, 3), causal=st.booleans(), form=st.sampled_from(["full", "merged"]),
    seed=st.integers(0, 2**16)))


def build(c, data):
    rng = RNG(c["seed"])
    layer = LinearSelfAttention(c["D"], c["H"], c["k"] if c["form"] == "full" else None,
                                causal=c["causal"], form=c["form"], init_std=0.5)
    kw = {"n_context": data.draw(st.one_of(st.none(), st.integers(1, c["T"])), label="n_context"),
          "last_only": data.draw(st.booleans(), label="last_only")}
    return layer, layer.init(rng), rng.normal((c["B"], c["T"], c["D"])), kw


@given(c=layers, data=st.data())
def test_lsa_gradients(backend, c, data):
    layer, params, x, kw = build(c, data)
    assert_gradients(layer, params, x, kw)


@given(c=layers, data=st.data())
def test_lsa_matches_textbook_formula(backend, c, data):
    """Both attention routes (scores, reassociated S = KᵀV), the shared-key merged path and
    the last-row-only path equal the explicit loop formula."""
    layer, params, x, kw = build(c, data)
    n = c["T"] if kw["n_context"] is None else kw["n_context"]
    want = reference(params, x, c["form"], c["causal"], n)
    assert_close(layer(params, x, **kw), want[:, -1:] if kw["last_only"] else want,
                 what="LSA vs loop reference")


@given(D=st.integers(1, 4), H=st.integers(1, 3), k=st.integers(1, 5), T=st.integers(2, 6),
       causal=st.booleans(), seed=st.integers(0, 2**16))
def test_merged_equals_full(f64, D, H, k, T, causal, seed):
    """P = Wv Wp and Q = Wq Wkᵀ make the merged form compute the same layer (spec §1.2)."""
    rng = RNG(seed)
    full = LinearSelfAttention(D, H, k, causal=causal, form="full")
    merged = LinearSelfAttention(D, H, causal=causal, form="merged")
    p = full.init(rng)
    pm = {"Q": p["Wq"] @ p["Wk"].mT, "P": p["Wv"] @ p["Wp"]}
    x = rng.normal((2, T, D))
    n = T - 1
    assert_close(merged(pm, x, n_context=n), full(p, x, n_context=n), what="merged vs full")


@given(form=st.sampled_from(["full", "merged"]), T=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_causal_ignores_the_future(f64, form, T, seed):
    """Changing tokens after t leaves outputs 0..t unchanged; the non-causal layer does change."""
    rng = RNG(seed)
    t = T // 2 - 1 if T > 2 else 0
    x = rng.normal((2, T, 3), host=True)
    x2 = x.copy()
    x2[:, t + 1:] += rng.normal((2, T - t - 1, 3), host=True)
    for causal in (True, False):
        layer = LinearSelfAttention(3, 2, causal=causal, form=form)
        p = layer.init(rng)
        a, b = host(layer(p, asarray(x))), host(layer(p, asarray(x2)))
        if causal:
            np.testing.assert_allclose(a[:, :t + 1], b[:, :t + 1], rtol=1e-12, atol=1e-12)
        else:
            assert np.abs(a[:, :t + 1] - b[:, :t + 1]).max() > 1e-6


def test_lsa_errors(f64):
    layer = LinearSelfAttention(4, 2)
    p = layer.init(0)
    with pytest.raises(ValueError, match=r"LinearSelfAttention: expected x of shape \(\.\.\., 4\), got shape \(2, 3, 5\)"):
        layer.forward(p, RNG(0).normal((2, 3, 5)))
    with pytest.raises(ValueError, match=r"LinearSelfAttention: expected x with 3 dims, got shape \(3, 4\)"):
        layer.forward(p, RNG(0).normal((3, 4)))
    with pytest.raises(ValueError, match=r"LinearSelfAttention: n_context must be in \[1, 3\]"):
        layer.forward(p, RNG(0).normal((2, 3, 4)), n_context=4)
    out, cache = layer.forward(p, RNG(0).normal((2, 3, 4)))
    with pytest.raises(ValueError, match=r"LinearSelfAttention: expected dout of shape \(2, 3, 4\), got shape \(2, 3, 2\)"):
        layer.backward(p, cache, RNG(0).normal((2, 3, 2)))
    with pytest.raises(ValueError, match=r"LinearSelfAttention: form must be one of"):
        LinearSelfAttention(4, form="diag")
    with pytest.raises(ValueError, match=r"LinearSelfAttention: params lack \['Q', 'P'\]"):
        LinearSelfAttention(4, form="merged").forward(p, RNG(0).normal((2, 3, 4)))


def test_lsa_init(f64):
    """Shapes per form; std near init_std (±2σ truncation shrinks it by a factor 0.88)."""
    p = LinearSelfAttention(6, 2, 5, init_std=0.1).init(0)
    assert {k: tuple(v.shape) for k, v in p.items()} == {
        "Wq": (2, 6, 5), "Wk": (2, 6, 5), "Wv": (2, 6, 5), "Wp": (2, 5, 6)}
    std = np.std(np.concatenate([host(v).ravel() for v in p.values()]))
    assert 0.075 < std < 0.1, std     # 240 draws: the sample std is within ~10 % of 0.088
    assert {k: tuple(v.shape) for k, v in LinearSelfAttention(3, form="merged").init(0).items()} == {
        "Q": (1, 3, 3), "P": (1, 3, 3)}


@pytest.mark.parametrize("T, k, via_S, products", [(6, 2, True, False), (2, 6, False, True),
                                                   (1, 2, False, False), (7, 3, True, True)])
def test_attend_picks_cheaper_route(backend, T, k, via_S, products):
    """(n + T)·k² vs T·n·2k decides the attention route, d_key ≥ D the products Q, P; every
    combination gives the loop formula and its gradients."""
    layer = LinearSelfAttention(3, 2, k, init_std=0.5)
    rng = RNG(T)
    p, x = layer.init(rng), rng.normal((2, T, 3))
    out, cache = layer.forward(p, x)
    assert cache.attend.via_S is via_S and cache.merged is products
    assert_close(out, reference(p, x, "full", False, T), what="route")
    assert_gradients(layer, p, x)
