"""Exact properties of the modular teacher–student (P6, arXiv:2312.15001) on every backend, float64.

Tolerances: EXACT = 1e-10 relative for identities that hold in exact arithmetic (both sides
are the same real number computed in another order: rounding only, observed ~1e-15).
Strict inequalities (a student that must *fail*) use a floor far above rounding (1e-6
relative loss) and far below what a generic draw gives (~1e-1). The envelope identity is
checked by central differences (ε = 1e-5 on an analytic map: truncation ~ε² ≈ 1e-10,
rounding ~1e-16/ε ≈ 1e-11 relative), so it gets 1e-7.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.nn import HyperLinear
from tinynim.random import RNG
from tinynim.tree import tree_map
from tasks import modular_teacher as mt
from tasks.modular_teacher import (best_codes_linear, code_gradient, counterexample_student, decoding_r2,
                                   held_out, identified_student, infer_codes, inputs, is_compositional,
                                   is_connected, masks_from, module_alignment, outer_gradient, relative_loss,
                                   sample_codes, support, task_count, teacher)
from helpers import assert_close, host

EXACT = 1e-10
FAILS = 1e-6
seeds = st.integers(0, 2**16)


def _invertible(rng, M):
    """A random F with singular values in [0.5, 2] (well conditioned: the test is about
    the construction, not about inverting near-singular matrices)."""
    U, V = np.linalg.qr(rng.normal(size=(M, M)))[0], np.linalg.qr(rng.normal(size=(M, M)))[0]
    return U @ np.diag(rng.uniform(0.5, 2.0, M)) @ V


@given(M=st.integers(1, 6), n=st.integers(1, 6), h=st.integers(1, 6), o=st.integers(1, 3), seed=seeds)
def test_identified_student_generalises_to_every_code(backend, M, n, h, o, seed):
    """Theorem 2 (⇐): Θ̂_m = c Σ_k (F⁻¹)_{km} Θ_k[:, σ], Â = A[σ]/c gives f̂(x; Fz) = f(x; z)
    for *any* codes z (dense, negative, never seen), and fails as soon as one c_j < 0."""
    net, tp = teacher(M, n, h, o, seed)
    rng = np.random.default_rng(seed)
    F, perm, c = _invertible(rng, M), rng.permutation(h), rng.uniform(0.5, 2.0, h)
    sp = identified_student(tp, F, perm, c)
    x, z = inputs(RNG(seed), 5, 7, n), asarray(rng.normal(size=(5, M)) * 2)
    zF = z @ asarray(F.T)
    assert_close(net(sp, (x, zF)), net(tp, (x, z)), EXACT, "f̂(x; Fz) vs f(x; z)")
    c[rng.integers(h)] *= -1.0                        # one negative scale: ReLU(−u) ≠ −ReLU(u)
    y = net(tp, (x, z))
    assert relative_loss(net, identified_student(tp, F, perm, c), x, zF, y) > FAILS


@given(h=st.integers(2, 8), n=st.integers(2, 8), seed=seeds)
def test_disconnected_support_counterexample(backend, h, n, seed):
    """Appendix A.3: with equal readouts, permuting the hidden units of modules {3, 4, 5} only
    gives zero loss on every task of the families (0,1), (1,2), (3,4), (4,5), but not on
    z* = e₀ + e₅; the bridging family (2, 3) exposes it (the support becomes connected)."""
    net, tp = teacher(6, n, h, 2, seed, equal_readouts=True)
    perm = np.roll(np.arange(h), 1)                   # no unit left in place
    sp = counterexample_student(tp, perm)
    rng = RNG(seed)
    masks = support("counterexample")
    z = asarray(sample_codes(rng, masks, 4 * len(masks)))
    x = inputs(rng, z.shape[0], 16, n)
    assert relative_loss(net, sp, x, z, net(tp, (x, z))) <= EXACT ** 2   # exactly 0 up to rounding
    e05 = asarray(np.eye(6)[[0]] + np.eye(6)[[5]])
    x1 = inputs(rng, 1, 64, n)
    assert relative_loss(net, sp, x1, e05, net(tp, (x1, e05))) > FAILS
    bridge = asarray(sample_codes(rng, masks_from([(2, 3)], 6), 4))
    x4 = inputs(rng, 4, 64, n)
    assert relative_loss(net, sp, x4, bridge, net(tp, (x4, bridge))) > FAILS


def _connected_by_matrix_powers(masks):
    """Oracle (as check_connected of smonsays/scale-compositionality): reachability
    (I + A)^(K−1) of the family graph has no zero."""
    b = (np.asarray(masks) > 0).astype(int)
    A = ((b @ b.T) > 0).astype(int)
    R = np.eye(len(b), dtype=int)
    for _ in range(len(b)):
        R = ((R + R @ A) > 0).astype(int)
    return bool(R.all())


def test_support_predicates_on_the_papers_examples():
    """The paper's worked example (b1..b4 compositional, disconnected; + b5 connected), the
    theory sweep's "Blessed"/"Doomed" supports, and Σ_k (d_k + 1)."""
    ce, br = support("counterexample"), support("bridged")
    assert is_compositional(ce) and not is_connected(ce) and task_count(ce) == 4 * 3
    assert is_compositional(br) and is_connected(br) and task_count(br) == 5 * 3
    assert is_connected(support("ring")) and task_count(support("ring")) == 18
    for doomed in ("triangles", "onehot", "disconnected"):
        assert is_compositional(support(doomed)) and not is_connected(support(doomed)), doomed
    assert is_connected(support("connected", 8)) and not is_connected(support("disconnected", 8))
    assert not is_compositional(masks_from([(0, 1), (1, 2)], 4))       # modules 3 never used
    assert is_connected(masks_from([(0, 1, 2), (2, 3, 4), (4, 5, 0)], 6))
    assert not is_connected(masks_from([(0, 1, 2), (3, 4, 5)], 6))
    assert len(held_out(support("ring"))) == 15 - 6
    with pytest.raises(ValueError, match="support: unknown support 'star'"):
        support("star")


@given(K=st.integers(1, 7), M=st.integers(1, 7), seed=seeds)
def test_is_connected_matches_matrix_power_oracle(K, M, seed):
    masks = (np.random.default_rng(seed).random((K, M)) < 0.3).astype(float)
    masks[np.arange(K), np.arange(K) % M] = 1.0                   # no empty family
    assert is_connected(masks) == _connected_by_matrix_powers(masks)


@given(kind=st.sampled_from(["continuous", "discrete"]), seed=seeds)
def test_codes_live_on_their_family(kind, seed):
    masks = support("ring")
    z = sample_codes(RNG(seed), masks, 24, kind)
    fam = masks[np.arange(24) % 6]
    assert np.all((z != 0) == (fam > 0))
    if kind == "continuous":
        assert np.all(z[fam > 0] >= 0.5) and np.all(z[fam > 0] <= 1.0)
    else:
        assert np.allclose(np.linalg.norm(z, axis=1), 1.0)


@given(M=st.integers(1, 4), T=st.integers(1, 3), seed=seeds)
def test_envelope_theorem_on_a_linear_student(backend, M, T, seed):
    """Linear student f(x; ẑ) = x W(ẑ)/√n: ẑ*(θ) in closed form; the total derivative
    d/dθ L(ẑ*(θ), θ) (central differences through the re-solved ẑ*) equals the first-order
    ∂_θ L at ẑ* (:func:`outer_gradient`)."""
    rng = RNG(seed)
    n, o, B = 3, 2, 6
    layer = HyperLinear(M, n, o)
    p = layer.init(rng)
    x, y = rng.normal((T, B, n)), rng.normal((T, B, o))
    z_star = best_codes_linear(layer, p, x, y)
    _, dz, _ = code_gradient(layer, p, x, z_star, y)
    assert float(np.max(np.abs(host(dz)))) <= 1e-9                # the minimiser
    _, grads = outer_gradient(layer, p, x, z_star, y)
    V = rng.normal(tuple(p["Theta"].shape))
    eps = 1e-5

    def L(s):
        q = {"Theta": p["Theta"] + s * eps * V}
        return outer_gradient(layer, q, x, best_codes_linear(layer, q, x, y), y)[0]
    total = (L(1.0) - L(-1.0)) / (2 * eps)
    partial = float(np.sum(host(grads["Theta"]) * host(V)))
    assert abs(total - partial) <= 1e-7 * (1.0 + abs(partial)), (total, partial)


@given(T=st.integers(1, 4), seed=seeds)
def test_code_gradient_is_per_task(backend, T, seed):
    """dz_t of the batched call is task t's own dL_t/dz_t (a call with that task alone),
    and the parameter gradient is the mean of the tasks' gradients."""
    net, tp = teacher(3, 4, 5, 2, seed)
    rng = RNG(seed)
    x, z, y = inputs(rng, T, 6, 4), rng.normal((T, 3)), rng.normal((T, 6, 2))
    losses, dz, grads = code_gradient(net, tp, x, z, y)
    for t in range(T):
        lt, dzt, gt = code_gradient(net, tp, x[t:t + 1, ...], z[t:t + 1, ...], y[t:t + 1, ...])
        assert_close(dz[t:t + 1, ...], dzt, EXACT, f"dz of task {t}")
        assert_close(losses[t:t + 1], lt, EXACT, f"loss of task {t}")
        total = gt if t == 0 else tree_map(lambda a, b: a + b, total, gt)
    assert_close(grads["0"]["Theta"], total["0"]["Theta"] / T, EXACT, "mean over tasks")


def test_inner_loop_recovers_the_teacher_codes(f64):
    """The student that *is* the teacher (F = I): Adam on the codes from one shared start
    reaches a near-zero loss on every task, and the metrics read it as identified."""
    net, tp = teacher(4, 6, 5, 2, 0)
    rng = RNG(1)
    z = asarray(sample_codes(rng, masks_from([(0, 1), (1, 2), (2, 3), (3, 0)], 4), 16))
    x = inputs(rng, 16, 64, 6)
    y = net(tp, (x, z))
    z_hat, _ = infer_codes(net, tp, x, y, rng.normal((4,)) * 0.1 + 0.5, 500, 0.05)
    assert relative_loss(net, tp, x, z_hat, y) < 1e-4
    assert decoding_r2(z_hat, z) > 0.99
    assert module_alignment(tp, tp, z, z_hat) > 0.99


def test_meta_train_draws_z0_and_data_from_the_stream_of_its_seed(f64, monkeypatch):
    """MetaExperiment's documented streams: z₀, the task pool and the data come from
    RNG(seed + 2) (the teacher is RNG(seed), the student RNG(seed + 1)): at seed 3, z₀ is
    that stream's first draw, and the first batch follows the pool's draws from it."""
    exp = mt.MetaExperiment(seed=3)
    seen = {}

    def fake_fit(loss_and_grads, params, opt, *, data, **kw):
        seen["x"] = data(0)
        return params, {}
    monkeypatch.setattr(mt, "fit", fake_fit)
    _, _, _, z0, _ = mt.meta_train(exp, quick_mode=True)
    rng = RNG(exp.seed + 2)
    np.testing.assert_array_equal(host(z0), host(rng.normal((exp.M_student,))))
    masks = mt.support(exp.support, exp.M)
    n_tasks = mt.sample_codes(rng, masks, exp.tasks_per_family * len(masks), exp.kind).shape[0]
    np.testing.assert_array_equal(host(seen["x"]), host(mt.inputs(rng, n_tasks, exp.batch, exp.n)))
    assert not np.allclose(host(z0), host(RNG(exp.seed + 1).normal((exp.M_student,))))
