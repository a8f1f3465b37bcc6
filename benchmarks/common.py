"""The interface every ``benchmarks/bench_*.py`` module follows, and helpers for writing one.

A bench module exposes ``CASES``, a list of :class:`Case`. A case has a ``name`` and a
``setup(impl)`` that builds, for one implementation ("tinynim", "torch" or "jax"), a
zero-argument *step*: one training step (forward + loss + backward, no parameter update)
on fixed data, returning ``(loss, grads)`` with ``grads`` any nesting of dicts, lists and
tuples of arrays. The runner (:mod:`benchmarks.run`) blocks on that return value, checks
that every implementation reports the same loss and the same global gradient norm (same
maths, same initial weights: draw them once on the host with numpy), and times the step.

    def setup(impl):
        W = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
        if impl == "tinynim": ...                    # hand-derived backward
            return lambda: (loss, grads)
        if impl == "torch":
            return torch_step(lambda p, x: ((x @ p["W"]) ** 2).mean(), {"W": W}, x)
        if impl == "jax":
            return jax_step(lambda p, x: ((x @ p["W"]) ** 2).mean(), {"W": W}, x)

    CASES = [Case("Tiny", setup, info="B=32, d=64")]

The runner never calls ``setup("jax")`` when jax cannot be imported, nor an implementation
missing from ``case.impls``. Everything runs on the CPU in float32 unless a case says otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tinynim.tree import leaves, leaves_with_paths

IMPLS = ("tinynim", "torch", "jax")
REFERENCE = "tinynim"     # ratios are "tinynim ÷ impl": below 1 means tinynim is faster


@dataclass(frozen=True)
class Case:
    name: str                                   # e.g. "MLP"; shown as "<module>/<name>"
    setup: Callable[[str], Callable[[], Any]]   # impl -> zero-argument step
    info: str = ""                              # sizes, shown in the table
    impls: tuple[str, ...] = IMPLS


def unavailable(impl: str) -> str | None:
    """Why `impl` cannot run here (None when it can)."""
    if impl == "tinynim":
        return None
    try:
        __import__(impl)
    except ImportError as err:
        return f"{impl} not installed ({err})"
    return None


def block(result):
    """Wait until every array in `result` is computed (jax dispatches asynchronously)."""
    for leaf in leaves(result):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
        elif getattr(getattr(leaf, "device", None), "type", None) == "cuda":
            import torch
            torch.cuda.synchronize()
            break
    return result


def to_host(a) -> np.ndarray:
    """Any array (numpy, torch, jax, array-api-strict) -> float64 numpy."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
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


def torch_step(loss_fn, params: dict, *data):
    """A torch autograd step: `params` (a flat dict of host arrays) become float32 leaf
    tensors with ``requires_grad``, `data` float32 (or integer) tensors; the step returns
    ``(loss, grads)`` from ``torch.autograd.grad`` (no ``.grad`` accumulation to reset)."""
    import torch
    p = {k: torch.tensor(f32(v), requires_grad=True) for k, v in params.items()}
    d = [torch.as_tensor(f32(a)) for a in data]
    keys = sorted(p)

    def step():
        loss = loss_fn(p, *d)
        grads = torch.autograd.grad(loss, [p[k] for k in keys])
        return loss.detach(), dict(zip(keys, grads))
    return step


def jax_step(loss_fn, params: dict, *data):
    """A JAX step: ``jit(value_and_grad(loss_fn))`` on float32 `params` (any pytree of host
    arrays is fine; flat dicts keep it like :func:`torch_step`); returns ``(loss, grads)``."""
    import jax
    import jax.numpy as jnp
    p = jax.tree_util.tree_map(lambda v: jnp.asarray(f32(v)), params)
    d = [jnp.asarray(f32(a)) for a in data]
    f = jax.jit(jax.value_and_grad(loss_fn))
    return lambda: f(p, *d)
