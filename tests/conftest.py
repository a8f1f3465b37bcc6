"""Shared fixtures.

* ``backend``: parametrised over every usable backend, activated with float64 inside the
  test: numpy and array_api_strict always (the latter also on its second device,
  ``device1``, which catches arrays created on the default device), torch (CPU) when
  installed, cupy and torch-cuda marked ``gpu`` and skipped when no GPU is present.
* ``xp``: that backend's Array-API namespace.
* Hypothesis profiles: ``dev`` (default, quick), ``ci`` (derandomized, no deadline),
  ``thorough`` (many examples). Select with ``HYPOTHESIS_PROFILE=ci``.
"""
import os

# One BLAS thread: the suite's arrays are small, and several spin-waiting OpenBLAS/torch
# threads on a 2-core machine made single steps 10-30x slower. Set before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest
from hypothesis import HealthCheck, settings

from tinynim.backend import use_backend
from tinynim import BackendError

# The backend fixture only activates a backend: sharing it across examples is safe.
_quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_quiet)
settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=_quiet)
settings.register_profile("thorough", max_examples=300, deadline=None, suppress_health_check=_quiet)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _usable(name, device=None):
    try:
        with use_backend(name, device=device):
            return True
    except BackendError:
        return False


CPU = [("numpy", None), ("array_api_strict", None), ("array_api_strict", "device1"), ("torch", None)]
GPU = [("cupy", None), ("torch", "cuda:0")]


def _params():
    out = []
    for name, device in CPU:
        if name == "torch" and not _usable("torch"):
            continue                      # torch is an optional extra; CI installs it
        out.append(pytest.param((name, device), id=f"{name}-{device}" if device else name))
    for name, device in GPU:
        marks = [pytest.mark.gpu, pytest.mark.skipif(not _usable(name, device), reason=f"no GPU for {name}")]
        out.append(pytest.param((name, device), id=f"{name}-cuda" if device else name, marks=marks))
    return out


BACKEND_PARAMS = _params()


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    name, device = request.param
    with use_backend(name, device=device, dtype="float64") as adapter:
        yield adapter


@pytest.fixture
def xp(backend):
    return backend.xp


@pytest.fixture
def f64():
    """The numpy backend in float64, for tests that are about maths, not backends."""
    with use_backend("numpy", dtype="float64") as adapter:
        yield adapter
