"""array-api-strict adapter: a namespace with nothing beyond the standard.

The test suite runs on it to prove that tinynim's compute code uses only the Array API.
"""
import numpy as np

from backends import Adapter, BackendError, missing, named


class StrictAdapter(Adapter):
    name = "array_api_strict"

    def to_numpy(self, x):
        return np.from_dlpack(x)


def make(device=None, dtype="float32", sources=None):
    try:
        import array_api_strict as xp
    except ImportError as err:
        raise missing("array_api_strict", err) from err
    if device not in (None, "cpu"):
        raise BackendError(
            f"backend 'array_api_strict' runs on device 'cpu' only, got {named('device', device, sources)}")
    return StrictAdapter(xp, xp.Device("CPU_DEVICE"), dtype, sources)
