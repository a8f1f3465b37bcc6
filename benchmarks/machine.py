"""What the numbers were measured on: a machine fingerprint and two in-run probes.

* :func:`fingerprint`: CPU model and SIMD level, cores (logical, and usable by this
  process), memory, OS, library versions, the BLAS numpy uses (threadpoolctl when
  installed, else ``numpy.show_config``) and its threads, thread settings, load average.
* :func:`gemm_gflops`: float32 GEMM throughput of numpy's BLAS (n×n @ n×n, 2n³ flops),
  the compute roof of the roofline.
* :func:`bandwidth_gbs`: memory bandwidth of a STREAM-style float32 add c = a + b over
  arrays far larger than the caches (3 arrays of ``mib`` MiB; counted bytes: read a and b,
  write c), the memory roof.

Both probes report the median of several timed repetitions after one warm-up; the runner
calls them at the start and at the end of a run, so that drift (other jobs on a shared
machine) shows.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import time
from pathlib import Path

import numpy as np


def _cpuinfo() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", text, re.M) or [None, ""])[1].split())
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2", "neon", "asimd") if f in flags), "?")
    return {"cpu": model.group(1).strip() if model else platform.processor() or platform.machine(),
            "simd": simd}


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    return int(re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text()).group(1)) / 2**20


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
        return "; ".join(f"{i['prefix']} {i.get('version') or ''} ({i.get('architecture') or i['user_api']}, "
                         f"{i['num_threads']} threads)" for i in threadpool_info())
    except ImportError:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} ({blas.get('openblas configuration', '').strip()})"


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("array_api_compat", "torch", "jax", "jaxlib"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "not installed"
    from tinynim import __version__
    out["tinynim"] = __version__
    return out


def _threads() -> dict:
    out = {v: os.environ.get(v, "default") for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")}
    try:
        import torch
        out["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return out


def fingerprint() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = _memory_gib()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            **_cpuinfo(), "cores": os.cpu_count(), "cores_usable": usable,
            "memory_gib": None if memory is None else round(memory, 1),
            "os": platform.platform(), **versions(), "blas": _blas(),
            "threads": _threads(),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def _median_seconds(fn, repeat):
    fn()                                                     # warm-up (page faults, BLAS buffers)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def gemm_gflops(n: int = 1024, repeat: int = 7) -> float:
    """float32 GFLOP/s of numpy's BLAS on an n×n @ n×n product."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    return 2 * n ** 3 / _median_seconds(lambda: np.matmul(a, b, out=out), repeat) / 1e9


def bandwidth_gbs(mib: int = 64, repeat: int = 7) -> float:
    """GB/s of c = a + b on float32 arrays of `mib` MiB each (12 bytes moved per element)."""
    n = mib * 2 ** 20 // 4
    a, b, c = np.ones(n, dtype=np.float32), np.ones(n, dtype=np.float32), np.empty(n, dtype=np.float32)
    return 3 * 4 * n / _median_seconds(lambda: np.add(a, b, out=c), repeat) / 1e9


def probes() -> dict:
    return {"gemm_gflops": round(gemm_gflops(), 1), "bandwidth_gbs": round(bandwidth_gbs(), 2),
            "load_avg_1m": round(os.getloadavg()[0], 2)}
