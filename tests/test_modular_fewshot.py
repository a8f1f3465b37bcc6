"""The hyperteacher few-shot setting of P6 (tasks/modular_fewshot.py, arXiv:2312.15001 Sec. 4.1).

Exact: the task pool and its split (every combination once, held-out combinations unseen but
each of their layer codes seen in training), the soft targets recomputed independently in
numpy from the teacher's logits (float64: 1e-10 relative, rounding only), and AnilNet's hand
gradients (central differences and torch autograd, with tanh features: no kinks), its bad
inputs, and the first-order meta-gradient of the learned start (the mean over tasks of the
query-loss gradient at the adapted fast input, checked by central differences).
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import asarray
from tinynim.random import RNG
from tinynim.nn import HyperMLP
from tinynim.tree import axpy as tree_axpy, leaves as tree_leaves, tree_map
from tasks.modular_fewshot import (AnilNet, FewShot, TaskMLP, _adapt, comparison, few_shot_learner, few_shot_targets,
                                   hyperteacher, layer_codes, query_gradients, unrolled_gradients)
from tasks.modular_teacher import soft_cross_entropy_per_task
from helpers import assert_gradients, host


@given(M=st.integers(1, 6), K=st.integers(1, 6))
def test_layer_codes_are_every_1_to_K_hot_vector(M, K):
    K = min(K, M)
    c = layer_codes(M, K)
    assert c.shape == (sum(math.comb(M, k) for k in range(1, K + 1)), M)
    assert set(np.unique(c)) <= {0.0, 1.0}
    assert len({tuple(r) for r in c}) == len(c) and set(c.sum(axis=1)) == set(range(1, K + 1))


@pytest.mark.parametrize("K, seed", [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)])
def test_hyperteacher_pool_and_split(f64, K, seed):
    """Every pair of layer codes is one task; frac_ood of them are held out, disjoint from the
    training ones; each held-out task's two layer codes occur in training tasks (in the same
    layer): the OOD tasks are new combinations of seen modules, reachable by composition."""
    fs = FewShot(M=4, K=K, seed=seed)
    t = hyperteacher(fs)
    C = len(layer_codes(4, K))
    assert t.codes.shape == (C * C, 8)
    assert len({tuple(r) for r in t.codes}) == C * C
    assert len(t.ood) == round(0.25 * C * C) and len(t.train) + len(t.ood) == C * C
    assert not set(t.train.tolist()) & set(t.ood.tolist())
    for half in (slice(0, 4), slice(4, 8)):
        seen = {tuple(r) for r in t.codes[t.train, half]}
        assert all(tuple(r) in seen for r in t.codes[t.ood, half])
    assert tuple(t.mu.shape) == tuple(t.sd.shape) == (C * C, 1, fs.classes)


def test_soft_targets_recomputed_in_numpy(f64):
    """softmax((logits − μ)/(σ T)) with μ, σ the per-task, per-class mean and std of the
    teacher's logits on 1000 fixed inputs U[−1, 1] (recomputed here from the teacher network)."""
    fs = FewShot(M=4, K=2, temperature=0.1)
    t = hyperteacher(fs)
    idx = t.ood[:3]
    ref = host(RNG(fs.seed + 2).uniform((1, 1000, fs.n_in), -1.0, 1.0))
    codes = asarray(t.codes[idx])
    ref_logits = host(t.net(t.params, (asarray(np.broadcast_to(ref, (3, 1000, fs.n_in)).copy()), codes)))
    mu, sd = ref_logits.mean(axis=1, keepdims=True), ref_logits.std(axis=1, keepdims=True)
    assert np.allclose(((ref_logits - mu) / sd).std(axis=1), 1.0)
    x = RNG(5).uniform((3, 7, fs.n_in), -1.0, 1.0)
    u = (host(t.net(t.params, (x, codes))) - mu) / (sd * fs.temperature)
    expect = np.exp(u - u.max(axis=-1, keepdims=True))
    expect /= expect.sum(axis=-1, keepdims=True)
    y = host(few_shot_targets(fs, t, x, idx))
    np.testing.assert_allclose(y, expect, rtol=1e-10, atol=1e-12)
    assert np.allclose(y.sum(axis=-1), 1.0) and np.all(y >= 0)


@given(T=st.integers(1, 3), B=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_anil_gradients(backend, T, B, seed):
    rng = RNG(seed)
    net = AnilNet([3, 4, 5], 2, activation="tanh")
    assert_gradients(net, net.init(rng), (rng.normal((T, B, 3)), rng.normal((T, 5, 2))))


def test_anil_forward_is_features_times_head(f64):
    """f(x; W_t) = g(x_t) W_t / √F with g the NTK MLP followed by ReLU, each task its own head."""
    rng = RNG(1)
    net = AnilNet([3, 4, 5], 2)
    p = net.init(rng)
    x, W = rng.normal((2, 6, 3)), rng.normal((2, 5, 2))
    g = np.maximum(host(net.features(p["features"], x)), 0.0)
    expect = np.einsum("tbf,tfo->tbo", g, host(W)) / math.sqrt(5)
    np.testing.assert_allclose(host(net(p, (x, W))), expect, rtol=1e-10, atol=1e-12)


def test_anil_bad_inputs_name_the_layer(f64):
    rng = RNG(0)
    net = AnilNet([3, 4, 5], 2)
    p = net.init(rng)
    with pytest.raises(TypeError, match="AnilNet"):
        net(p, rng.normal((2, 6, 3)))
    with pytest.raises(ValueError, match=r"AnilNet.*\(2, 5, 2\).*\(2, 4, 2\)"):
        net(p, (rng.normal((2, 6, 3)), rng.normal((2, 4, 2))))


@given(T=st.integers(1, 3), B=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_task_mlp_gradients(backend, T, B, seed):
    rng = RNG(seed)
    net = TaskMLP([3, 4, 5, 2], activation="tanh")
    assert_gradients(net, net.init(rng), (rng.normal((T, B, 3)), rng.normal((T, net.n_weights))))


def test_task_mlp_forward_is_each_tasks_own_mlp(f64):
    """Task t's output is the NTK MLP (no biases) whose weights are the row-major blocks of w_t."""
    rng = RNG(2)
    sizes = [3, 5, 4, 2]
    net = TaskMLP(sizes)
    x, w = rng.normal((2, 6, 3)), rng.normal((2, net.n_weights))
    assert net.n_weights == 3 * 5 + 5 * 4 + 4 * 2
    out = host(net(net.init(rng), (x, w)))
    for t in range(2):
        h, at, wt = host(x)[t], 0, host(w)[t]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            h = (np.maximum(h, 0.0) if i else h) @ wt[at:at + a * b].reshape(a, b) / math.sqrt(a)
            at += a * b
        np.testing.assert_allclose(out[t], h, rtol=1e-10, atol=1e-12)


def test_task_mlp_bad_inputs_name_the_layer(f64):
    rng = RNG(0)
    net = TaskMLP([3, 4, 2])
    with pytest.raises(TypeError, match="TaskMLP"):
        net({}, rng.normal((2, 6, 3)))
    with pytest.raises(ValueError, match=r"TaskMLP.*\(2, 20\).*\(3, 20\)"):
        net({}, (rng.normal((2, 6, 3)), rng.normal((3, 20))))
    with pytest.raises(ValueError, match="TaskMLP"):
        net({}, (rng.normal((2, 6, 3)), rng.normal((2, 19))))


@pytest.mark.parametrize("learner", ["hnet", "anil", "maml"])
def test_start_gradient_is_mean_query_gradient(f64, learner):
    """First-order meta-gradient of the shared start: with the adapted fast inputs held fixed
    (here: no inner steps, so fast = start for every task), ∂/∂start of the mean query loss =
    the mean over tasks of dL_t/dfast_t; central differences ε = 1e-6 along a random direction
    (truncation ~ε², rounding ~1e-16/ε: 1e-7 relative)."""
    fs = FewShot(learner=learner, M=4, K=2, n_in=3, hidden=4, classes=3, width=4, M_student=5,
                 shots=6, tasks_per_step=3, inner_steps=0)
    teacher = hyperteacher(fs)
    net, slow = few_shot_learner(fs)
    rng = RNG(3)
    x = rng.uniform((3, 6, 3), -1.0, 1.0)
    y = few_shot_targets(fs, teacher, x, teacher.train[:3])
    _, grads = query_gradients(fs, net, slow, (x, y), (x, y))
    V = rng.normal(tuple(slow["start"].shape))

    def loss(start):
        fast = host(start)[None] * np.ones((3,) + tuple(start.shape))
        losses, _ = soft_cross_entropy_per_task(net(slow["net"], (x, asarray(fast))), y)
        return float(np.mean(host(losses)))

    eps = 1e-6
    fd = (loss(slow["start"] + eps * V) - loss(slow["start"] - eps * V)) / (2 * eps)
    assert abs(fd - float(np.sum(host(grads["start"]) * host(V)))) <= 1e-7 * (1 + abs(fd))


def test_comparison_rejects_unknown_experiment():
    with pytest.raises(ValueError, match="comparison: unknown experiment 'nope'"):
        comparison("nope")


@pytest.mark.parametrize("learner", ["hnet", "anil", "maml"])
def test_unrolled_meta_gradient_matches_central_differences(f64, learner):
    """The second-order meta-gradient (through 4 inner Adam steps, reverse-mode by hand with
    Hessian-vector products by central differences of the hand gradients) against central
    differences of the whole unrolled meta-loss, along a random direction of the network's
    params and of the start. tanh students (smooth: no kinks under the differences).
    Tolerance 1e-6 relative: the HVPs err by ~ε_mach^{2/3} ≈ 4e-11 relative, the outer
    differences (ε = 1e-5) by ~1e-10; the first-order gradient differs by ~1e-2 here."""
    fs = FewShot(learner=learner, M=4, K=2, n_in=3, hidden=4, classes=3, width=4, M_student=5,
                 shots=6, tasks_per_step=3, inner_steps=4, inner_lr=0.1)
    teacher = hyperteacher(fs)
    rng = RNG(7)
    if learner == "hnet":
        net = HyperMLP(5, [3, 4, 4, 4, 3], generated=(False, True, True, False), activation="tanh")
        slow = {"net": net.init(rng), "start": rng.normal((5,))}
    elif learner == "anil":
        net = AnilNet([3, 4, 4], 3, activation="tanh")
        slow = {"net": net.init(rng), "start": rng.normal((4, 3))}
    else:
        net = TaskMLP([3, 4, 4, 3], activation="tanh")
        slow = {"net": {}, "start": rng.normal((net.n_weights,))}
    sets = []
    for _ in range(2):
        x = rng.uniform((3, 6, 3), -1.0, 1.0)
        sets.append((x, few_shot_targets(fs, teacher, x, teacher.train[:3])))
    loss0, grads = unrolled_gradients(fs, net, slow, *sets)
    _, first = query_gradients(fs, net, slow, *sets)
    V = tree_map(lambda a: rng.normal(tuple(a.shape)), slow)

    def meta_loss(p):
        z = _adapt(fs, net, p, *sets[0])
        return float(np.mean(host(soft_cross_entropy_per_task(net(p["net"], (sets[1][0], z)), sets[1][1])[0])))

    eps = 1e-5
    fd = (meta_loss(tree_axpy(eps, V, slow)) - meta_loss(tree_axpy(-eps, V, slow))) / (2 * eps)
    assert abs(float(loss0) - meta_loss(slow)) <= 1e-12
    dot = lambda g: sum(float(np.sum(host(a) * host(b))) for a, b in zip(tree_leaves(g), tree_leaves(V)))
    assert abs(fd - dot(grads)) <= 1e-6 * (1 + abs(fd))
    assert abs(fd - dot(first)) > 1e-4 * (1 + abs(fd))          # the second-order terms matter here
