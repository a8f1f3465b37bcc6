"""Exact properties of the associative-recall model of P8 (arXiv:2408.10818; model and loss
ours, see tasks/associative_recall.py): its forward is the gated linear-attention sum written
out key by key, a population forward equals its members', the recall loss is 1 − Π σ(v y)
and stays finite at extreme logits, every hand gradient matches finite differences and torch
autograd, and a hand-built model realises the randomized optimum M/N. Float64.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tasks.associative_recall import (RecallRisk, RecallRun, SeededRecall, binary_values, population_risk,
                                      population_risk_fast,
                                      recall_failure, recall_logits, recall_metrics)
from tinynim.backend import asarray
from tinynim.gradcheck import numerical_grad
from tinynim.random import RNG
from helpers import HAS_TORCH, TORCH_TOL, assert_close, assert_gradients, host

EXACT = 1e-12
seeds = st.integers(0, 2**16)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@given(N=st.integers(2, 6), M=st.integers(1, 3), d=st.integers(1, 4), B=st.integers(1, 3), seed=seeds)
def test_logits_are_the_gated_attention_sum(backend, N, M, d, B, seed):
    """y_i = Σ_t g_i g_t (c_iᵀ a_t) v_t with g_t = σ(u_tᵀ r + b_t), key by key on the host
    (rounding only: EXACT relative)."""
    model = SeededRecall(N, M, d, 3)
    params = model.init(RNG(seed), u_std=1.0)
    params["b"] = RNG(seed + 1).normal((N,))
    rng = np.random.default_rng(seed)
    V, r = rng.standard_normal((B, N, d)), rng.standard_normal((B, 3))
    A, Q, U, b = (host(params[k]) for k in ("A", "Q", "U", "b"))
    ref = np.zeros((B, N, d))
    for n in range(B):
        g = _sigmoid(U @ r[n] + b)
        for i in range(N):
            for t in range(N):
                ref[n, i] += g[i] * g[t] * (Q[:, i] @ A[:, t]) * V[n, t]
    assert_close(model(params, (asarray(V), asarray(r))), ref, EXACT, "y vs the attention sum")


@given(P=st.integers(1, 3), seed=seeds)
def test_population_forward_and_risk_equal_the_members(backend, P, seed):
    """Leaves with a leading population axis: the forward and R̂_{q,m} of each member equal
    those of the member alone (the ES path shares the layer's code)."""
    model = SeededRecall(5, 2, 3, 4)
    members = [model.init(RNG(seed + k), u_std=1.0) for k in range(P)]
    pop = {k: backend.xp.stack([p[k] for p in members]) for k in members[0]}
    rng = RNG(seed + 99)
    values, r = binary_values(rng, (3, 5, 3)), rng.normal((4, 4))
    risk = RecallRisk(model)
    got = host(population_risk(pop, values, r, 16.0))
    for k, p in enumerate(members):
        assert_close(recall_logits(pop, values, r[:3, :])[0][k, ...], model(p, (values, r[:3, :])), EXACT, "member forward")
        assert_close(got[k], risk(p, values, seeds=r, q=16.0), EXACT, "member risk")


@given(P=st.integers(1, 3), B=st.integers(1, 4), m=st.integers(1, 5), d=st.integers(1, 12), scale=st.sampled_from([0.3, 1.0, 5.0]),
       seed=seeds)
def test_population_risk_fast_equals_the_plain_path(backend, P, B, m, d, scale, seed):
    """The fast ES path (no tiled batch, one GEMM, P as a product of 1 + tanh) equals the plain
    path on random populations, from small logits to saturated ones (scale 5: P ≈ 0 or 1).
    Tolerance 1e-12 absolute on R̂ ∈ [0, 1]: 1 − P instead of −expm1(log P) costs one rounding
    of 1 (1.1e-16) per loss; the rest is the same sums in another order."""
    model = SeededRecall(5, 2, d, 4)
    members = [model.init(RNG(seed + k), u_std=1.0) for k in range(P)]
    pop = {k: backend.xp.stack([scale * p[k] for p in members]) for k in members[0]}
    rng = RNG(seed + 99)
    values, r = binary_values(rng, (B, 5, d)), rng.normal((m, 4))
    for q in (1.0, 16.0):
        fast, plain = host(population_risk_fast(pop, values, r, q)), host(population_risk(pop, values, r, q))
        assert np.max(np.abs(fast - plain)) <= 1e-12, (fast, plain)


@given(d=st.integers(1, 12), seed=seeds)
def test_recall_failure_is_one_minus_the_exact_recall_probability(backend, d, seed):
    """ℓ = 1 − Π_k σ(v_k y_k) on moderate logits (EXACT); finite with exact limits at
    |y| = 10³ (P = 1 or 0); both partial derivatives vs central differences and torch
    autograd of the same code (TORCH_TOL). FD tolerance 1e-6, not FD_TOL: the derivatives
    carry the factor P (≈ 0.8^d here), while the central difference's rounding noise is
    absolute, u·Σℓ/eps ≈ 3e-10 for Σℓ ≈ 3, i.e. up to ~1e-7 relative."""
    rng = np.random.default_rng(seed)
    v = np.sign(rng.standard_normal((3, d)))
    y = 1.5 * v + rng.standard_normal((3, d))             # mostly right bits: P not astronomically small
    fail, dy, dv = recall_failure(asarray(y), asarray(v))
    assert_close(fail, 1 - np.prod(_sigmoid(v * y), axis=-1), EXACT, "1 − P")
    big, _, _ = recall_failure(asarray(1e3 * v), asarray(v))
    wrong, dyw, _ = recall_failure(asarray(-1e3 * v), asarray(v))
    assert np.all(host(big) == 0) and np.all(host(wrong) == 1) and np.all(np.isfinite(host(dyw)))
    fd_y = numerical_grad(lambda a: float(np.sum(host(recall_failure(asarray(a), asarray(v))[0]))), y)
    fd_v = numerical_grad(lambda a: float(np.sum(host(recall_failure(asarray(y), asarray(a))[0]))), v)
    assert_close(dy, fd_y, 1e-6, "dℓ/dy vs FD")
    assert_close(dv, fd_v, 1e-6, "dℓ/dv vs FD")
    if HAS_TORCH:
        import torch
        ty, tv = torch.tensor(y, requires_grad=True), torch.tensor(v, requires_grad=True)
        recall_failure(ty, tv)[0].sum().backward()
        assert_close(dy, ty.grad.numpy(), TORCH_TOL, "dℓ/dy vs torch")
        assert_close(dv, tv.grad.numpy(), TORCH_TOL, "dℓ/dv vs torch")


def test_recall_layers_gradients(backend):
    """SeededRecall and the whole objective RecallRisk (model, recall loss, power mean; q = 16,
    q = 1, q = ∞): FD + torch autograd (tests/helpers.py), at a seed-dependent point."""
    for cls in (SeededRecall, RecallRisk):
        for _, (layer, x, kw) in cls.examples(RNG(0)).items():
            params = layer.init(RNG(1), u_std=1.0)
            params["b"] = RNG(2).normal((5,))
            assert_gradients(layer, params, x, kw)
    layer, x, kw = RecallRisk.examples(RNG(3))["q16"]
    assert_gradients(layer, layer.init(RNG(4), u_std=1.0), x, dict(kw, q=math.inf))


def test_hand_built_randomized_memory_reaches_m_over_n(f64):
    """The construction the training should find (N = 2M): keys 2s and 2s + 1 share the
    direction e_s, and opposite seed scores ±κ w_sᵀr pick one of the two per seed (κ = 50).
    Each key is then recalled with probability ½ − (the chance of a seed near the gate
    boundary): every recall within 0.03 of M/N = ½ (10⁴ draws: s.e. 0.005, so 6 s.e.; the
    boundary costs ≈ 0.003). Storing keys 0..M−1 for every seed instead: worst 0, mean M/N."""
    N, M, d, k = 8, 4, 12, 8
    run = RecallRun(q=16.0, m=16, N=N, M=M, d_value=d, d_seed=k)
    model = run.model()
    rng = np.random.default_rng(0)
    E = np.repeat(np.eye(M), 2, axis=1) * 3.0                                   # (M, N): key t -> slot t // 2
    w = rng.standard_normal((M, k))
    U = 50 * np.stack([w[t // 2] * (1 if t % 2 == 0 else -1) for t in range(N)])
    params = {"A": asarray(E), "Q": asarray(E), "U": asarray(U), "b": asarray(np.zeros(N))}
    m = recall_metrics(model, params, run, seed=1)
    assert np.all(np.abs(m["recall"] - M / N) <= 0.03), m["recall"]
    assert m["seeded_keys"] == N and m["worst_recall"] <= m["recall_p5"] <= m["mean_recall"]
    assert abs(m["p5_over_optimum"] - 1) <= 0.06
    fixed = dict(params, U=asarray(np.zeros((N, k))), b=asarray(np.where(np.arange(N) < M, 20.0, -20.0)),
                 A=asarray(np.eye(M, N) * 3.0), Q=asarray(np.eye(M, N) * 3.0))
    m = recall_metrics(model, fixed, run, seed=1)
    assert m["worst_recall"] == 0.0 and abs(m["mean_recall"] - M / N) <= 1e-12 and m["seeded_keys"] == 0
    assert m["recall_p5"] == 0.0 and m["p5_over_optimum"] == 0.0          # 4 of 8 keys never recalled


def test_recall_bad_input(f64):
    model = SeededRecall(5, 2, 3, 4)
    params = model.init(RNG(0))
    with pytest.raises(ValueError, match=r"SeededRecall: expected values of shape \(B, 5, 3\), got \(2, 4, 3\)"):
        model.forward(params, (RNG(1).normal((2, 4, 3)), RNG(2).normal((2, 4))))
    with pytest.raises(ValueError, match=r"SeededRecall: expected seeds of shape \(2, 4\), got \(2, 3\)"):
        model.forward(params, (RNG(1).normal((2, 5, 3)), RNG(2).normal((2, 3))))
    with pytest.raises(TypeError, match=r"SeededRecall: expected x = \(values, seeds\), got"):
        model.forward(params, RNG(1).normal((2, 5, 3)))
    with pytest.raises(ValueError, match=r"RecallRisk: expected seeds of shape \(m, d_seed\), got \(4,\)"):
        RecallRisk(model).forward(params, RNG(1).normal((2, 5, 3)), seeds=RNG(2).normal((4,)))
    with pytest.raises(ValueError, match=r"SeededRecall: memory must be a positive integer, got 0"):
        SeededRecall(5, 0, 3, 4)
