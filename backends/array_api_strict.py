"""array-api-strict adapter: a namespace with nothing beyond the standard.

The test suite runs on it to prove that tinynim's compute code uses only the Array API, and
on its second device, ``device1``, to prove that compute code creates every array on the
device of its inputs: array-api-strict refuses to combine arrays of two devices, so a
forgotten ``device=`` fails on a CPU-only machine as it would on a GPU.
"""
import numpy as np

from backends import Adapter, BackendError, missing, named

DEVICES = ("CPU_DEVICE", "device1", "device2")     # array-api-strict's simulated devices


class StrictAdapter(Adapter):
    name = "array_api_strict"

    def to_numpy(self, x):
        return np.from_dlpack(x)


def make(device=None, dtype="float32", sources=None):
    try:
        import array_api_strict as xp
    except ImportError as err:
        raise missing("array_api_strict", err) from err
    if device in (None, "cpu"):
        device = "CPU_DEVICE"
    if device not in DEVICES:
        raise BackendError(f"backend 'array_api_strict' has devices 'cpu' (= CPU_DEVICE), "
                           f"{', '.join(repr(d) for d in DEVICES[1:])}; got {named('device', device, sources)}")
    return StrictAdapter(xp, xp.Device(device), dtype, sources)
