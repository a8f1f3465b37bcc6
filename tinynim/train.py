"""The training loop: one optimiser step per iteration, a log line every k steps, a history,
a guard against NaN/inf and resumable checkpoints.

    def loss_and_grads(params, batch, step):           # your forward + hand-written backward
        ...
        return loss, grads
    params, history = fit(loss_and_grads, params, Adam(1e-3), steps=1000,
                          data=lambda step: make_batch(step))

Step s (0-based) draws ``data(s)``, computes the loss and gradients at the params after s
updates, and applies update s. Every `log_every` steps one line goes to `log`::

    step 200/1000 | loss 0.0312 | 3.1 ms/step

(the loss is the mean over the steps since the previous line; time excludes evaluation).
``history`` holds "step", "loss" and "time" (seconds since the run began) for every step,
and, when ``eval_fn(params, n_done) -> dict`` runs every `eval_every` steps, "eval_step"
plus one list per metric (appended to that step's log line, if it has one). A non-finite
loss or gradient stops the run with :class:`NonFiniteError` naming the step and the
offending leaves, before the update that would spread it; after the last update the
parameters themselves are checked (no later step would notice). The optimiser refuses
gradients whose shape or dtype differ from their parameter's (float64 data with float32
params is an error naming the leaf and both dtypes, not a silent promotion to float64).

With `checkpoint_path`, params, optimiser state, step and history are saved every
`checkpoint_every` steps and at the end; ``resume=True`` continues from that checkpoint
when it exists (with a batch source keyed by step, 2×50 resumed steps = 100 straight); a
checkpoint beyond `steps` is an error, not a silent return of its later parameters.

``compile=True`` runs forward, backward and update of each step as one compiled function
(:func:`tinynim.compile`: ``jax.jit`` on the jax backend, ``torch.compile`` on torch; on
other backends eagerly, with a :class:`tinynim.CompileWarning`). The step number then
reaches `loss_and_grads` as a traced integer on jax: it must not branch on it in Python.
The guards above work as without: the compiled function returns the gradients, which are
checked before the updated parameters are adopted.
"""
from __future__ import annotations

import functools
import math
import operator
import time

import array_api_compat

from tinynim import checkpoint
from tinynim.backend import namespace
from tinynim.compile import compile as compile_step
from tinynim.threads import limited
from tinynim.tree import leaves_with_paths, tree_map

BASE_KEYS = ("step", "loss", "time")


class NonFiniteError(FloatingPointError):
    """A NaN or infinite loss or gradient; `.step` and `.paths` (leaves with bad gradients)."""

    def __init__(self, message, step, paths=()):
        super().__init__(message)
        self.step, self.paths = step, list(paths)


def check_finite(loss: float, grads, step: int):
    """Raise :class:`NonFiniteError` if `loss` or any gradient entry is NaN or ±inf."""
    if not math.isfinite(loss):
        raise NonFiniteError(f"step {step}: the loss is non-finite ({loss})", step)
    bad = _non_finite_paths(grads)
    if bad:
        raise NonFiniteError(f"step {step}: non-finite gradient in {', '.join(bad)} (loss {loss:.4g})",
                             step, bad)


def _non_finite_paths(tree) -> list:
    """Paths of the leaves of `tree` holding a NaN or ±inf (one device sync when there are none)."""
    finite = []
    for path, a in leaves_with_paths(tree):
        xp = namespace(a)
        finite.append((path, xp.all(xp.isfinite(a))))                 # 0-d bool arrays
    if bool(functools.reduce(operator.and_, [ok for _, ok in finite], True)):
        return []
    return [p for p, ok in finite if not bool(ok)]


def _like(template, saved, what, path):
    """Put the loaded tree `saved` (same paths, shapes and dtypes: no silent cast) in the
    namespace and device of `template`."""
    def specs(tree):
        return {(p, tuple(a.shape), str(a.dtype).rsplit(".", 1)[-1])      # "torch.float32" -> "float32"
                for p, a in leaves_with_paths(tree) if hasattr(a, "shape")}
    diff = sorted(specs(template) ^ specs(saved))
    if diff:
        raise checkpoint.CheckpointError(f"checkpoint {path}: the saved {what} does not match the "
                                         f"given one; differing leaves (path, shape, dtype): {diff}")

    def convert(ref, value):
        if not hasattr(ref, "shape"):
            return value
        return namespace(ref).asarray(value, dtype=ref.dtype, device=array_api_compat.device(ref))
    return tree_map(convert, template, saved)


def _resume(path, params, optimizer):
    tree, meta = checkpoint.load(path, backend="numpy")
    missing = [k for k in ("params", "opt_state") if not (isinstance(tree, dict) and k in tree)]
    missing += [f"metadata {k}" for k in ("step", "history") if not (isinstance(meta, dict) and k in meta)]
    if missing:
        raise checkpoint.CheckpointError(f"checkpoint {path}: not written by fit, it lacks {', '.join(missing)}")
    params = _like(params, tree["params"], "params", path)
    state = _like(optimizer.init(params), tree["opt_state"], "optimiser state", path)
    return params, state, meta["step"], meta["history"]


def supervised(model, loss=None, **forward_kw):
    """``loss_and_grads(params, (x, target), step) -> (loss, grads)`` for :func:`fit`: the
    model's forward (with `forward_kw`), ``loss(out, target) -> (value, dout)`` (default
    :func:`tinynim.losses.mse`), then the model's backward with ``need_dx=False`` (a training
    step needs no gradient w.r.t. its data; see :mod:`tinynim.nn.base`)."""
    if loss is None:
        from tinynim.losses import mse as loss

    def loss_and_grads(params, batch, step):
        x, target = batch
        out, cache = model.forward(params, x, **forward_kw)
        value, dout = loss(out, target)
        return value, model.backward(params, cache, dout, need_dx=False)[1]   # no gradient w.r.t. the data
    return loss_and_grads


def _advance(loss_and_grads, optimizer, compile):
    """``advance(params, state, batch, step) -> (params, state, loss)``: one guarded update.
    Eager: loss and gradients, the guard, then the update (never computed from a non-finite
    gradient). Compiled: one function computes all three and returns the gradients too; the
    guard checks them before the new params are adopted."""
    def eager(params, state, batch, step):
        loss, grads = loss_and_grads(params, batch, step)
        loss = float(loss)
        check_finite(loss, grads, step)
        return *optimizer.update(grads, state, params), loss
    if not compile:
        return eager

    def training_step(params, state, batch, step):
        loss, grads = loss_and_grads(params, batch, step)
        return *optimizer.update(grads, state, params), loss, grads
    compiled = compile_step(training_step)

    def advance(params, state, batch, step):
        new_params, new_state, loss, grads = compiled(params, state, batch, step)
        loss = float(loss)
        check_finite(loss, grads, step)
        return new_params, _like_host(state, new_state), loss
    return advance


def _like_host(before, after):
    """Python numbers of `before` (the optimiser's step count) stay Python numbers after a
    compiled step returned them as 0-d arrays, so that checkpoints keep their layout."""
    return tree_map(lambda b, a: type(b)(a) if isinstance(b, (int, float)) else a, before, after)


@limited()
def fit(loss_and_grads, params, optimizer, *, steps, data=None, log_every=100, log=print,
        eval_fn=None, eval_every=None, checkpoint_path=None, checkpoint_every=None, resume=False,
        compile=False):
    """Train for `steps` optimiser updates: ``(params, history)`` (see the module docstring).

    loss_and_grads(params, batch, step) -> (loss, grads); data: a callable step -> batch,
    a fixed batch used at every step, or None. log: a callable taking one line, or None.
    Runs with TINYNIM_THREADS BLAS/torch threads, default one (:mod:`tinynim.threads`).
    compile: compile each training step (module docstring).
    """
    advance = _advance(loss_and_grads, optimizer, compile)
    history = {k: [] for k in BASE_KEYS}
    state, start = optimizer.init(params), 0
    if resume and checkpoint_path is not None and checkpoint.exists(checkpoint_path):
        params, state, start, history = _resume(checkpoint_path, params, optimizer)
        if start > steps:
            raise ValueError(f"fit: the checkpoint {checkpoint_path} is at step {start}, beyond steps={steps}; "
                             f"ask for steps >= {start}, or use another checkpoint_path")
    t0 = time.perf_counter() - (history["time"][-1] if history["time"] else 0.0)
    window, t_window, eval_time = [], time.perf_counter(), 0.0
    for step in range(start, steps):
        batch = data(step) if callable(data) else data
        params, state, loss = advance(params, state, batch, step)
        done = step + 1
        if done == steps:                  # earlier updates are checked by the next step's guard
            bad = _non_finite_paths(params)
            if bad:
                raise NonFiniteError(f"step {step}: the last update made non-finite parameters in "
                                     f"{', '.join(bad)} (loss {loss:.4g})", step, bad)
        history["step"].append(step)
        history["loss"].append(loss)
        history["time"].append(time.perf_counter() - t0)
        window.append(loss)
        metrics = ""
        if eval_fn is not None and eval_every and done % eval_every == 0:
            t_eval = time.perf_counter()
            metrics = _evaluate(eval_fn, params, done, history)
            eval_time += time.perf_counter() - t_eval
        if log is not None and log_every and (done % log_every == 0 or done == steps):
            ms = 1e3 * (time.perf_counter() - t_window - eval_time) / len(window)
            log(f"step {done}/{steps} | loss {sum(window) / len(window):.4g} | {ms:.1f} ms/step{metrics}")
            window, t_window, eval_time = [], time.perf_counter(), 0.0
        due = done == steps or (checkpoint_every and done % checkpoint_every == 0)
        if checkpoint_path is not None and due:
            checkpoint.save(checkpoint_path, {"params": params, "opt_state": state},
                            metadata={"step": done, "steps": steps, "history": history})
    return params, history


def _evaluate(eval_fn, params, done, history) -> str:
    """Run eval_fn, append its metrics to history; return them formatted for the log line."""
    metrics = {k: float(v) for k, v in eval_fn(params, done).items()}
    clash = [k for k in metrics if k in BASE_KEYS or k == "eval_step"]
    if clash:
        raise ValueError(f"fit: eval_fn metric names {clash} clash with the history keys "
                         f"{list(BASE_KEYS) + ['eval_step']}")
    history.setdefault("eval_step", []).append(done)
    for k, v in metrics.items():
        history.setdefault(k, []).append(v)
    return "".join(f" | {k} {v:.4g}" for k, v in metrics.items())
