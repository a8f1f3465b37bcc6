"""Assertions shared by the layer tests."""
import numpy as np
import pytest

from tinynim.gradcheck import check_layer, rel_error
from tinynim.backend import to_numpy

FD_TOL = 1e-7       # central differences, eps=1e-6, float64, smooth layers: truncation O(eps²)
                    # ~1e-12 plus rounding ~1e-16·|L|/eps ~1e-9; 1e-7 leaves two decades of slack
KINK_TOL = 1e-4     # layers with kinks (ReLU): a probe may straddle a kink at distance < eps
TORCH_TOL = 1e-10   # same maths, same float64 arithmetic up to operation order


def assert_gradients(layer, params, x, kwargs=None, *, fd_tol=FD_TOL, max_coords=None, seed=0):
    """Backward vs central finite differences AND vs torch autograd on the same forward."""
    errors = check_layer(layer, params, x, kwargs, seed=seed, max_coords=max_coords)
    bad = {k: e for k, e in errors.items() if not e <= fd_tol}
    assert not bad, f"{layer.name}: finite-difference errors above {fd_tol}: {bad}"
    pytest.importorskip("torch")
    errors = check_layer(layer, params, x, kwargs, seed=seed, method="torch")
    bad = {k: e for k, e in errors.items() if not e <= TORCH_TOL}
    assert not bad, f"{layer.name}: torch-autograd errors above {TORCH_TOL}: {bad}"


def assert_close(a, b, tol=1e-10, what=""):
    err = rel_error(a, b)
    assert err <= tol, f"{what} rel. error {err:.3g} > {tol}"


def host(x):
    return np.asarray(to_numpy(x), dtype=np.float64)
