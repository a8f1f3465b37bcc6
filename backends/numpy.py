"""NumPy adapter: the CPU teaching backend and the default."""
from array_api_compat import numpy as xp_numpy

from backends import Adapter, BackendError


class NumpyAdapter(Adapter):
    name = "numpy"


def make(device=None, dtype="float32"):
    if device not in (None, "cpu"):
        raise BackendError(f"backend 'numpy' runs on device 'cpu' only, got TINYNIM_DEVICE={device!r}")
    return NumpyAdapter(xp_numpy, "cpu", dtype)
