"""JAX adapter (CPU, or GPU with a CUDA build of jaxlib). ``jax.numpy`` is an Array-API
namespace (2024.12 in jax 0.10), so tinynim's compute code runs on it unchanged, eagerly or
traced under ``jax.jit`` (see :mod:`tinynim.compile`).

float64. JAX computes in 32 bits unless the process-wide flag ``jax_enable_x64`` is on;
without it a float64 request silently yields float32 arrays. This adapter turns the flag
on when (and only when) an adapter with dtype float64 is built, and never turns it off:

* on demand rather than always, because the flag is global to the process and changes
  JAX's own defaults (``jnp.zeros(3)`` becomes float64, ``jnp.arange`` int64) for any
  other JAX code the user runs; a float32 user of tinynim should not pay for that;
* never off again, because arrays created under it (float64 params, optimiser state)
  may still be alive, and switching it off would truncate everything computed from them.

tinynim creates every array with an explicit dtype and computes in its inputs' dtype, so
its float32 results do not depend on the flag (tests/test_jax_backend.py checks this).
Setting ``JAX_ENABLE_X64=1`` in the environment (JAX's own switch) also works.
"""
import numpy as np

from backends import Adapter, BackendError, missing, named


class JaxAdapter(Adapter):
    name = "jax"

    def _from_host(self, a, dtype):
        return self._jax.device_put(np.asarray(a, dtype=None if dtype is None else np.dtype(dtype)),
                                    self.device)

    def to_numpy(self, x):
        return np.asarray(x)

    def synchronize(self, *arrays):
        """Wait until `arrays` (any nesting) are computed: JAX dispatches asynchronously and
        has no device-wide barrier, so only the arrays one is about to read can be awaited."""
        self._jax.block_until_ready(arrays)


def _device(jax, device, sources):
    """The device setting -> a jax Device: None (JAX's default), cpu[:N], cuda[:N] or gpu[:N]."""
    if device is None:
        return jax.devices()[0]
    setting = named("device", device, sources)
    platform, _, index = str(device).partition(":")
    if platform not in ("cpu", "cuda", "gpu") or not (index == "" or index.isdigit()):
        raise BackendError(f"backend 'jax' needs a device like 'cpu', 'cuda:0' or 'gpu:0', got {setting}")
    try:
        found = jax.devices("cpu" if platform == "cpu" else "gpu")
    except RuntimeError as err:
        raise BackendError(
            f"{setting} asks for a GPU but jax {jax.__version__} sees none ({err}); use the CPU "
            "(no device setting), or install a CUDA build: pip install 'jax[cuda12]'") from err
    n = int(index or 0)
    if n >= len(found):
        raise BackendError(f"backend 'jax': {setting} requested but {len(found)} {platform} device(s) found")
    return found[n]


def make(device=None, dtype="float32", sources=None):
    try:
        import jax
        import jax.numpy as jnp
        from array_api_compat import array_namespace
    except ImportError as err:
        raise missing("jax", err) from err
    adapter = JaxAdapter(array_namespace(jnp.zeros(0)), _device(jax, device, sources), dtype, sources)
    adapter._jax = jax
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)               # see the module docstring
    return adapter
