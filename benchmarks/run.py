"""Time one training step (forward + loss + backward) of tinynim, torch autograd and JAX.

    python -m benchmarks.run [--only SUBSTR] [--repeat N] [--json PATH] [--quick] [--no-memory]

Method
------
* Every case in every ``benchmarks/bench_*.py`` is set up once per implementation in this
  process (float32, CPU; tinynim on the active backend, ``TINYNIM_BACKEND``, default numpy).
* Check: each implementation's ``(loss, grads)`` must match tinynim's loss and global
  gradient norm to ``RTOL``; a mismatch is shown in the table and makes the exit code 1.
* Warm-up (JAX compiles here), then ``--repeat`` rounds; in each round every implementation
  runs a block of ``inner`` steps timed with ``time.perf_counter`` (``inner`` chosen so a
  block lasts about ``--block-ms``), implementations interleaved and their order rotated
  round by round so machine noise spreads over all of them. GC is off inside a block.
* Reported: the median ms per step over rounds, the interquartile range, and the ratio
  **tinynim ÷ impl** of medians (below 1: tinynim is faster).
* Peak memory: each (case, implementation) runs again in a fresh subprocess: setup, one
  warm-up step, then the peak-RSS mark is reset (``/proc/self/clear_refs``) and a few
  steps run; reported is the peak resident set during those steps minus the resident set
  just before them, in MiB: the extra memory a step needs (activations kept for backward,
  gradients, temporaries), not the parameters, data or compiled code. glibc is told to
  return large blocks to the OS (``MALLOC_MMAP_THRESHOLD_``) so that freed memory is not
  already resident; caching allocators (XLA) can still make this an underestimate. Linux only.
* Threads: library defaults (torch intra-op threads and OpenBLAS/XLA thread pools = cores),
  or ``--threads N`` for all three (OMP/OPENBLAS/MKL_NUM_THREADS and XLA_FLAGS are set and
  the runner restarts itself, since libraries read them at import). On a machine shared
  with other jobs, multi-threaded BLAS degrades badly; ``--threads 1`` is the stable choice.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import pkgutil
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import benchmarks
from benchmarks.common import IMPLS, REFERENCE, block, summary, unavailable

RTOL = 2e-3          # float32 losses/gradient norms summed in different orders agree to ~1e-6;
                     # 2e-3 still catches a missing term or a wrong scale
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def load_cases(only: str | None = None) -> dict:
    """``{"module/case": Case}`` for every bench module, filtered by substring."""
    found = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        for case in module.CASES:
            full = f"{info.name.removeprefix('bench_')}/{case.name}"
            if only is None or only.lower() in full.lower():
                found[full] = case
    return found


def float32_backend():
    """The active tinynim backend, in float32: every implementation runs in float32."""
    from tinynim.backend import get_backend, use_backend
    active = get_backend()
    return use_backend(active.name, device=os.environ.get("TINYNIM_DEVICE") or None, dtype="float32")


def time_block(step, inner: int) -> float:
    """Seconds per step over `inner` consecutive blocked steps, GC off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(inner):
            block(step())
        return (time.perf_counter() - t0) / inner
    finally:
        gc.enable()


def bench_case(case, impls, *, repeat, warmup, block_s) -> dict:
    """Set up, check and time one case; ``{impl: result dict}``."""
    with float32_backend():
        steps = {impl: case.setup(impl) for impl in impls}
    out = {}
    for impl, step in steps.items():
        loss, gnorm = summary(block(step()))
        t = min(time_block(step, 1) for _ in range(warmup))
        out[impl] = {"loss": loss, "grad_norm": gnorm, "inner": max(1, math.ceil(block_s / t)), "times_ms": []}
    for r in range(repeat):
        for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
            out[impl]["times_ms"].append(1e3 * time_block(steps[impl], out[impl]["inner"]))
    for res in out.values():
        q25, med, q75 = np.percentile(res["times_ms"], [25, 50, 75])
        res.update(median_ms=float(med), iqr_ms=float(q75 - q25))
    ref = out.get(REFERENCE)
    for impl, res in out.items():
        res["ratio_tinynim_over_impl"] = ref["median_ms"] / res["median_ms"] if ref else None
        res["mismatch"] = None if ref is None or impl == REFERENCE else max(
            abs(res[k] - ref[k]) / max(abs(ref[k]), 1e-30) for k in ("loss", "grad_norm"))
    return out


def _rss_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MiB."""
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def memory_probe(name: str, impl: str, steps: int = 3) -> float:
    """Peak RSS growth (MiB) of `steps` steps over the warmed-up baseline (see module doc)."""
    case = load_cases()[name]
    with float32_backend():
        step = case.setup(impl)
    block(step())
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")    # reset the peak-RSS mark (Linux >= 4.0)
    base = _rss_mib("VmRSS")
    for _ in range(steps):
        block(step())
    return _rss_mib("VmHWM") - base


def measure_memory(name: str, impl: str) -> float | None:
    """Run :func:`memory_probe` in a fresh interpreter; None where that is impossible."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [sys.executable, "-m", "benchmarks.run", "--memory-probe", name, impl]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MEMORY_ENV},
                          cwd=Path(benchmarks.__file__).parent.parent, timeout=600)
    if proc.returncode != 0:
        print(f"memory probe {name} {impl} failed:\n{proc.stderr}", file=sys.stderr)
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def environment() -> dict:
    from tinynim import __version__
    from tinynim.backend import get_backend
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "tinynim": __version__, "tinynim_backend": get_backend().name,
           "threads_env": os.environ.get("OMP_NUM_THREADS", "default"), "load_avg_1m": os.getloadavg()[0]}
    if unavailable("torch") is None:
        import torch
        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    if unavailable("jax") is None:
        import jax
        env.update(jax=jax.__version__, jax_devices=str(jax.devices()))
    return env


def _fmt(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)


def table(results: dict, infos: dict) -> str:
    lines = ["| case | sizes | impl | median ms | IQR ms | tinynim ÷ impl | peak MiB | check |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for name, per_impl in results.items():
        for impl, r in per_impl.items():
            if "skipped" in r:
                lines.append(f"| {name} | {infos[name]} | {impl} | – | – | – | – | skipped: {r['skipped']} |")
                continue
            check = "reference" if impl == REFERENCE else (
                "n/a" if r.get("mismatch") is None else
                f"{'ok' if r['mismatch'] <= RTOL else 'MISMATCH'} ({r['mismatch']:.0e})")
            lines.append(f"| {name} | {infos[name]} | {impl} | {r['median_ms']:.3f} | {r['iqr_ms']:.3f} | "
                         f"{_fmt(r.get('ratio_tinynim_over_impl'))} | {_fmt(r.get('peak_rss_growth_mib'), '.1f')} "
                         f"| {check} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run only cases whose 'module/case' name contains this (case-insensitive)")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds per implementation (default 15, quick 3)")
    ap.add_argument("--json", type=Path, help="also write machine-readable results here")
    ap.add_argument("--quick", action="store_true", help="few rounds, short blocks: a smoke test, not a measurement")
    ap.add_argument("--impl", action="append", choices=IMPLS, help="restrict to these implementations (repeatable)")
    ap.add_argument("--block-ms", type=float, default=None, help="target duration of one timed block (default 200, quick 20)")
    ap.add_argument("--threads", type=int, help="threads for numpy's BLAS, torch and XLA (default: libraries' own)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--memory-probe", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        n = str(args.threads)
        env = {**os.environ, **dict.fromkeys(THREAD_VARS, n),
               "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *sys.argv[1:]], env)
    if args.memory_probe:
        print(memory_probe(*args.memory_probe))
        return 0
    repeat = args.repeat or (3 if args.quick else 15)
    block_s = (args.block_ms or (20 if args.quick else 200)) / 1e3
    cases = load_cases(args.only)
    if not cases:
        print(f"no benchmark case matches --only {args.only!r}", file=sys.stderr)
        return 2
    env = environment()
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    results, infos, bad = {}, {}, False
    for name, case in cases.items():
        infos[name] = case.info
        wanted = [i for i in case.impls if not args.impl or i in args.impl]
        runnable = [i for i in wanted if unavailable(i) is None]
        print(f"{name}: {', '.join(runnable)} ...", file=sys.stderr, flush=True)
        per_impl = bench_case(case, runnable, repeat=repeat, warmup=2 if args.quick else 3, block_s=block_s)
        for impl in runnable:
            if not args.no_memory:
                per_impl[impl]["peak_rss_growth_mib"] = measure_memory(name, impl)
            bad |= (per_impl[impl].get("mismatch") or 0) > RTOL
        for impl in wanted:
            if impl not in runnable:
                per_impl[impl] = {"skipped": unavailable(impl)}
        results[name] = per_impl
    print(table(results, infos))
    print(f"\nMedian ms per training step (forward + loss + backward) over {repeat} rounds; "
          "'tinynim ÷ impl' < 1 means tinynim is faster. peak MiB: peak RSS growth during a step "
          "over the warmed-up baseline, fresh process per row. CPU, float32.")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "repeat": repeat, "rtol": RTOL,
                                         "cases": {n: {"info": infos[n], "results": r} for n, r in results.items()}},
                                        indent=1))
    if bad:
        print(f"MISMATCH: some implementation disagrees with tinynim by more than {RTOL}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
