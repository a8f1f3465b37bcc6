import importlib.util

import numpy as np
import pytest

import tinynim
from backends import NAMES
from tinynim.backend import available, get_backend, use_backend

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_CUPY = importlib.util.find_spec("cupy") is not None


def test_unknown_backend_names_it_and_lists_valid_ones():
    with pytest.raises(tinynim.BackendError) as err:
        with use_backend("nope"):
            pass
    assert "'nope'" in str(err.value)
    for name in NAMES:
        assert name in str(err.value)


def _enter(*args, **kwargs):
    with use_backend(*args, **kwargs):
        pass


def test_errors_name_the_argument_or_the_variable_the_value_came_from(monkeypatch):
    """use_backend('NumPy') blamed TINYNIM_BACKEND, which was not even set. Each bad setting
    is now named by its source: the use_backend / backend= argument, or the variable."""
    from tinynim.backend import resolve
    for var in ("TINYNIM_BACKEND", "TINYNIM_DEVICE", "TINYNIM_DTYPE"):
        monkeypatch.delenv(var, raising=False)
    valid = ", ".join(NAMES)
    cases = [(lambda: _enter("NumPy"),
              rf"unknown backend: backend 'NumPy' \(use_backend argument\); valid values: {valid}"),
             (lambda: _enter("numpy", device="cuda:0"),
              r"backend 'numpy' runs on device 'cpu' only, got device 'cuda:0' \(use_backend argument\)"),
             (lambda: _enter("array_api_strict", dtype="int8"),
              r"dtype 'int8' \(use_backend argument\) is not supported; valid values: float32, float64"),
             (lambda: resolve("Torch"), rf"unknown backend: backend 'Torch' \(backend= argument\); valid values: {valid}")]
    for make, message in cases:
        with pytest.raises(tinynim.BackendError, match=f"^{message}$") as err:
            make()
        assert "TINYNIM_" not in str(err.value)
    monkeypatch.setenv("TINYNIM_DTYPE", "int8")                    # the dtype comes from the environment
    with pytest.raises(tinynim.BackendError, match=r"^TINYNIM_DTYPE='int8' is not supported"):
        _enter("numpy")
    monkeypatch.delenv("TINYNIM_DTYPE")
    monkeypatch.setenv("TINYNIM_BACKEND", "numpy")
    monkeypatch.setenv("TINYNIM_DEVICE", "cuda:0")
    with pytest.raises(tinynim.BackendError, match=r"^backend 'numpy' runs on device 'cpu' only, got TINYNIM_DEVICE='cuda:0'$"):
        get_backend()


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_devices_that_cannot_compute_are_refused():
    """'meta' holds no data; 'mps' needs Apple silicon; a device type torch was not built for
    fails a one-element probe. Each is a BackendError when the backend is made, not an error
    per layer later."""
    import torch
    with pytest.raises(tinynim.BackendError, match=r"^device 'meta' \(use_backend argument\): torch's 'meta' "
                                                   r"device holds no data"):
        _enter("torch", device="meta")
    if not torch.backends.mps.is_available():
        with pytest.raises(tinynim.BackendError, match=r"^device 'mps' \(use_backend argument\) asks for Apple's MPS"):
            _enter("torch", device="mps")
    if not torch.xpu.is_available():
        with pytest.raises(tinynim.BackendError, match=r"^device 'xpu' \(use_backend argument\) is not usable by "
                                                       r"torch \S+: \S.*$"):
            _enter("torch", device="xpu")


def test_unknown_backend_from_environment(monkeypatch):
    monkeypatch.setenv("TINYNIM_BACKEND", "nope")
    with pytest.raises(tinynim.BackendError, match="'nope'"):
        get_backend()


def test_bad_dtype_names_it_and_lists_valid_ones(monkeypatch):
    with pytest.raises(tinynim.BackendError, match=r"'float16'.*float32, float64"):
        with use_backend("numpy", dtype="float16"):
            pass
    monkeypatch.setenv("TINYNIM_DTYPE", "int8")
    with pytest.raises(tinynim.BackendError, match=r"'int8'.*float32, float64"):
        get_backend()


def test_cpu_only_backends_refuse_a_gpu_device():
    with pytest.raises(tinynim.BackendError, match=r"'numpy' runs on device 'cpu' only.*'cuda:0'"):
        with use_backend("numpy", device="cuda:0"):
            pass
    with pytest.raises(tinynim.BackendError, match=r"'array_api_strict' has devices 'cpu' \(= CPU_DEVICE\), "
                                                   r"'device1', 'device2'; got device 'cuda:0'"):
        with use_backend("array_api_strict", device="cuda:0"):
            pass
    with use_backend("array_api_strict", device="device1") as adapter:   # its simulated second device
        assert "device1" in str(adapter.device)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torch_cuda_without_gpu_is_a_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the error path cannot be reached")
    with pytest.raises(tinynim.BackendError, match=r"device 'cuda:0' \(use_backend argument\) asks for CUDA but "
                                                   r"torch .* sees no GPU"):
        with use_backend("torch", device="cuda:0"):
            pass


@pytest.mark.skipif(HAS_CUPY, reason="cupy is installed: the missing-library path cannot be reached")
def test_cupy_missing_says_what_to_install():
    with pytest.raises(tinynim.BackendError, match=r"backend 'cupy' is not usable.*To install it: pip install .*cupy"):
        with use_backend("cupy"):
            pass
    usable, detail = available()["cupy"]
    assert not usable and "pip install" in detail


def test_environment_selects_the_backend(monkeypatch):
    monkeypatch.delenv("TINYNIM_BACKEND", raising=False)
    monkeypatch.delenv("TINYNIM_DEVICE", raising=False)
    monkeypatch.delenv("TINYNIM_DTYPE", raising=False)
    assert (get_backend().name, get_backend().dtype) == ("numpy", "float32")      # the defaults
    monkeypatch.setenv("TINYNIM_BACKEND", "array_api_strict")
    monkeypatch.setenv("TINYNIM_DTYPE", "float64")
    adapter = get_backend()
    assert (adapter.name, adapter.dtype) == ("array_api_strict", "float64")
    x = tinynim.asarray([1.0, 2.0])
    assert type(x).__module__.startswith("array_api_strict") and x.dtype == adapter.xp.float64
    if HAS_TORCH:
        monkeypatch.setenv("TINYNIM_BACKEND", "torch")
        monkeypatch.setenv("TINYNIM_DTYPE", "float32")
        assert (get_backend().name, get_backend().dtype) == ("torch", "float32")
        assert str(tinynim.asarray([1.0]).dtype) == "torch.float32"


def test_use_backend_nests_and_restores(monkeypatch):
    monkeypatch.setenv("TINYNIM_BACKEND", "numpy")
    monkeypatch.setenv("TINYNIM_DTYPE", "float32")
    with use_backend("array_api_strict", dtype="float64") as outer:
        assert get_backend() is outer
        with use_backend("numpy", dtype="float64") as inner:
            assert get_backend() is inner
        assert get_backend() is outer
        with pytest.raises(KeyError):
            with use_backend("numpy"):
                raise KeyError("inside")
        assert get_backend() is outer                  # restored after an exception too
    assert (get_backend().name, get_backend().dtype) == ("numpy", "float32")


def test_to_numpy_round_trip(backend):
    """Host -> backend -> host is exact for floats, ints and booleans (same bits, same kind)."""
    rng = np.random.default_rng(0)
    for a in [rng.standard_normal((3, 4)), rng.integers(-5, 5, (2, 3)), rng.uniform(size=5) < 0.5]:
        x = tinynim.asarray(a)
        back = tinynim.to_numpy(x)
        assert isinstance(back, np.ndarray)
        assert back.dtype == a.dtype and back.shape == a.shape
        assert np.array_equal(back, a)
        assert np.array_equal(backend.to_numpy(x), a)


def test_zero_dim_arrays_keep_their_shape(backend):
    """A scalar (0-d) stays 0-d on every backend, also when drawn by the RNG (e.g. a scalar
    parameter such as a learnable step size)."""
    x = tinynim.asarray(np.array(2.5))
    assert tuple(x.shape) == () and tinynim.to_numpy(x).shape == ()
    assert tuple(tinynim.RNG(0).normal(()).shape) == ()


def test_asarray_dtype_rules(backend):
    """Floats take the active float dtype (float64 in this fixture) or the named one;
    integers and booleans keep their kind unless a dtype is named."""
    xp = backend.xp
    assert tinynim.asarray(np.ones(2, dtype=np.float32)).dtype == xp.float64
    assert tinynim.asarray([1.0], dtype="float32").dtype == xp.float32
    assert tinynim.asarray([1, 2]).dtype == xp.int64
    assert tinynim.asarray([True]).dtype == xp.bool
    assert tinynim.asarray([1, 2], dtype="float64").dtype == xp.float64
    with pytest.raises(tinynim.BackendError, match=r"has no dtype 'float7'"):
        tinynim.asarray([1.0], dtype="float7")


def test_available_reports_every_backend():
    report = available()
    assert set(report) == set(NAMES)
    assert report["numpy"][0] and report["array_api_strict"][0]
    assert report["torch"][0] == HAS_TORCH


def test_matmul_fast_path_equals_plain_and_is_numpys_route_on_array_api_strict(backend, xp):
    """tinynim.backend.matmul (stacked products whose second operand is a transposed view;
    numpy-backed arrays copy that operand C-contiguous first) equals the plain ``a @ b`` to
    rounding (float64, 1e-12 relative: a different kernel sums in another order), and on
    array_api_strict it is bit for bit what it is on numpy (the same kernel on the same data)."""
    from tinynim.backend import matmul, to_numpy
    rng = np.random.default_rng(0)
    a_np, k_np = rng.standard_normal((7, 11, 11)), rng.standard_normal((7, 10, 11))
    a, k = backend.asarray(a_np), backend.asarray(k_np)
    got = to_numpy(matmul(a, k.mT))
    np.testing.assert_allclose(got, to_numpy(a @ k.mT), rtol=1e-12, atol=1e-12)
    if backend.name == "array_api_strict":
        np.testing.assert_array_equal(got, matmul(a_np, np.swapaxes(k_np, -1, -2)))
