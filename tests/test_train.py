"""fit: log format, history, equality with a hand-written loop, NaN/inf guard, eval hook,
checkpoint/resume (bit-exact)."""
import math
import re

import array_api_compat

import numpy as np
import pytest

from tinynim.backend import get_backend, namespace
from tinynim.losses import mse
from tinynim.checkpoint import CheckpointError, exists, load
from tinynim.optim import SGD, Adam, warmup_cosine
from tinynim.random import RNG
from tinynim.train import NonFiniteError, check_finite, fit
from tinynim.tree import leaves_with_paths, set_leaf, tree_map
from helpers import host

LINE = re.compile(r"^step (\d+)/(\d+) \| loss (\S+) \| (\d+\.\d) ms/step$")


def _problem(seed=0, n=16, d=3):
    """Linear model x W + b on noisy linear targets, on the active backend.
    Batches are keyed by step, so any run sees the same batch at the same step."""
    rng = RNG(seed)
    W_true = rng.normal((d, 2), host=True)
    params = {"lin": {"W": rng.normal((d, 2), std=0.1), "b": rng.normal(2, std=0.1)}}

    def data(step):
        g = np.random.default_rng([seed, step])
        x = g.standard_normal((n, d))
        y = x @ W_true + 0.1 * g.standard_normal((n, 2))
        return get_backend().asarray(x), get_backend().asarray(y)

    def loss_and_grads(p, batch, step):
        x, y = batch
        value, dpred = mse(x @ p["lin"]["W"] + p["lin"]["b"], y)           # dpred: (n, 2)
        return value, {"lin": {"W": x.T @ dpred, "b": namespace(dpred).sum(dpred, axis=0)}}
    return params, data, loss_and_grads


def _bits(tree):
    return [(p, host(a).tobytes()) for p, a in leaves_with_paths(tree)]


def test_fit_equals_hand_written_loop_and_logs(backend):
    params, data, loss_and_grads = _problem()
    opt = Adam(warmup_cosine(0.05, 5, 30))
    lines = []
    out, history = fit(loss_and_grads, params, opt, steps=30, data=data, log_every=8, log=lines.append)
    p, state, losses = params, opt.init(params), []
    for step in range(30):
        loss, grads = loss_and_grads(p, data(step), step)
        losses.append(float(loss))
        p, state = opt.update(grads, state, p)
    assert _bits(out) == _bits(p)
    assert history["step"] == list(range(30)) and history["loss"] == losses
    assert len(history["time"]) == 30 and history["time"] == sorted(history["time"])
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(int(m[1]), int(m[2])) for m in parsed] == [(8, 30), (16, 30), (24, 30), (30, 30)]
    windows = [losses[0:8], losses[8:16], losses[16:24], losses[24:30]]
    assert [m[3] for m in parsed] == [f"{sum(w) / len(w):.4g}" for w in windows]
    assert losses[-1] < 0.2 * losses[0]                        # it does train


def test_log_silence_and_format_example(f64):
    params, data, loss_and_grads = _problem()
    lines = []
    fit(loss_and_grads, params, Adam(0.01), steps=5, data=data, log_every=0, log=lines.append)
    assert lines == []
    fit(lambda p, b, s: (0.0312, tree_map(lambda a: 0 * a, p)), params, Adam(0.01), steps=200,
        log_every=200, log=lines.append)
    assert re.fullmatch(r"step 200/200 \| loss 0\.0312 \| \d+\.\d ms/step", lines[0])


def _poisoned(loss_and_grads, bad_step, path=None, value=float("nan")):
    """Inject `value` into the loss (path None) or into one entry of the gradient at `path`."""
    def wrapped(p, batch, step):
        loss, grads = loss_and_grads(p, batch, step)
        if step != bad_step:
            return loss, grads
        if path is None:
            return value, grads
        g = grads["lin"][path.split("/")[-1]]
        xp = namespace(g)
        mask = xp.reshape(xp.arange(math.prod(g.shape), device=array_api_compat.device(g)), g.shape) == 1
        return loss, set_leaf(grads, path, xp.where(mask, value, g))
    return wrapped


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradient_names_step_and_path(backend, value):
    params, data, loss_and_grads = _problem()
    with pytest.raises(NonFiniteError, match=r"^step 7: non-finite gradient in lin/W \(loss \d\.\d+\)$") as err:
        fit(_poisoned(loss_and_grads, 7, "lin/W", value), params, Adam(0.01), steps=20, data=data, log=None)
    assert err.value.step == 7 and err.value.paths == ["lin/W"]
    assert isinstance(err.value, FloatingPointError)


def test_non_finite_loss(f64):
    params, data, loss_and_grads = _problem()
    with pytest.raises(NonFiniteError, match=r"^step 3: the loss is non-finite \(inf\)$"):
        fit(_poisoned(loss_and_grads, 3, None, float("inf")), params, Adam(0.01), steps=20, data=data, log=None)


def test_check_finite_lists_every_bad_leaf(backend):
    g = {"a": backend.asarray(np.array([1.0, np.nan])), "b": {"c": backend.asarray(np.ones(2)),
                                                              "d": backend.asarray(np.array([np.inf]))}}
    with pytest.raises(NonFiniteError, match=r"^step 0: non-finite gradient in a, b/d \(loss 1\)$"):
        check_finite(1.0, g, 0)
    check_finite(1.0, {"a": backend.asarray(np.full(3, 1e308))}, 0)    # huge but finite: no overflow


def test_eval_fn(f64):
    params, data, loss_and_grads = _problem()
    lines, seen = [], []

    def eval_fn(p, done):
        seen.append(done)
        return {"w_norm": float(np.linalg.norm(p["lin"]["W"])), "n": done}
    _, history = fit(loss_and_grads, params, Adam(0.01), steps=12, data=data, log_every=6,
                     log=lines.append, eval_fn=eval_fn, eval_every=3)
    assert seen == [3, 6, 9, 12] and history["eval_step"] == seen and history["n"] == [3.0, 6.0, 9.0, 12.0]
    assert len(history["w_norm"]) == 4
    assert re.fullmatch(r"step 6/12 \| loss \S+ \| \d+\.\d ms/step \| w_norm \S+ \| n 6", lines[0])
    with pytest.raises(ValueError, match=r"fit: eval_fn metric names \['loss'\] clash with the history keys"):
        fit(loss_and_grads, params, Adam(0.01), steps=3, data=data, log=None,
            eval_fn=lambda p, s: {"loss": 1.0}, eval_every=1)


def test_resume_is_bit_exact(backend, tmp_path):
    """2 × 50 steps with a checkpoint in between = 100 steps straight (same bits)."""
    params, data, loss_and_grads = _problem(seed=3)
    opt = Adam(warmup_cosine(0.05, 10, 100), weight_decay=0.01, clip_norm=1.0)
    straight, h_straight = fit(loss_and_grads, params, opt, steps=100, data=data, log=None)
    ck = tmp_path / "run"
    fit(loss_and_grads, params, opt, steps=50, data=data, log=None, checkpoint_path=ck, checkpoint_every=20)
    assert load(ck)[1]["step"] == 50
    resumed, h_resumed = fit(loss_and_grads, params, opt, steps=100, data=data, log=None,
                             checkpoint_path=ck, resume=True)
    assert _bits(resumed) == _bits(straight)
    assert type(resumed["lin"]["W"]) is type(params["lin"]["W"])
    assert h_resumed["step"] == h_straight["step"] and h_resumed["loss"] == h_straight["loss"]
    assert len(h_resumed["time"]) == 100


def test_resume_without_checkpoint_starts_fresh(f64, tmp_path):
    params, data, loss_and_grads = _problem()
    a, _ = fit(loss_and_grads, params, Adam(0.01), steps=10, data=data, log=None)
    b, h = fit(loss_and_grads, params, Adam(0.01), steps=10, data=data, log=None,
               checkpoint_path=tmp_path / "new.npz", resume=True)
    assert _bits(a) == _bits(b) and h["step"] == list(range(10))
    assert exists(tmp_path / "new") and exists(tmp_path / "new.npz")
    c, h = fit(loss_and_grads, params, Adam(0.01), steps=10, data=data, log=None,
               checkpoint_path=tmp_path / "new.npz", resume=True)          # already done: no step
    assert _bits(c) == _bits(a) and h["step"] == list(range(10))


def test_fixed_batch(f64):
    params, data, loss_and_grads = _problem()
    a, _ = fit(loss_and_grads, params, Adam(0.01), steps=5, data=data(0), log=None)
    b, _ = fit(loss_and_grads, params, Adam(0.01), steps=5, data=lambda step: data(0), log=None)
    assert _bits(a) == _bits(b)


def test_resume_with_another_model_or_optimizer_is_an_error(f64, tmp_path):
    params, data, loss_and_grads = _problem()
    fit(loss_and_grads, params, Adam(0.01), steps=2, data=data, log=None, checkpoint_path=tmp_path / "ck")
    wider = {"lin": {"W": RNG(0).normal((4, 2)), "b": params["lin"]["b"]}}
    with pytest.raises(CheckpointError, match=r"ck: the saved params does not match the given one; "
                                              r"differing leaves \(path, shape, dtype\): \[\('lin/W', \(3, 2\), 'float64'\), "
                                              r"\('lin/W', \(4, 2\), 'float64'\)\]"):
        fit(loss_and_grads, wider, Adam(0.01), steps=4, data=data, log=None, checkpoint_path=tmp_path / "ck", resume=True)
    with pytest.raises(CheckpointError, match=r"the saved optimiser state does not match the given one; "
                                              r"differing leaves \(path, shape, dtype\): \[\('m/lin/W', \(3, 2\), 'float64'\)"):
        fit(loss_and_grads, params, SGD(0.01, 0.9), steps=4, data=data, log=None, checkpoint_path=tmp_path / "ck",
            resume=True)


def test_float64_data_with_float32_params_is_an_error_not_a_promotion(f64):
    """NumPy promoted params and optimiser state to float64 (each step then ran in float64)
    silently. The optimiser now names the leaf and both dtypes at the first update. (On
    torch the forward's matmul already refuses mixed dtypes.)"""
    backend = f64
    params, data, loss_and_grads = _problem()
    params32 = tree_map(lambda a: backend.asarray(host(a), "float32"), params)
    dt64, dt32 = backend.asarray(np.ones(1)).dtype, params32["lin"]["W"].dtype
    with pytest.raises(ValueError, match=rf"^Adam\.update: the gradient of lin/W has shape \(3, 2\) and dtype "
                                         rf"{dt64}, but the parameter has shape \(3, 2\) and dtype {dt32}$"):
        fit(loss_and_grads, params32, Adam(0.01), steps=3, data=data, log=None)
    data32 = lambda step: tuple(backend.asarray(host(a), "float32") for a in data(step))
    out, _ = fit(loss_and_grads, params32, Adam(0.01), steps=3, data=data32, log=None)
    assert out["lin"]["W"].dtype == dt32                                   # matching dtypes: fine


def test_a_last_update_to_non_finite_params_is_caught(backend):
    """The loss and gradients of the last step are finite (gradient entries 1e308), but its
    update overflows (lr 10: 1e309 = inf): no later step would notice, so fit checks the
    params after the last update, before saving them. (NumPy's overflow warning is
    silenced: the overflow is the point.)"""
    params, data, loss_and_grads = _problem()

    def last_step_huge(p, batch, step):
        loss, grads = loss_and_grads(p, batch, step)
        return loss, tree_map(lambda g: 0 * g + 1e308, grads) if step == 4 else grads
    opt = SGD(lambda step: 1e-3 if step < 4 else 10.0)
    with np.errstate(over="ignore"), pytest.raises(NonFiniteError, match=r"^step 4: the last update made non-finite parameters in "
                                             r"lin/W, lin/b \(loss \d\.\d+\)$") as err:
        fit(last_step_huge, params, opt, steps=5, data=data, log=None)
    assert err.value.step == 4 and err.value.paths == ["lin/W", "lin/b"]


def test_resuming_a_checkpoint_beyond_steps_is_an_error(f64, tmp_path):
    """A step-40 checkpoint resumed with steps=20 returned the step-40 params silently."""
    params, data, loss_and_grads = _problem()
    fit(loss_and_grads, params, Adam(0.01), steps=40, data=data, log=None, checkpoint_path=tmp_path / "ck")
    with pytest.raises(ValueError, match=rf"^fit: the checkpoint {tmp_path / 'ck'} is at step 40, beyond "
                                         r"steps=20; ask for steps >= 40, or use another checkpoint_path$"):
        fit(loss_and_grads, params, Adam(0.01), steps=20, data=data, log=None, checkpoint_path=tmp_path / "ck",
            resume=True)


def test_resume_refuses_another_dtype_or_a_foreign_checkpoint(backend, tmp_path):
    """A float64 checkpoint resumed into float32 params was cast silently (no bit-exact
    resume); a checkpoint not written by fit raised a bare KeyError."""
    params, data, loss_and_grads = _problem()
    fit(loss_and_grads, params, Adam(0.01), steps=2, data=data, log=None, checkpoint_path=tmp_path / "ck")
    params32 = tree_map(lambda a: backend.asarray(host(a), "float32"), params)
    with pytest.raises(CheckpointError, match=r"the saved params does not match the given one; differing leaves "
                                              r"\(path, shape, dtype\): \[\('lin/W', \(3, 2\), 'float32'\), "
                                              r"\('lin/W', \(3, 2\), 'float64'\)"):
        fit(loss_and_grads, params32, Adam(0.01), steps=4, data=data, log=None, checkpoint_path=tmp_path / "ck",
            resume=True)
    from tinynim.checkpoint import save
    save(tmp_path / "other", {"params": params}, metadata={"step": 1})
    with pytest.raises(CheckpointError, match=rf"^checkpoint {tmp_path / 'other'}: not written by fit, it lacks "
                                              r"opt_state, metadata history$"):
        fit(loss_and_grads, params, Adam(0.01), steps=4, data=data, log=None, checkpoint_path=tmp_path / "other",
            resume=True)
