"""NumPy adapter: the CPU teaching backend and the default."""
from array_api_compat import numpy as xp_numpy

from backends import Adapter, BackendError, named


class NumpyAdapter(Adapter):
    name = "numpy"


def make(device=None, dtype="float32", sources=None):
    if device not in (None, "cpu"):
        raise BackendError(f"backend 'numpy' runs on device 'cpu' only, got {named('device', device, sources)}")
    return NumpyAdapter(xp_numpy, "cpu", dtype, sources)
