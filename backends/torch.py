"""PyTorch adapter (CPU or CUDA). tinynim uses torch as an array library only: no autograd,
except in the test suite, where autograd judges the hand-derived backward passes."""
import numpy as np

from backends import Adapter, BackendError, missing, named


class TorchAdapter(Adapter):
    name = "torch"

    def _from_host(self, a, dtype):
        return self._torch.as_tensor(np.asarray(a, order="C"), dtype=dtype, device=self.device)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def synchronize(self, *arrays):
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)


def make(device=None, dtype="float32", sources=None):
    try:
        import torch
        from array_api_compat import torch as xp
    except ImportError as err:
        raise missing("torch", err) from err
    setting = named("device", device, sources)
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError as err:
        raise BackendError(f"{setting} is not a torch device (e.g. cpu, cuda:0): {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(
            f"{setting} asks for CUDA but torch {torch.__version__} sees no GPU; "
            "use the CPU (no device, or 'cpu'), or install a CUDA build of torch on a GPU machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BackendError(f"{setting} asks for Apple's MPS but torch {torch.__version__} has no MPS "
                           "here (macOS on Apple silicon only); use the CPU (no device, or 'cpu')")
    if dev.type == "meta":
        raise BackendError(f"{setting}: torch's 'meta' device holds no data (nothing can be computed "
                           "or read back); use 'cpu' or 'cuda:N'")
    try:
        torch.zeros(1, device=dev)               # e.g. cuda:N beyond the GPUs, an xpu without driver
    except Exception as err:                     # RuntimeError or AssertionError, by build and device
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BackendError(f"{setting} is not usable by torch {torch.__version__}: {first_line}") from err
    adapter = TorchAdapter(xp, dev, dtype, sources)
    adapter._torch = torch
    return adapter
