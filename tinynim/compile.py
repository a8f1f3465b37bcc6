"""Compiled training steps: hand-derived structure plus a fusing compiler.

    def train_step(params, opt_state, batch):           # pure: forward, loss, backward, update
        loss, grads = loss_and_grads(params, batch, 0)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss
    step = tinynim.compile(train_step)
    params, opt_state, loss = step(params, opt_state, batch)      # compiled on the first call

The compiler is chosen on the first call from the arrays passed in:

* **jax**: ``jax.jit(fn)``. The step is traced once per input shapes and dtypes; Python
  scalars in the arguments (the optimiser's step count) become traced 0-d arrays, so the
  step must not branch on them or call ``float()``/``int()``/``bool()`` on any array. Such
  a call is reported as a :class:`TypeError` naming the step and what to change.
* **torch**: ``torch.compile(fn)`` (TorchInductor: generated C++ on the CPU, Triton on
  CUDA). The first call compiles for tens of seconds to minutes; a changing Python int
  argument causes one recompile (torch then treats it as dynamic). If the compiler fails
  (e.g. no C++ compiler installed), a :class:`CompileWarning` says why and the step runs
  eagerly from then on.
* **numpy, cupy, array_api_strict**: there is no compiler; a :class:`CompileWarning`
  says so on the first call and the step runs eagerly.

Keyword options are passed to ``jax.jit`` or ``torch.compile`` (e.g. ``backend="aot_eager"``
for torch, ``static_argnums`` for jax). The compiled step computes the same function as the
eager one up to floating-point reassociation (tests/test_compile.py checks this in float64).
"""
from __future__ import annotations

import functools
import warnings

import array_api_compat

from tinynim.tree import leaves


class CompileWarning(UserWarning):
    """A step runs eagerly although compilation was asked for (and why)."""


def compile(fn, **options):        # noqa: A001 - tinynim.compile is the public name
    """A compiled version of the pure step `fn` (see the module docstring)."""
    compiled = None

    @functools.wraps(fn)
    def step(*args, **kwargs):
        nonlocal compiled
        if compiled is None:
            compiled = _compiler(fn, args, options)
        return compiled(*args, **kwargs)
    return step


def _backend_of(fn, args) -> str:
    arrays = [a for a in leaves(args) if hasattr(a, "shape")]
    kinds = {_kind(a) for a in arrays}
    if len(kinds) != 1:
        raise TypeError(f"tinynim.compile({_name(fn)}): the arguments must hold arrays of one backend, "
                        f"got {sorted(kinds) or 'no arrays'}")
    return kinds.pop()


def _kind(a) -> str:
    for name in ("jax", "torch", "numpy", "cupy"):
        if getattr(array_api_compat, f"is_{name}_array")(a):
            return name
    return type(a).__module__.split(".")[0]


def _name(fn) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _compiler(fn, args, options):
    backend = _backend_of(fn, args)
    if backend == "jax":
        return _jax_jit(fn, options)
    if backend == "torch":
        return _torch_compile(fn, options)
    warnings.warn(f"tinynim.compile({_name(fn)}): backend {backend} has no compiler, the step runs eagerly "
                  "(TINYNIM_BACKEND=jax or torch compiles)", CompileWarning, stacklevel=3)
    return fn


def _jax_jit(fn, options):
    import jax
    jitted = jax.jit(fn, **options)
    untraceable = (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError,
                   jax.errors.TracerArrayConversionError)

    def run(*args, **kwargs):
        try:
            return jitted(*args, **kwargs)
        except untraceable as err:
            first = str(err).strip().splitlines()[0]
            raise TypeError(
                f"tinynim.compile({_name(fn)}): the step is not traceable by jax.jit: it turns a traced "
                "array into a Python value (float(), int(), bool(), an `if` on an array, or a NumPy call "
                "on an array). Keep value checks and schedules that branch on the step outside the step, "
                f"or write them with array operations. JAX says: {first}") from err
    return run


def _torch_compile(fn, options):
    import torch
    compiled = torch.compile(fn, **options)
    state = {"run": None}

    def run(*args, **kwargs):
        if state["run"] is not None:
            return state["run"](*args, **kwargs)
        with warnings.catch_warnings():
            # dynamo notes, once per helper, that it traces through array-api-compat's
            # functools.lru_cache'd type checks: harmless here (pure functions of the type)
            warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
            try:
                out = compiled(*args, **kwargs)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                warnings.warn(f"tinynim.compile({_name(fn)}): torch.compile failed, the step runs eagerly: "
                              f"{str(err).strip().splitlines()[0]}", CompileWarning, stacklevel=3)
                state["run"] = fn
                return fn(*args, **kwargs)
        state["run"] = compiled
        return out
    return run
