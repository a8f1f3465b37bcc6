"""The jax adapter: float64 through jax_enable_x64, float32 unaffected by it, devices, sync.
(Every backend-parametrised test also runs on jax through the `backend` fixture.)"""
import numpy as np
import pytest

import tinynim
from tinynim.backend import to_numpy, use_backend
from tinynim.nn.transformer import TransformerBlock
from tinynim.random import RNG

jax = pytest.importorskip("jax")


def test_float64_request_turns_on_x64_and_gives_float64():
    with use_backend("jax", dtype="float64") as b:
        x = tinynim.asarray(np.array([1.0, 1.0 + 2.0 ** -40]))
        assert jax.config.jax_enable_x64
        assert x.dtype == b.xp.float64 and b.device.platform == "cpu"
        assert float(x[1] - x[0]) == 2.0 ** -40          # lost in float32
        assert np.array_equal(to_numpy(x), [1.0, 1.0 + 2.0 ** -40])


def test_float32_stays_float32_with_x64_on():
    """tinynim passes dtypes explicitly: a float32 forward and backward stay float32 even
    after a float64 adapter switched the process-wide flag on."""
    with use_backend("jax", dtype="float64"):
        pass
    assert jax.config.jax_enable_x64
    with use_backend("jax", dtype="float32") as b:
        block = TransformerBlock(8, 2, 16, causal=True)
        params = block.init(RNG(0))
        x = RNG(1).normal((2, 5, 8))
        out, cache = block.forward(params, x)
        dx, grads = block.backward(params, cache, out)
        dtypes = {str(a.dtype) for a in [out, dx, *tinynim.tree.leaves(grads)]}
        assert dtypes == {"float32"}


def test_synchronize_waits_for_the_given_arrays():
    with use_backend("jax", dtype="float32") as b:
        x = tinynim.asarray(np.ones((3, 3)))
        y = {"a": x @ x, "b": [x + 1]}
        b.synchronize(y)                                   # returns once computed
        assert np.array_equal(to_numpy(y["a"]), np.full((3, 3), 3.0))


@pytest.mark.parametrize("device, message", [
    ("tpu:0", r"device like 'cpu', 'cuda:0' or 'gpu:0', got device 'tpu:0' \(use_backend argument\)"),
    ("cpu:7", r"device 'cpu:7' \(use_backend argument\) requested but 1 cpu device\(s\) found"),
])
def test_bad_device_is_a_clear_error(device, message):
    with pytest.raises(tinynim.BackendError, match=message):
        with use_backend("jax", device=device):
            pass


def test_gpu_without_gpu_is_a_clear_error():
    try:
        jax.devices("gpu")
        pytest.skip("a GPU is present: the error path cannot be reached")
    except RuntimeError:
        pass
    with pytest.raises(tinynim.BackendError, match=r"device 'cuda:0' \(use_backend argument\) asks for a GPU but jax .* sees none.*pip install"):
        with use_backend("jax", device="cuda:0"):
            pass
