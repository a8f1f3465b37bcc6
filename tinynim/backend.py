"""The active backend: read from the environment, overridable in a ``with`` block.

    TINYNIM_BACKEND   numpy (default) | torch | cupy | array_api_strict | jax
    TINYNIM_DEVICE    e.g. cpu, cuda:0 (default: the backend's default device)
    TINYNIM_DTYPE     float32 (default) | float64

Only *creation* (``init``, data, ``asarray``) consults the active backend; compute code
follows its inputs through ``array_namespace``. A bad value is a :class:`BackendError`
that names it by its source (the environment variable, or the ``use_backend``/``backend=``
argument), lists the valid values and says what to install: never a silent fallback.
"""
from __future__ import annotations

import contextlib
import copy
import os

import numpy as np
import array_api_compat

import backends
from backends import BackendError

_stack: list = []          # adapters pushed by use_backend
_from_env = None           # adapter built from the environment, cached with its key


def _env_key():
    return (os.environ.get("TINYNIM_BACKEND", "numpy") or "numpy",
            os.environ.get("TINYNIM_DEVICE") or None,
            os.environ.get("TINYNIM_DTYPE", "float32") or "float32")


def get_backend() -> backends.Adapter:
    """The active adapter: the innermost ``use_backend`` block, else the environment."""
    global _from_env
    if _stack:
        return _stack[-1]
    key = _env_key()
    if _from_env is None or _from_env[0] != key:
        _from_env = (key, backends.load(key[0], device=key[1], dtype=key[2]))
    return _from_env[1]


@contextlib.contextmanager
def use_backend(name: str, device=None, dtype: str | None = None):
    """Make `name` the active backend inside the block (dtype as a string, e.g. "float64";
    by default the enclosing block's dtype, else TINYNIM_DTYPE).

    >>> with use_backend("numpy", dtype="float64"):
    ...     get_backend().dtype
    'float64'
    """
    given = {"backend": name, "device": device, "dtype": dtype}
    sources = {what: "use_backend argument" for what, value in given.items() if value is not None}
    adapter = backends.load(name, device=device, dtype=dtype or _default_dtype(), sources=sources)
    _stack.append(adapter)
    try:
        yield adapter
    finally:
        _stack.pop()


@contextlib.contextmanager
def use_dtype(dtype: str):
    """The active backend, on its device, with another default float dtype inside the block.

    >>> with use_dtype("float64"):       # e.g. an exact identity checked on any backend
    ...     get_backend().dtype
    'float64'
    """
    if dtype not in backends.DTYPES:
        raise BackendError(f"use_dtype: dtype must be one of {', '.join(backends.DTYPES)}, got {dtype!r}")
    adapter = copy.copy(get_backend())
    adapter.dtype = dtype
    _stack.append(adapter)
    try:
        yield adapter
    finally:
        _stack.pop()


def resolve(backend=None) -> backends.Adapter:
    """`None` -> the active adapter; a name -> that backend (same device and dtype rules)."""
    if backend is None:
        return get_backend()
    if isinstance(backend, backends.Adapter):
        return backend
    return backends.load(backend, dtype=_default_dtype(), sources={"backend": "backend= argument"})


def _default_dtype() -> str:
    """The enclosing ``use_backend`` block's dtype, else TINYNIM_DTYPE."""
    return _stack[-1].dtype if _stack else _env_key()[2]


def asarray(a, dtype=None, backend=None):
    """Host data -> an array on the active (or named) backend."""
    return resolve(backend).asarray(a, dtype)


def zeros(shape, dtype=None, backend=None):
    """Zeros of `shape` on the active (or named) backend."""
    return resolve(backend).asarray(np.zeros(shape), dtype)


def to_numpy(x) -> np.ndarray:
    """Any supported array (numpy, torch, cupy, array-api-strict, jax) -> a host numpy array."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.asarray(x)
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_jax_array(x):
        return np.asarray(x)
    return np.from_dlpack(x)


def namespace(*arrays):
    """The Array-API namespace of `arrays` (``None`` entries are ignored)."""
    return array_api_compat.array_namespace(*[a for a in arrays if a is not None])


def matmul(a, b):
    """``a @ b`` for stacked matrices whose second operand may be a transposed view (``k.mT``).

    One fast path for the numpy-backed libraries (numpy, and array_api_strict, which wraps
    numpy's kernels): numpy's stacked (≥ 3-D) matmul leaves BLAS for a slower loop when the
    second operand's matrices are not C-contiguous; copying that operand first was 1.4–1.8×
    faster on a 2-core CPU (2048 products 11×11 @ 11×10; 256 products 64×16 @ 16×64). The
    copy is a flatten and reshape back (standard Array API: it copies, in C order, exactly
    when the operand is not C-contiguous), so array_api_strict takes numpy's route and runs
    the same kernel (the examples check that both agree to 1e-12). Other libraries take
    ``a @ b`` as it is.
    """
    if b.ndim > 2 and numpy_backed(b):
        xp = array_api_compat.array_namespace(b)
        b = xp.reshape(xp.reshape(b, (-1,)), b.shape)
    return a @ b


def numpy_backed(x) -> bool:
    """Whether `x` is computed by numpy's kernels: a numpy array, or an array_api_strict one
    (which wraps numpy). The eager fast paths for numpy take the same route on both, so that
    array_api_strict checks the very code numpy runs and both agree to rounding."""
    return array_api_compat.is_numpy_array(x) or array_api_compat.is_array_api_strict_namespace(
        array_api_compat.array_namespace(x))


def available() -> dict:
    """``{name: (usable, detail)}`` for every known backend, without changing the active one."""
    out = {}
    for name in backends.NAMES:
        try:
            adapter = backends.load(name)
            out[name] = (True, f"device {adapter.device}")
        except BackendError as err:
            out[name] = (False, str(err))
    return out
