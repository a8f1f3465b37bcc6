"""PyTorch adapter (CPU or CUDA). tinynim uses torch as an array library only: no autograd,
except in the test suite, where autograd judges the hand-derived backward passes."""
import numpy as np

from backends import Adapter, BackendError, missing


class TorchAdapter(Adapter):
    name = "torch"

    def _from_host(self, a, dtype):
        return self._torch.as_tensor(np.asarray(a, order="C"), dtype=dtype, device=self.device)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def synchronize(self):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)


def make(device=None, dtype="float32"):
    try:
        import torch
        from array_api_compat import torch as xp
    except ImportError as err:
        raise missing("torch", err) from err
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError as err:
        raise BackendError(f"TINYNIM_DEVICE={device!r} is not a torch device (e.g. cpu, cuda:0): {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(
            f"TINYNIM_DEVICE={device!r} asks for CUDA but torch {torch.__version__} sees no GPU; "
            "unset TINYNIM_DEVICE for the CPU, or install a CUDA build of torch on a GPU machine")
    adapter = TorchAdapter(xp, dev, dtype)
    adapter._torch = torch
    return adapter
