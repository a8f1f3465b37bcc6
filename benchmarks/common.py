"""The interface every ``benchmarks/bench_*.py`` module follows, and helpers for writing one.

A bench module exposes ``CASES``, a list of :class:`Case`. A case has a ``name`` and a
``setup(impl)`` that builds, for one implementation, a zero-argument *step*: one training
step (forward + loss + backward, no parameter update) on fixed data, returning
``(loss, grads)`` with ``grads`` any nesting of dicts, lists and tuples of arrays. The
runner (:mod:`benchmarks.run`) blocks on that return value, checks that every
implementation reports the same loss and the same global gradient norm (same maths, same
initial weights: draw them once on the host with numpy), and times the step.

    def setup(impl):
        W = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
        if impl == "tinynim":                        # hand-derived backward
            return TinynimStep(loss_and_grads, {"W": asarray(W)}, (asarray(x),))
        if impl == "torch":
            return torch_step(lambda p, x: ((x @ p["W"]) ** 2).mean(), {"W": W}, x)
        if impl == "jax":
            return jax_step(lambda p, x: ((x @ p["W"]) ** 2).mean(), {"W": W}, x)

    CASES = [Case("Tiny", setup, info="B=32, d=64", flops=..., bytes=..., goal_vs_torch=1.0)]

Implementations: ``tinynim`` (eager, on the active backend), ``tinynim-jit`` (the same
``setup("tinynim")`` run on the jax backend under :func:`tinynim.compile`: needs the step
from :class:`TinynimStep`, which keeps params and batch as arguments so that the compiler
cannot fold them into constants), ``torch`` (autograd) and ``jax`` (``jit(value_and_grad)``).
The runner never calls ``setup`` for an implementation whose library is missing, nor one
missing from ``case.impls`` or listed in ``case.skip`` (with the reason, which the report shows). Everything runs in float32 unless a case says otherwise.

``flops`` and ``bytes`` (per step, float32) feed the roofline columns. They are the
*textbook* counts, the same for every implementation, so that achieved fractions compare:
flops = the multiply-adds of forward and backward GEMMs and contractions (2 per MAC) plus
element-wise work where it dominates; bytes = compulsory traffic: inputs and parameters read
once, gradients written once, each activation the backward needs written once and read once.
Each bench module derives its numbers in a comment. ``goal_vs_torch`` is issue 10's goal
for eager tinynim ÷ torch autograd (1.0 for GEMM-bound models, 0.5 where tinynim's
hand-derived structure should win).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tinynim.tree import leaves, leaves_with_paths

IMPLS = ("tinynim", "tinynim-jit", "torch", "jax")
REFERENCE = "tinynim"     # ratios are "tinynim ÷ impl": below 1 means tinynim is faster
LIBRARY = {"tinynim": "tinynim", "tinynim-jit": "jax", "torch": "torch", "jax": "jax"}
F32 = 4                   # bytes per float32


@dataclass(frozen=True)
class Case:
    name: str                                   # e.g. "MLP"; shown as "<module>/<name>"
    setup: Callable[[str], Callable[[], Any]]   # impl -> zero-argument step
    info: str = ""                              # sizes, shown in the table
    impls: tuple[str, ...] = IMPLS
    flops: float | None = None                  # per step (module docstring)
    bytes: float | None = None                  # per step (module docstring)
    goal_vs_torch: float | None = None          # eager tinynim ÷ torch must be <= this
    skip: dict = field(default_factory=dict)    # {impl: why it is not run}, shown in the report


class TinynimStep:
    """tinynim's step as a pure function plus its arguments. Calling it runs
    ``loss_and_grads(params, batch, 0)`` eagerly; :meth:`compiled` gives the same step under
    :func:`tinynim.compile`, with params and batch passed as arguments (a closure over them
    would let jax.jit fold the whole step into constants)."""

    def __init__(self, loss_and_grads, params, batch):
        self.loss_and_grads, self.params, self.batch = loss_and_grads, params, batch

    def __call__(self):
        return self.loss_and_grads(self.params, self.batch, 0)

    def compiled(self):
        from tinynim.compile import compile
        fn = compile(lambda params, batch: self.loss_and_grads(params, batch, 0))
        return lambda: fn(self.params, self.batch)



def unavailable(impl: str) -> str | None:
    """Why `impl` cannot run here (None when it can)."""
    library = LIBRARY[impl]
    if library == "tinynim":
        return None
    try:
        __import__(library)
    except ImportError as err:
        return f"{library} not installed ({err})"
    return None


def block(result):
    """Wait until every array in `result` is computed (jax dispatches asynchronously; CUDA
    queues kernels): the synchronisation point after every timed step."""
    for leaf in leaves(result):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
        elif getattr(getattr(leaf, "device", None), "type", None) == "cuda":
            import torch
            torch.cuda.synchronize()
            break
        elif type(leaf).__module__.startswith("cupy"):
            leaf.device.synchronize()
            break
    return result


def to_host(a) -> np.ndarray:
    """Any array (numpy, torch, jax, cupy, array-api-strict) -> float64 numpy."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    elif hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        a = a.get()
    return np.asarray(a, dtype=np.float64)


def summary(result) -> tuple[float, float]:
    """(loss, global gradient norm) of a step's ``(loss, grads)``: comparable across
    implementations whatever the layout of their gradient trees."""
    loss, grads = result
    return float(to_host(loss)), math.sqrt(sum(float(np.sum(to_host(g) ** 2)) for g in leaves(grads)))


def host_flat(tree) -> dict:
    """A tinynim param tree -> ``{"path/to/leaf": numpy array}``: hand the same initial
    weights to torch and JAX (``torch_step``/``jax_step`` take flat dicts)."""
    from tinynim.backend import to_numpy
    return {path: to_numpy(leaf) for path, leaf in leaves_with_paths(tree)}


def f32(a) -> np.ndarray:
    """Host data for a benchmark: floats as float32, integers (labels) unchanged."""
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


# Where the torch and jax twins put their arrays: set by the runner (--device).
DEVICES = {"torch": "cpu", "jax": "cpu"}


def torch_step(loss_fn, params: dict, *data):
    """A torch autograd step: `params` (a flat dict of host arrays) become float32 leaf
    tensors with ``requires_grad``, `data` float32 (or integer) tensors, on
    ``DEVICES["torch"]``; the step returns ``(loss, grads)`` from ``torch.autograd.grad``
    (no ``.grad`` accumulation to reset)."""
    import torch
    dev = torch.device(DEVICES["torch"])
    p = {k: torch.tensor(f32(v), requires_grad=True, device=dev) for k, v in params.items()}
    d = [torch.as_tensor(f32(a), device=dev) for a in data]
    keys = sorted(p)

    def step():
        loss = loss_fn(p, *d)
        grads = torch.autograd.grad(loss, [p[k] for k in keys])
        return loss.detach(), dict(zip(keys, grads))
    return step


def jax_step(loss_fn, params: dict, *data):
    """A JAX step: ``jit(value_and_grad(loss_fn))`` on float32 `params` (any pytree of host
    arrays is fine; flat dicts keep it like :func:`torch_step`) on ``DEVICES["jax"]``;
    returns ``(loss, grads)``."""
    import jax
    dev = jax.devices(DEVICES["jax"])[0]
    p = jax.tree_util.tree_map(lambda v: jax.device_put(f32(v), dev), params)
    d = [jax.device_put(f32(a), dev) for a in data]
    f = jax.jit(jax.value_and_grad(loss_fn))
    return lambda: f(p, *d)
