"""Shared fixtures.

* ``backend``: parametrised over every usable backend, activated with float64 inside the
  test: numpy and array_api_strict always (the latter also on its second device,
  ``device1``, which catches arrays created on the default device), torch (CPU) and jax
  (CPU) when installed (a skipped parameter when not), cupy, torch-cuda and jax-gpu marked
  ``gpu`` and skipped when no GPU is present. On jax a property test runs only its first
  ``JAX_EXAMPLES`` examples (see below).
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


CPU = [("numpy", None), ("array_api_strict", None), ("array_api_strict", "device1")]
OPTIONAL_CPU = [("torch", "cpu"), ("jax", "cpu")]         # extras; CI installs them
GPU = [("cupy", None), ("torch", "cuda:0"), ("jax", "gpu:0")]


def _params():
    out = [pytest.param((name, device), id=f"{name}-{device}" if device else name) for name, device in CPU]
    for name, device in OPTIONAL_CPU:
        mark = pytest.mark.skipif(not _usable(name, device), reason=f"{name} is not installed")
        out.append(pytest.param((name, device), id=name, marks=mark))
    for name, device in GPU:
        marks = [pytest.mark.gpu, pytest.mark.skipif(not _usable(name, device), reason=f"no GPU for {name}")]
        out.append(pytest.param((name, device), id=f"{name}-cuda" if device else name, marks=marks))
    return out


BACKEND_PARAMS = _params()

# Eager JAX compiles every primitive anew for every new shape (about 0.1 s each on a 2-core
# machine), so one hypothesis example costs ~80x numpy's on jax, and the full profile on
# every backend-parametrised test would add ~10 min to the suite. The jax parameter checks
# that the code (the library's and the paper tasks') runs on jax; its maths is checked on the
# other backends with the full profile, and that a whole step traces and equals the eager one
# is tests/test_compile.py. So each property runs its first JAX_EXAMPLES example(s) on jax (the
# same one every run under the derandomized `ci` profile). Hypothesis reads a test's settings
# when the test is called, after the fixture is set up, from the attribute @given puts on the
# function. Every backend-parametrised test runs on jax (the paper tasks' and
# tinynim.analysis' 120 jax copies took 601 s wall on one core shared at load 6.7).
JAX_EXAMPLES = 1


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    name, device = request.param
    fn = request.function
    full = getattr(fn, "_hypothesis_internal_use_settings", None)
    if name == "jax" and full is not None:
        fn._hypothesis_internal_use_settings = settings(full, max_examples=min(full.max_examples, JAX_EXAMPLES))
    try:
        with use_backend(name, device=device, dtype="float64") as adapter:
            yield adapter
    finally:
        if full is not None:
            fn._hypothesis_internal_use_settings = full


@pytest.fixture
def xp(backend):
    return backend.xp


@pytest.fixture
def f64():
    """The numpy backend in float64, for tests that are about maths, not backends."""
    with use_backend("numpy", dtype="float64") as adapter:
        yield adapter
