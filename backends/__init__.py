"""Backend adapters: one small module per array library.

An adapter is the *only* place that knows which library holds the arrays. It gives

    name            "numpy" | "torch" | "cupy" | "array_api_strict" | "jax"
    xp              the Array-API namespace (through array-api-compat where needed)
    device          where new arrays are created
    dtype           the default floating dtype name ("float32", "float64")
    asarray(a, dtype=None)   host numpy array -> backend array on `device`
    to_numpy(x)              backend array -> host numpy array
    synchronize(*arrays)     wait for queued device work (no-op on CPU); on jax, which
                             dispatches asynchronously, for the given arrays

Compute code never consults the adapter: it takes its namespace from its inputs. Only
creation (parameter init, data) does, through :mod:`tinynim.backend`.
"""
from __future__ import annotations

import importlib

import numpy as np

TINYNIM_BACKENDS = True        # marks this package as tinynim's (see tinynim/backend.py)
NAMES = ("numpy", "torch", "cupy", "array_api_strict", "jax")
INSTALL = {
    "numpy": "pip install numpy",
    "torch": 'pip install -e ".[torch]"  (or, CPU only: pip install torch==2.13.0)',
    "cupy": 'pip install -e ".[cupy]"  (needs an NVIDIA GPU and CUDA 12)',
    "array_api_strict": 'pip install -e ".[test]"  (or: pip install array-api-strict)',
    "jax": 'pip install -e ".[jax]"  (or, CPU only: pip install jax)',
}
DTYPES = ("float32", "float64")


class BackendError(RuntimeError):
    """An unknown, uninstalled or unusable backend, device or dtype."""


def named(what: str, value, sources=None) -> str:
    """A setting as an error message names it, by where it came from: its environment
    variable (``TINYNIM_DEVICE='cuda:0'``), or the argument that passed it
    (``device 'cuda:0' (use_backend argument)``). `sources` maps a setting ("backend",
    "device", "dtype") to a phrase for the argument; settings not in it came from the
    environment."""
    source = (sources or {}).get(what)
    return f"TINYNIM_{what.upper()}={value!r}" if source is None else f"{what} {value!r} ({source})"


class Adapter:
    """Common behaviour; subclasses set `name`, `xp`, `device` and the conversions."""

    name = "?"

    def __init__(self, xp, device, dtype, sources=None):
        if dtype not in DTYPES:
            raise BackendError(f"{named('dtype', dtype, sources)} is not supported; valid values: {', '.join(DTYPES)}")
        self.xp, self.device, self.dtype = xp, device, dtype

    def __repr__(self):
        return f"<backend {self.name} device={self.device} dtype={self.dtype}>"

    def resolve_dtype(self, dtype=None):
        """A dtype name (or None for the default float dtype) -> this library's dtype."""
        name = self.dtype if dtype is None else str(dtype).replace("torch.", "")
        if not hasattr(self.xp, name):
            raise BackendError(f"backend {self.name} has no dtype {name!r}")
        return getattr(self.xp, name)

    def asarray(self, a, dtype=None):
        """Host data -> array on this backend. Floats take `dtype` (default: the backend's
        float dtype); integers and booleans keep their kind unless `dtype` is given."""
        a = np.asarray(a)
        if dtype is None and a.dtype.kind not in "fc":
            return self._from_host(a, None)
        return self._from_host(a, self.resolve_dtype(dtype))

    def _from_host(self, a, dtype):
        return self.xp.asarray(a, dtype=dtype, device=self.device)

    def to_numpy(self, x):
        return np.asarray(x)

    def synchronize(self, *arrays):
        return None


def load(name: str, device=None, dtype: str = "float32", sources=None) -> Adapter:
    """Build the adapter for `name`; a clear :class:`BackendError` if that cannot be done,
    naming each bad setting by its source (see :func:`named`; default: the environment)."""
    if name not in NAMES:
        raise BackendError(
            f"unknown backend: {named('backend', name, sources)}; valid values: {', '.join(NAMES)}")
    module = importlib.import_module(f"backends.{name}")
    return module.make(device=device, dtype=dtype, sources=sources)


def missing(name: str, err: Exception) -> BackendError:
    return BackendError(
        f"backend {name!r} is not usable: {err}. To install it: {INSTALL[name]}")
