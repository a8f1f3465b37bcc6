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
                           linear_cooldown, linear_warmup, warmup_cosine)
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
    d = linear_cooldown(2.0, 10, 4, final_lr=0.4)                # flat to step 6, then −0.4 a step
    assert [d(i) for i in range(12)] == pytest.approx([2.0] * 7 + [1.6, 1.2, 0.8, 0.4, 0.4])


def test_clip_by_global_norm(backend):
    g = {"a": backend.asarray(np.array([3.0, 0.0])), "b": backend.asarray(np.array([[4.0]]))}
    clipped, norm = clip_by_global_norm(g, 1.0)
    assert tuple(norm.shape) == () and float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(host(clipped["a"]), [0.6, 0.0], rtol=1e-15)
    np.testing.assert_allclose(host(clipped["b"]), [[0.8]], rtol=1e-15)
    same, norm = clip_by_global_norm(g, 10.0)
    assert float(norm) == pytest.approx(5.0)
    for path, a in leaves_with_paths(same):                     # below the threshold: same values
        assert to_numpy(a).tobytes() == to_numpy(g[path.split("/")[0]]).tobytes()


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
    with pytest.raises(ValueError, match="need 0 < cooldown_steps <= total_steps, got 11 and 10"):
        linear_cooldown(1.0, 10, 11)


def test_clip_order_element_wise_then_global_norm(backend):
    """Issue 19's pin: element-wise first, then global norm (the docstring's order).
    SGD(lr=1) from 0 makes the update −clip(g). By hand:
    g = [3, 0.1, −0.2], clip_value 0.5 → [0.5, 0.1, −0.2], norm √0.3 ≈ 0.548 < 1: update
    [−0.5, −0.1, 0.2] (the swapped order gives [−0.5, −0.033, 0.066]);
    g = [3, 2, −2], clip_value 0.5 → [0.5, 0.5, −0.5], norm √0.75 > 0.5: × 0.5/√0.75."""
    zero = {"w": backend.asarray(np.zeros(3))}
    opt = SGD(1.0, clip_norm=1.0, clip_value=0.5)
    new, _ = opt.update({"w": backend.asarray(np.array([3.0, 0.1, -0.2]))}, opt.init(zero), zero)
    np.testing.assert_array_equal(host(new["w"]), [-0.5, -0.1, 0.2])
    opt = SGD(1.0, clip_norm=0.5, clip_value=0.5)
    new, _ = opt.update({"w": backend.asarray(np.array([3.0, 2.0, -2.0]))}, opt.init(zero), zero)
    c = 0.5 * 0.5 / math.sqrt(0.75)
    np.testing.assert_allclose(host(new["w"]), [-c, -c, c], rtol=1e-15)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, 0.9), lambda: Adam(0.1)], ids=["SGD", "Adam"])
def test_gradient_must_match_the_parameter(backend, make):
    """A (16,) gradient for a (16, 16) parameter was broadcast into it; a float32 gradient
    would mix dtypes. Both are errors naming the optimiser, the path and both shapes/dtypes."""
    opt = make()
    name = type(opt).__name__
    params = {"lin": {"W": backend.asarray(np.ones((16, 16))), "b": backend.asarray(np.ones((16, 16)))}}
    state = opt.init(params)
    dt = backend.asarray(np.ones(1)).dtype
    bad = {"lin": {"W": backend.asarray(np.ones((16, 16))), "b": backend.asarray(np.ones(16))}}
    with pytest.raises(ValueError, match=rf"^{name}\.update: the gradient of lin/b has shape \(16,\) and dtype "
                                         rf"{dt}, but the parameter has shape \(16, 16\) and dtype {dt}$"):
        opt.update(bad, state, params)
    bad = {"lin": {"W": backend.asarray(np.ones((16, 16)), "float32"), "b": params["lin"]["b"]}}
    with pytest.raises(ValueError, match=rf"^{name}\.update: the gradient of lin/W has shape \(16, 16\) and "
                                         r"dtype \S*float32, but the parameter has shape \(16, 16\) and dtype \S*float64$"):
        opt.update(bad, state, params)
    with pytest.raises(ValueError, match=rf"^{name}\.update: gradient and parameter trees differ: only in the "
                                         r"gradient \['lin/c'\], only in the parameters \['lin/b'\]$"):
        opt.update({"lin": {"W": params["lin"]["W"], "c": params["lin"]["b"]}}, state, params)


@pytest.mark.parametrize("make, message", [
    (lambda: Adam(0.1, b1=1.0), r"Adam: b1 must lie in \[0, 1\), got 1.0"),
    (lambda: Adam(0.1, b2=1.0), r"Adam: b2 must lie in \[0, 1\), got 1.0"),
    (lambda: Adam(0.1, b1=-0.1), r"Adam: b1 must lie in \[0, 1\), got -0.1"),
    (lambda: Adam(-0.1), r"Adam: lr must be a finite number >= 0 or a schedule step -> lr, got -0.1"),
    (lambda: SGD(float("nan")), r"SGD: lr must be a finite number >= 0 or a schedule step -> lr, got nan"),
    (lambda: SGD("0.1"), r"SGD: lr must be a finite number >= 0 or a schedule step -> lr, got '0.1'"),
    (lambda: Adam(0.1, eps=0.0), r"Adam: eps must be a finite number > 0, got 0.0"),
    (lambda: Adam(0.1, eps=-1e-8), r"Adam: eps must be a finite number > 0, got -1e-08"),
    (lambda: Adam(0.1, weight_decay=-0.01), r"Adam: weight_decay must be a finite number >= 0, got -0.01"),
    (lambda: SGD(0.1, momentum=-0.5), r"SGD: momentum must be a finite number >= 0, got -0.5"),
    (lambda: SGD(0.1, clip_norm=0), r"SGD: clip_norm must be a finite number > 0 or None, got 0"),
    (lambda: Adam(0.1, clip_value=float("inf")), r"Adam: clip_value must be a finite number > 0 or None, got inf"),
    (lambda: warmup_cosine(-1.0, 1, 10), r"warmup_cosine: peak_lr must be a finite number >= 0, got -1.0"),
    (lambda: cosine(1.0, 10, final_lr=-0.1), r"warmup_cosine: final_lr must be a finite number >= 0, got -0.1"),
    (lambda: linear_warmup(float("inf"), 3), r"linear_warmup: peak_lr must be a finite number >= 0, got inf"),
])
def test_invalid_hyperparameters_fail_at_construction(make, message):
    """Adam(b1=1) / Adam(b2=1) divided by a zero bias correction (NaN); the others are
    invalid in torch.optim too, or meaningless (a negative lr ascends)."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        make()


def test_schedules_reject_negative_steps_and_bad_values():
    for name, s in [("warmup_cosine", warmup_cosine(1.0, 2, 10)), ("warmup_cosine", cosine(1.0, 10)),
                    ("linear_warmup", linear_warmup(1.0, 3))]:
        with pytest.raises(ValueError, match=rf"^{name}: step \(the number of updates done\) must be >= 0, got -1$"):
            s(-1)
    params = {"w": np.zeros(2)}
    opt = SGD(lambda step: 0.1 - 0.1 * step)                    # negative from step 2 on
    state = opt.init(params)
    for _ in range(2):
        params, state = opt.update({"w": np.ones(2)}, state, params)
    with pytest.raises(ValueError, match=r"^SGD: the schedule must give a finite lr >= 0, at step 2 it gave, got -0\.1"):
        opt.update({"w": np.ones(2)}, state, params)


def test_updates_trace_under_jax_jit():
    """SGD and Adam updates with both clippings compile with jax.jit (the step is a Python
    int, closed over) and equal numpy's updates to float32 rounding."""
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    p = {"W": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    g = {k: (5 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in p.items()}
    for opt in (SGD(0.1, 0.9, clip_norm=1.0, clip_value=2.0), Adam(0.01, weight_decay=0.1, clip_norm=1.0, clip_value=2.0)):
        state = opt.update(g, opt.init(p), p)[1]                          # step 1, non-zero moments
        arrays = {k: v for k, v in state.items() if k != "step"}
        jitted = jax.jit(lambda g, arrays, p: opt.update(g, {"step": 1, **arrays}, p)[0])
        ours = jitted(*(tree_map(jax.numpy.asarray, t) for t in (g, arrays, p)))
        ref = opt.update(g, state, p)[0]
        for k in p:
            np.testing.assert_allclose(np.asarray(ours[k]), ref[k], rtol=1e-5, atol=1e-6, err_msg=type(opt).__name__)
