"""Assertions shared by the layer tests."""
import importlib.util
import warnings

import numpy as np

from tinynim.gradcheck import TOLERANCES, check_layer, rel_error
from tinynim.backend import to_numpy

# rtol of each check: the table tinynim.gradcheck.TOLERANCES, shared with check_layer's
# defaults and `python -m tinynim check` (passed iff ‖Δ‖ ≤ atol·noise + rtol·‖ref‖; the
# absolute part, in units of the check's rounding noise, keeps tiny or exactly-zero
# gradients from crying wolf, so the relative tolerances stay strict):
FD_TOL = TOLERANCES["fd"][0]        # central differences, eps=1e-6, float64, smooth layers
TORCH_TOL = TOLERANCES["torch"][0]  # same maths, same float64 arithmetic up to operation order
KINK_TOL = 1e-4     # layers with kinks (ReLU): a probe may straddle a kink at distance < eps
HAS_TORCH = importlib.util.find_spec("torch") is not None


def assert_gradients(layer, params, x, kwargs=None, *, fd_tol=FD_TOL, max_coords=None, seed=0):
    """Backward vs central finite differences AND vs torch autograd on the same forward.

    The finite-difference check always runs and counts; without torch only the autograd
    half is left out (with a warning), the test is not skipped."""
    fd = check_layer(layer, params, x, kwargs, seed=seed, max_coords=max_coords, rtol=fd_tol)
    assert fd.passed, f"{layer.name}: {fd.report()}"
    if not HAS_TORCH:
        warnings.warn("torch is not installed: gradients checked by finite differences only", UserWarning)
        return
    oracle = check_layer(layer, params, x, kwargs, seed=seed, method="torch", rtol=TORCH_TOL)
    assert oracle.passed, f"{layer.name}: {oracle.report()}"


def assert_close(a, b, tol=1e-10, what=""):
    err = rel_error(a, b)
    assert err <= tol, f"{what} rel. error {err:.3g} > {tol}"


def host(x):
    """float64 numpy copy (writable: jax hands out read-only views, which torch warns about)."""
    return np.array(to_numpy(x), dtype=np.float64)
