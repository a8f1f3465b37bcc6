"""CuPy adapter (NVIDIA GPUs)."""
from backends import Adapter, BackendError, missing, named


class CupyAdapter(Adapter):
    name = "cupy"

    def _from_host(self, a, dtype):
        with self._cupy.cuda.Device(self.device):
            return self._cupy.asarray(a, dtype=dtype)

    def to_numpy(self, x):
        return self._cupy.asnumpy(x)

    def synchronize(self, *arrays):
        self._cupy.cuda.Device(self.device).synchronize()


def make(device=None, dtype="float32", sources=None):
    try:
        import cupy
        from array_api_compat import cupy as xp
    except ImportError as err:
        raise missing("cupy", err) from err
    index = 0
    if device not in (None, "cuda"):
        if not str(device).startswith("cuda:") or not str(device)[5:].isdigit():
            raise BackendError(f"backend 'cupy' needs a device like 'cuda:0', got {named('device', device, sources)}")
        index = int(str(device)[5:])
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # the CUDA runtime raises its own error types
        raise BackendError(f"backend 'cupy' is installed but no CUDA GPU is usable: {err}") from err
    if index >= n:
        raise BackendError(f"backend 'cupy': device cuda:{index} requested but {n} GPU(s) found")
    adapter = CupyAdapter(xp, index, dtype, sources)
    adapter._cupy = cupy
    return adapter
