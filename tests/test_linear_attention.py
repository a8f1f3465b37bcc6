import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn.linear_attention import LinearSelfAttention, merged_products
from tinynim.random import RNG
from helpers import assert_gradients, assert_close, host


def diag_matrices(p, D, d_y):
    """The DIAG form's (Q_h, P_h) = (diag(q_x I_d, q_y I_dy), diag(p_x I_d, p_y I_dy)), by hand."""
    d = D - d_y
    block = lambda a, b: np.diag(np.concatenate([np.full(d, a), np.full(d_y, b)]))
    H = p["q_x"].shape[0]
    return (np.stack([block(p["q_x"][h], p["q_y"][h]) for h in range(H)]),
            np.stack([block(p["p_x"][h], p["p_y"][h]) for h in range(H)]))


def reference(p, x, form, causal, n, d_y=None):
    """The textbook formula in plain numpy loops over heads: scores first, then values."""
    x = host(x)
    p = {k: host(v) for k, v in p.items()}
    T, D = x.shape[1:]
    if form == "diagonal":
        p = dict(zip(("Q", "P"), diag_matrices(p, D, d_y)))
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
    D=st.integers(2, 4), H=st.integers(1, 3), k=st.integers(1, 6), T=st.integers(1, 6),
    B=st.integers(1, 3), causal=st.booleans(), form=st.sampled_from(["full", "merged", "diagonal"]),
    fast=st.booleans(), seed=st.integers(0, 2**16)))


def build(c, data):
    rng = RNG(c["seed"])
    c["d_y"] = data.draw(st.integers(1, c["D"] - 1), label="d_y") if c["form"] == "diagonal" else None
    layer = LinearSelfAttention(c["D"], c["H"], c["k"] if c["form"] == "full" else None,
                                causal=c["causal"], form=c["form"], d_y=c["d_y"], init_std=0.5,
                                fast=c["fast"])
    kw = {"n_context": data.draw(st.one_of(st.none(), st.integers(1, c["T"])), label="n_context"),
          "last_only": data.draw(st.booleans(), label="last_only")}
    return layer, layer.init(rng), rng.normal((c["B"], c["T"], c["D"])), kw


@given(c=layers, data=st.data())
def test_lsa_gradients(backend, c, data):
    layer, params, x, kw = build(c, data)
    assert_gradients(layer, params, x, kw)


@given(c=layers, data=st.data())
def test_lsa_matches_textbook_formula(backend, c, data):
    """Both paths (plain, fast), both attention routes (scores, reassociated S = KᵀV), the
    shared-key merged path, the last-row-only path and every form equal the explicit loop formula."""
    layer, params, x, kw = build(c, data)
    n = c["T"] if kw["n_context"] is None else kw["n_context"]
    want = reference(params, x, c["form"], c["causal"], n, c["d_y"])
    assert_close(layer(params, x, **kw), want[:, -1:] if kw["last_only"] else want,
                 what="LSA vs loop reference")


@given(D=st.integers(1, 4), H=st.integers(1, 3), k=st.integers(1, 5), T=st.integers(2, 6),
       causal=st.booleans(), seed=st.integers(0, 2**16))
def test_merged_equals_full(f64, D, H, k, T, causal, seed):
    """P = Wv Wp and Q = Wq Wkᵀ make the merged form compute the same layer (arXiv:2212.07677)."""
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
    with pytest.raises(ValueError, match=r"LinearSelfAttention: form must be one of \('full', 'merged', 'diagonal'\)"):
        LinearSelfAttention(4, form="diag")
    with pytest.raises(ValueError, match=r"LinearSelfAttention: d_y \(the y block of the diagonal form\) is needed "
                                         r"exactly for form='diagonal'; got form='diagonal', d_y=None"):
        LinearSelfAttention(4, form="diagonal")
    with pytest.raises(ValueError, match=r"LinearSelfAttention: d_y must be < d_model = 4, got 4"):
        LinearSelfAttention(4, form="diagonal", d_y=4)
    with pytest.raises(ValueError, match=r"form='diagonal' has d_key = d_model = 4, got 2"):
        LinearSelfAttention(4, 1, 2, form="diagonal", d_y=1)
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


@pytest.mark.parametrize("form", ["full", "merged", "diagonal"])
def test_forms_map_to_products(f64, form):
    """The table's θ ↦ (Q, P): full Q = Wq Wkᵀ, P = Wv Wp; merged as stored; diagonal the
    block diagonals built by hand (exact: the same products, or selections)."""
    layer = LinearSelfAttention(5, 2, form=form, **({"d_y": 2} if form == "diagonal" else {}))
    p = layer.init(RNG(3))
    Q, P = merged_products(p, form, d_model=5, d_y=2)
    hp = {k: host(v) for k, v in p.items()}
    if form == "full":
        want = (hp["Wq"] @ np.swapaxes(hp["Wk"], 1, 2), hp["Wv"] @ hp["Wp"])
    elif form == "merged":
        want = (hp["Q"], hp["P"])
    else:
        want = diag_matrices(hp, 5, 2)
    np.testing.assert_allclose(host(Q), want[0], rtol=1e-14, atol=0)
    np.testing.assert_allclose(host(P), want[1], rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match=r"merged_products: form 'diagonal' needs d_model and d_y"):
        merged_products(p, "diagonal")


@given(H=st.integers(1, 3), D=st.integers(2, 5), T=st.integers(2, 5), data=st.data(),
       seed=st.integers(0, 2**16))
def test_diagonal_gradients(backend, H, D, T, data, seed):
    """The diagonal form's pull-back (traces of the blocks of dQ, dP) vs FD and torch."""
    d_y = data.draw(st.integers(1, D - 1), label="d_y")
    causal, last_only = data.draw(st.booleans(), label="causal"), data.draw(st.booleans(), label="last_only")
    rng = RNG(seed)
    layer = LinearSelfAttention(D, H, form="diagonal", d_y=d_y, causal=causal, init_std=1.0)
    assert_gradients(layer, layer.init(rng), rng.normal((2, T, D)), {"n_context": T - 1, "last_only": last_only})


# Every fast route, selected explicitly: (form, d_key, T, n_context, causal, last_only).
FAST_ROUTES = {
    "full_lowrank_scores_causal": ("full", 2, 5, 3, True, False),
    "full_lowrank_scores": ("full", 3, 2, None, False, False),
    "full_lowrank_kv_state": ("full", 2, 6, 5, False, False),
    "full_products_kv_state": ("full", 4, 6, None, False, False),
    "full_products_causal": ("full", 5, 4, None, True, False),
    "full_last_only": ("full", 2, 5, 4, True, True),
    "merged_causal": ("merged", None, 5, 3, True, False),
    "merged_kv_state": ("merged", None, 6, 6, False, False),
    "merged_last_only": ("merged", None, 4, 3, False, True),
    "diagonal_causal": ("diagonal", None, 5, 4, True, False),
    "diagonal_last_only": ("diagonal", None, 5, 2, True, True),
}


@pytest.mark.parametrize("route", sorted(FAST_ROUTES))
def test_fast_path_equals_plain_path(backend, route):
    """fast=True (one query row, low-rank factors, S = kᵀv) gives the plain path's output,
    dx and every gradient, route by route. Tolerance 1e-12 relative: the same float64 sums in
    another association."""
    form, d_key, T, n, causal, last_only = FAST_ROUTES[route]
    kw = dict(causal=causal, form=form, init_std=0.7, **({"d_y": 1} if form == "diagonal" else {}))
    fast, plain = LinearSelfAttention(4, 2, d_key, **kw), LinearSelfAttention(4, 2, d_key, fast=False, **kw)
    rng = RNG(11)
    params, x = fast.init(rng), rng.normal((3, T, 4))
    out, cache = fast.forward(params, x, n_context=n, last_only=last_only)
    out_p, cache_p = plain.forward(params, x, n_context=n, last_only=last_only)
    assert_close(out, out_p, 1e-12, f"{route}: forward")
    dout = rng.normal(tuple(out.shape))
    (dx, grads), (dx_p, grads_p) = fast.backward(params, cache, dout), plain.backward(params, cache_p, dout)
    assert_close(dx, dx_p, 1e-12, f"{route}: dx")
    assert set(grads) == set(grads_p) == set(params)
    for k in grads:
        assert_close(grads[k], grads_p[k], 1e-12, f"{route}: d{k}")
    via_S = not causal and not last_only and route.endswith("kv_state")
    assert cache.attend.via_S is via_S
    assert cache.merged is (form != "full" or last_only or d_key >= 4)
