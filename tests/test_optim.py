"""Optimisers against torch.optim on the same gradient sequence; schedules; clipping.

Tolerance for the torch comparisons: 1e-12 relative (max-abs error over max-abs value)
after 20 float64 steps. Both sides compute the same formulas in float64; only the order of
a few operations differs, which costs a few ulps (~1e-16) per step.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinynim.backend import to_numpy
from tinynim.optim import (SGD, Adam, clip_by_global_norm, clip_elementwise, cosine,
                           linear_warmup, warmup_cosine)
from tinynim.random import RNG
from tinynim.tree import leaves_with_paths, tree_map
from helpers import host

torch = pytest.importorskip("torch")

STEPS, TOL = 20, 1e-12
SHAPES = {"W": (3, 4), "blk": {"b": (4,), "s": ()}}


def _problem(seed):
    """Initial params and a sequence of STEPS gradient trees (host float64)."""
    rng = np.random.default_rng(seed)
    draw = lambda: _tree_of(lambda shape: rng.standard_normal(shape))
    return draw(), [draw() for _ in range(STEPS)]


def _tree_of(f, shapes=SHAPES):
    return {k: _tree_of(f, v) if isinstance(v, dict) else f(v) for k, v in shapes.items()}


def _run_tinynim(opt, p0, grads, backend):
    to_dev = lambda t: tree_map(lambda a: backend.asarray(a), t)
    params = to_dev(p0)
    state = opt.init(params)
    for g in grads:
        params, state = opt.update(to_dev(g), state, params)
    return tree_map(host, params), state


def _run_torch(make_opt, p0, grads, schedule=None):
    tensors = {path: torch.tensor(a, dtype=torch.float64, requires_grad=True)
               for path, a in leaves_with_paths(p0)}
    opt = make_opt(list(tensors.values()))
    for step, g in enumerate(grads):
        if schedule is not None:
            opt.param_groups[0]["lr"] = schedule(step)
        for path, gi in leaves_with_paths(g):
            tensors[path].grad = torch.tensor(gi, dtype=torch.float64)
        opt.step()
    return {path: t.detach().numpy() for path, t in tensors.items()}


def _assert_match(ours, ref):
    for path, a in leaves_with_paths(ours):
        err = np.max(np.abs(a - ref[path])) / np.max(np.abs(ref[path]))
        assert err <= TOL, f"{path}: relative error {err:.3g} > {TOL}"


@given(seed=st.integers(0, 2**16), lr=st.floats(1e-4, 1e-1), b1=st.floats(0.0, 0.99),
       b2=st.floats(0.9, 0.9999), eps=st.sampled_from([1e-8, 1e-3]),
       wd=st.sampled_from([0.0, 0.05]))
def test_adam_matches_torch(backend, seed, lr, b1, b2, eps, wd):
    """wd = 0: torch.optim.Adam; wd > 0: torch.optim.AdamW (decoupled weight decay)."""
    p0, grads = _problem(seed)
    ours, state = _run_tinynim(Adam(lr, b1, b2, eps, weight_decay=wd), p0, grads, backend)
    cls = torch.optim.AdamW if wd else torch.optim.Adam
    ref = _run_torch(lambda ps: cls(ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), p0, grads)
    _assert_match(ours, ref)
    assert state["step"] == STEPS


@given(seed=st.integers(0, 2**16), lr=st.floats(1e-3, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]))
def test_sgd_matches_torch(backend, seed, lr, momentum):
    p0, grads = _problem(seed)
    ours, _ = _run_tinynim(SGD(lr, momentum), p0, grads, backend)
    ref = _run_torch(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum), p0, grads)
    _assert_match(ours, ref)


def test_schedule_is_called_with_update_count(f64):
    """The schedule's lr(s) drives update s (s = 0, 1, ...), as torch with lr set per step."""
    schedule = warmup_cosine(0.05, 5, STEPS, final_lr=0.001)
    p0, grads = _problem(1)
    ours, _ = _run_tinynim(Adam(schedule, weight_decay=0.01), p0, grads, f64)
    ref = _run_torch(lambda ps: torch.optim.AdamW(ps, lr=1.0, weight_decay=0.01), p0, grads, schedule)
    _assert_match(ours, ref)


def test_clip_norm_option_equals_torch_clip_grad_norm(f64):
    """Adam(clip_norm=c) steps on gradients clipped like torch.nn.utils.clip_grad_norm_.
    torch adds 1e-6 to the norm in its coefficient, so the tolerance is 1e-6 relative."""
    p0, grads = _problem(2)
    ours, _ = _run_tinynim(SGD(0.1, 0.9, clip_norm=0.5), p0, grads, f64)
    tensors = [torch.tensor(a, requires_grad=True) for _, a in leaves_with_paths(p0)]
    opt = torch.optim.SGD(tensors, lr=0.1, momentum=0.9)
    for g in grads:
        for t, (_, gi) in zip(tensors, leaves_with_paths(g)):
            t.grad = torch.tensor(gi)
        torch.nn.utils.clip_grad_norm_(tensors, 0.5)
        opt.step()
    for (path, a), t in zip(leaves_with_paths(ours), tensors):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=path)


def test_update_never_mutates(f64):
    rng = RNG(0)
    params = {"W": rng.normal((2, 3)), "b": rng.normal(3)}
    grads = tree_map(lambda p: 2.0 * p + 1.0, params)
    for opt in (SGD(0.1, 0.9), Adam(0.1, weight_decay=0.1, clip_norm=0.1, clip_value=0.5)):
        state = opt.update(grads, opt.init(params), params)[1]      # non-zero moments
        before = [tree_map(lambda a: np.array(to_numpy(a)), t) for t in (params, grads, state)]
        opt.update(grads, state, params)
        after = [tree_map(lambda a: np.array(to_numpy(a)), t) for t in (params, grads, state)]
        for b, a in zip(before, after):
            for (path, x), (_, y) in zip(leaves_with_paths(b), leaves_with_paths(a)):
                np.testing.assert_array_equal(x, y, err_msg=f"{type(opt).__name__} mutated {path}")


def test_schedule_values():
    s = warmup_cosine(1.0, 10, 110, final_lr=0.1)
    assert s(0) == pytest.approx(0.1) and s(4) == pytest.approx(0.5) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5)               # half-way: cos(π/2) = 0
    assert s(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert s(110) == pytest.approx(0.1) and s(10_000) == pytest.approx(0.1)
    c = cosine(2.0, 100)
    assert c(0) == pytest.approx(2.0) and c(50) == pytest.approx(1.0) and c(100) == pytest.approx(0.0)
    w = linear_warmup(3.0, 3)
    assert [w(i) for i in range(5)] == pytest.approx([1.0, 2.0, 3.0, 3.0, 3.0])


def test_clip_by_global_norm(backend):
    g = {"a": backend.asarray(np.array([3.0, 0.0])), "b": backend.asarray(np.array([[4.0]]))}
    clipped, norm = clip_by_global_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(host(clipped["a"]), [0.6, 0.0], rtol=1e-15)
    np.testing.assert_allclose(host(clipped["b"]), [[0.8]], rtol=1e-15)
    same, norm = clip_by_global_norm(g, 10.0)
    assert norm == pytest.approx(5.0) and same is g


def test_clip_elementwise(backend):
    g = {"a": backend.asarray(np.array([-3.0, 0.2, 7.0]))}
    np.testing.assert_array_equal(host(clip_elementwise(g, 1.0)["a"]), [-1.0, 0.2, 1.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="clip_by_global_norm: max_norm must be > 0, got 0"):
        clip_by_global_norm({"a": np.ones(2)}, 0)
    with pytest.raises(ValueError, match="clip_elementwise: limit must be > 0, got -1"):
        clip_elementwise({"a": np.ones(2)}, -1)
    with pytest.raises(ValueError, match="need 0 <= warmup_steps < total_steps, got 10 and 10"):
        warmup_cosine(1.0, 10, 10)
    with pytest.raises(ValueError, match="linear_warmup: warmup_steps must be > 0, got 0"):
        linear_warmup(1.0, 0)
