import importlib.util

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim import tree
from tinynim.backend import namespace, to_numpy, use_backend
from tinynim.nn.attention import SoftmaxAttention
from tinynim.nn.linear import Linear
from tinynim.random import RNG, as_rng
from helpers import assert_close, host

CPU_BACKENDS = ["numpy", "array_api_strict"] + (["torch"] if importlib.util.find_spec("torch") else [])


# -- one seed, the same numbers on every backend ------------------------------------------------

def _run_everywhere(seed):
    """{backend: (params, outputs)} as host arrays, each backend built from RNG(seed) alone."""
    results = {}
    for name in CPU_BACKENDS:
        with use_backend(name, dtype="float64"):
            rng = RNG(seed)
            lin, attn = Linear(3, 4), SoftmaxAttention(4, 2, causal=True)
            p_lin, p_attn, x = lin.init(rng), attn.init(rng), rng.normal((2, 5, 3))
            out = attn(p_attn, lin(p_lin, x))
            results[name] = (tree.tree_map(host, {"lin": p_lin, "attn": p_attn, "x": x}), host(out))
    return results


@given(seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_init_and_outputs_on_every_backend(seed):
    """Init and data are drawn on the host, so they are bitwise equal on every backend.
    Forward outputs agree to 1e-12 (relative): the same float64 maths, but each library
    (numpy BLAS, torch) may sum in its own order, which costs a few ulps per product."""
    results = _run_everywhere(seed)
    ref_params, ref_out = results["numpy"]
    for name, (params, out) in results.items():
        for (path, a), (_, b) in zip(tree.leaves_with_paths(params), tree.leaves_with_paths(ref_params)):
            assert np.array_equal(a, b), f"{name}: {path} differs from numpy"
        assert_close(out, ref_out, 1e-12, f"{name} vs numpy forward")
    assert not np.array_equal(_run_everywhere(seed ^ 1)["numpy"][1], ref_out)   # the seed matters


# -- RNG methods ---------------------------------------------------------------------------------

N = 200_000


def test_normal_and_uniform_moments(backend):
    """Sample moments of N = 2e5 draws within 5 standard errors (false-alarm rate < 1e-6):
    mean ± 5·std/√N; for the std, its standard error is ≈ std/√(2N)."""
    rng, se = RNG(0), 5 / np.sqrt(N)
    z = rng.normal((N,), std=2.0, mean=1.0)
    assert namespace(z) is backend.xp and z.dtype == backend.xp.float64
    z = host(z)
    assert abs(z.mean() - 1.0) < 2.0 * se and abs(z.std() - 2.0) < 2.0 * se / np.sqrt(2)
    u = host(rng.uniform((N,), low=-1.0, high=3.0))
    assert u.min() >= -1.0 and u.max() < 3.0
    assert abs(u.mean() - 1.0) < (4 / np.sqrt(12)) * se            # uniform std = (high-low)/√12


def test_truncated_normal_within_two_std(backend):
    """Truncation at ±2 std by redrawing: every draw inside, and the std of the truncated
    law is 0.8796·std (= √(1 − 2·2φ(2)/(2Φ(2)−1))), within 5 standard errors of N = 2e5."""
    z = host(RNG(1).truncated_normal((N,), std=0.5))
    assert np.abs(z).max() <= 1.0
    assert abs(z.std() - 0.8796 * 0.5) < 5 * 0.5 / np.sqrt(N)


def test_integers_permutation_choice(backend):
    rng, xp = RNG(2), backend.xp
    k = rng.integers(-3, 4, (1000,))
    assert k.dtype == xp.int64
    k = to_numpy(k)
    assert set(np.unique(k)) == set(range(-3, 4))                 # 1000 draws hit all 7 values
    p = to_numpy(rng.permutation(50))
    assert np.array_equal(np.sort(p), np.arange(50)) and not np.array_equal(p, np.arange(50))
    c = to_numpy(rng.choice(10, (10,), replace=False))
    assert np.array_equal(np.sort(c), np.arange(10))
    assert np.all(to_numpy(rng.choice(3, (20,), p=[0.0, 1.0, 0.0])) == 1)


def test_orthogonal(backend):
    """QᵀQ = I to 1e-12 (one QR in float64) for single and batched draws, and det = ±1."""
    q = host(RNG(3).orthogonal(5))
    assert np.abs(q.T @ q - np.eye(5)).max() < 1e-12
    qs = host(RNG(3).orthogonal(4, batch=(2, 3)))
    assert qs.shape == (2, 3, 4, 4)
    assert np.abs(np.swapaxes(qs, -1, -2) @ qs - np.eye(4)).max() < 1e-12
    assert np.allclose(np.abs(np.linalg.det(qs)), 1.0, atol=1e-12)


def test_orthogonal_is_haar_not_biased():
    """With the sign fix, E[Q] = 0 for Haar Q: the mean of 4000 draws of Q₀₀ (variance 1/n)
    is within 5 standard errors (0.046) of 0. LAPACK's plain QR, without the fix, gives
    Q₀₀ < 0 always (mean ≈ −0.5 here), so the test fails if the fix is lost."""
    q = RNG(4).orthogonal(3, batch=(4000,), host=True)
    assert abs(q[:, 0, 0].mean()) < 5 * np.sqrt(1 / 3 / 4000)


def test_seeds_and_spawn(f64):
    assert np.array_equal(host(RNG(7).normal(5)), host(RNG(7).normal(5)))
    assert not np.array_equal(host(RNG(7).normal(5)), host(RNG(8).normal(5)))
    (a, b), (a2, b2) = RNG(7).spawn(2), RNG(7).spawn(2)
    xa, xb = host(a.normal(5)), host(b.normal(5))
    assert not np.array_equal(xa, xb)                                  # distinct streams
    assert np.array_equal(xa, host(a2.normal(5))) and np.array_equal(xb, host(b2.normal(5)))
    assert not np.array_equal(xa, host(RNG(7).normal(5)))              # child != parent stream
    parent = RNG(7)
    c1, c2 = parent.spawn(1)[0], parent.spawn(1)[0]
    assert not np.array_equal(host(c1.normal(5)), host(c2.normal(5)))  # later spawns are new
    assert isinstance(RNG(7).normal(3, host=True), np.ndarray)
    g = np.random.default_rng(7)
    assert as_rng(g).np is g and as_rng(parent) is parent
    assert np.array_equal(host(as_rng(7).normal(3)), host(RNG(7).normal(3)))


def test_continuous_draws_refuse_non_float_dtypes(backend):
    """RNG(0).normal(3, dtype='int32') returned zeros (draws truncated): now a ValueError
    naming the method, raised before drawing (the stream does not move)."""
    rng = RNG(0)
    for method, call in [("normal", lambda d: rng.normal(3, dtype=d)),
                         ("truncated_normal", lambda d: rng.truncated_normal(3, dtype=d)),
                         ("uniform", lambda d: rng.uniform(3, dtype=d)),
                         ("orthogonal", lambda d: rng.orthogonal(3, dtype=d))]:
        for bad in ("int32", "int64", "bool", "complex128", "float16"):
            with pytest.raises(ValueError, match=rf"^RNG\.{method}: dtype must be a floating dtype "
                                                 rf"\(float32, float64; default: the backend's\), got '{bad}'$"):
                call(bad)
    np.testing.assert_array_equal(host(rng.normal(3, dtype="float32")), host(RNG(0).normal(3, dtype="float32")))
    assert rng.uniform(2, dtype="float64").dtype == backend.xp.float64


# -- parameter trees -----------------------------------------------------------------------------

def _tree(rng):
    return {"b": rng.normal((2,)), "a": {"W": rng.normal((2, 3)), "none": None},
            "seq": (rng.normal((3,)), [rng.normal((1, 2))]), "empty": {}}


def test_tree_arithmetic(backend):
    """add, sub, scale, axpy, vdot, global_norm against the same sums on host numpy (1e-14)."""
    rng = RNG(5)
    a, b = _tree(rng), _tree(rng)
    ha, hb = [host(x) for x in tree.leaves(a)], [host(x) for x in tree.leaves(b)]
    for got, want in [(tree.add(a, b), [x + y for x, y in zip(ha, hb)]),
                      (tree.sub(a, b), [x - y for x, y in zip(ha, hb)]),
                      (tree.scale(a, -2.5), [-2.5 * x for x in ha]),
                      (tree.axpy(0.5, a, b), [0.5 * x + y for x, y in zip(ha, hb)]),
                      (tree.zeros_like(a), [0 * x for x in ha])]:
        leaves = tree.leaves(got)
        assert len(leaves) == len(want) == 4
        for x, y in zip(leaves, want):
            assert_close(x, y, 1e-14)
    assert tree.add(a, b)["a"]["none"] is None and tree.add(a, b)["empty"] == {}
    assert isinstance(tree.add(a, b)["seq"], tuple) and isinstance(tree.add(a, b)["seq"][1], list)
    vd = sum(float(np.sum(x * y)) for x, y in zip(ha, hb))
    assert abs(tree.vdot(a, b) - vd) <= 1e-14 * abs(vd) + 1e-15
    assert abs(tree.global_norm(a) - np.sqrt(sum(float(np.sum(x * x)) for x in ha))) < 1e-13


def test_paths_flatten_unflatten(backend):
    rng = RNG(6)
    t = _tree(rng)
    paths = [p for p, _ in tree.leaves_with_paths(t)]
    assert paths == ["a/W", "b", "seq/0", "seq/1/0"]                 # sorted keys, None skipped
    vec, spec = tree.flatten(t)
    assert tuple(vec.shape) == (6 + 2 + 3 + 2,)
    back = tree.unflatten(vec, spec)
    assert [p for p, _ in tree.leaves_with_paths(back)] == paths
    for p in paths:
        assert np.array_equal(host(tree.get(back, p)), host(tree.get(t, p)))
    assert back["a"]["none"] is None and isinstance(back["seq"], tuple) and isinstance(back["seq"][1], list)
    assert np.array_equal(host(tree.flatten(back)[0]), host(vec))
    with pytest.raises(ValueError, match=r"unflatten: vector has 14 entries, the tree needs 13"):
        tree.unflatten(namespace(vec).concat([vec, vec[:1]]), spec)
    xp = namespace(vec)
    population = tree.unflatten(xp.stack([vec, 2 * vec, -vec]), spec)     # (3, 13): three trees
    for p in paths:
        leaf = host(tree.get(t, p))
        assert np.array_equal(host(tree.get(population, p)), np.stack([leaf, 2 * leaf, -leaf]))
    with pytest.raises(ValueError, match=r"flatten: the tree has no array leaves"):
        tree.flatten({"a": {}, "b": None})


def test_unflatten_too_short_vector_is_a_clear_error(backend):
    """A vector one entry short must give tinynim's message, not a backend's reshape error."""
    vec, spec = tree.flatten(_tree(RNG(6)))
    with pytest.raises(ValueError, match=r"unflatten: vector has 12 entries, the tree needs 13"):
        tree.unflatten(vec[:12], spec)


def test_set_leaf_does_not_mutate(f64):
    rng = RNG(7)
    t = _tree(rng)
    before = {p: host(x).copy() for p, x in tree.leaves_with_paths(t)}
    new_leaf = rng.normal((1, 2))
    u = tree.set_leaf(t, "seq/1/0", new_leaf)
    assert tree.get(u, "seq/1/0") is new_leaf
    assert u["a"] is t["a"] and u["b"] is t["b"]                    # untouched branches are shared
    assert isinstance(u["seq"], tuple) and isinstance(u["seq"][1], list)
    for p, x in tree.leaves_with_paths(t):
        assert np.array_equal(host(x), before[p])                      # t itself unchanged
    v = tree.set_leaf(t, "b", None)
    assert v["b"] is None and t["b"] is not None


def test_tree_map_structure_errors(f64):
    with pytest.raises(ValueError, match=r"tree_map: key mismatch \['a', 'b'\] vs \[\['a', 'c'\]\]"):
        tree.tree_map(lambda x, y: x + y, {"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 2.0})
    with pytest.raises(ValueError, match=r"tree_map: sequence length mismatch"):
        tree.tree_map(lambda x, y: x + y, (1.0, 2.0), (1.0,))
