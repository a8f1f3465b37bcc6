"""Time one training step (forward + loss + backward) of tinynim, compiled tinynim, torch
autograd and JAX, beside the machine's own limits.

    python -m benchmarks.run [--only SUBSTR] [--skip SUBSTR] [--repeat N] [--suite-repeats K] [--threads 1]
                             [--device cpu|cuda] [--dry-run] [--json PATH] [--results PATH]
                             [--update-readme] [--quick] [--no-memory] [--memory-of IMPL]

Method
------
* Implementations (``benchmarks.common``): ``tinynim`` eager on the active backend
  (``TINYNIM_BACKEND``, default numpy; cupy with ``--device cuda``), ``tinynim-jit`` (the
  same step on the jax backend under ``tinynim.compile``), ``torch`` (autograd), ``jax``
  (``jit(value_and_grad)`` of the textbook maths). float32 throughout.
* Check: each implementation's loss and global gradient norm must match tinynim's to
  ``RTOL``; a mismatch is shown and makes the exit code 1.
* Timing: warm-up (compilers run here), then ``--repeat`` rounds; in each round every
  implementation runs a block of ``inner`` steps (``inner`` chosen so a block lasts about
  ``--block-ms``), implementations interleaved and their order rotated round by round; GC
  off inside a block; every step ends at its synchronisation point (``SYNC``).
* Ratios: for each round, tinynim's time ÷ the other's time *in that round* (neighbours in
  time share the machine's state); reported: the median of those per-round ratios, their
  IQR and min–max. ``--suite-repeats K`` runs the whole suite K times (cases in order, each
  with its rounds) and adds the min–max of the K per-run medians.
* Roofline: the run measures the machine's float32 GEMM GFLOP/s and memory bandwidth
  (``benchmarks.machine``) at its start and end; for each case (textbook ``flops`` and
  ``bytes``) the roofline time is max(flops / GEMM rate, bytes / bandwidth) with the
  start-of-run probes, and each implementation's achieved fraction is roofline ÷ measured.
* Peak memory: each (case, implementation) runs again in a fresh subprocess: setup, one
  warm-up step, then the peak-RSS mark is reset (``/proc/self/clear_refs``) and a few steps
  run; reported: peak resident set during them minus the resident set before, in MiB. glibc
  returns large blocks to the OS (``MALLOC_MMAP_THRESHOLD_``) so freed memory is not already
  resident; caching allocators (XLA) can still make this an underestimate. Linux only.
  ``--memory-of tinynim --memory-of torch`` probes only the pair the memory goal compares
  (each probe is a fresh interpreter: on a loaded machine they dominate the run).
* Goals (issue 10), printed PASS/FAIL on medians, with the spread beside them: eager
  tinynim ÷ torch <= each case's ``goal_vs_torch``; tinynim-jit ÷ jax <= ``GOAL_JIT_VS_JAX``;
  tinynim's peak MiB <= torch's.
* Threads: library defaults, or ``--threads N`` for all (OMP/OPENBLAS/MKL_NUM_THREADS,
  torch, XLA; the runner restarts itself, since libraries read them at import). On a
  machine shared with other jobs, ``--threads 1`` is the stable choice.
* ``--device cuda``: tinynim on cupy, tinynim-jit and jax on the GPU, torch on cuda:0.
  ``--dry-run`` builds that plan and runs every step once on CPU stand-ins (numpy for cupy,
  torch CPU for torch-cuda, jax CPU for jax-gpu), calling the GPU synchronisation points
  through recorders: it checks sizes, devices, the plan and that every step reaches its
  synchronisation point, without a GPU (tests/test_benchmarks.py runs it).
* ``--results PATH`` writes the Markdown report (``benchmarks/RESULTS.md`` is generated
  this way, never edited by hand); ``--update-readme`` copies its summary block into
  README.md (tests/test_benchmarks.py checks they agree).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import pkgutil
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import benchmarks
from benchmarks import machine, report
from benchmarks.common import DEVICES, IMPLS, LIBRARY, REFERENCE, TinynimStep, summary, unavailable
from tinynim.tree import leaves

RTOL = 2e-3          # float32 losses/gradient norms summed in different orders agree to ~1e-6;
                     # 2e-3 still catches a missing term or a wrong scale
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
ROOT = Path(benchmarks.__file__).parent.parent


def load_cases(only: str | None = None, skip=()) -> dict:
    """``{"module/case": Case}`` for every bench module whose name contains `only` and none
    of `skip` (substrings, case-insensitive)."""
    found = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        for case in module.CASES:
            full = f"{info.name.removeprefix('bench_')}/{case.name}"
            if (only is None or only.lower() in full.lower()) and not any(s.lower() in full.lower() for s in skip):
                found[full] = case
    return found


# -- where each implementation runs, and how the runner waits for it ---------------------

@dataclass
class Target:
    """One implementation's place: tinynim backend (for tinynim, tinynim-jit), device, and
    the synchronisation point after each step. ``standin`` is the CPU place a dry run uses."""
    impl: str
    backend: str | None          # tinynim backend name, or None for the torch/jax twins
    device: str | None           # None: the backend's default device
    standin: tuple | None = None  # (backend, device) on the CPU for --dry-run
    syncs: list = field(default_factory=list)   # dry run: what each recorded sync saw

    @property
    def sync_name(self) -> str:
        library = self.backend or LIBRARY[self.impl]
        if library == "jax":
            return "jax.block_until_ready(result)"
        if library == "torch" and str(self.device).startswith("cuda"):
            return f"torch.cuda.synchronize({self.device!r})"
        if library == "cupy":
            return f"cupy.cuda.Device({self.device.split(':')[-1]}).synchronize()"
        return "none (synchronous on the CPU)"


def plan(device: str, dry_run: bool = False) -> dict:
    """``{impl: Target}`` for ``--device`` cpu or cuda (see the module docstring)."""
    if device == "cpu":
        from tinynim.backend import get_backend
        active = get_backend()
        return {"tinynim": Target("tinynim", active.name, os.environ.get("TINYNIM_DEVICE") or None),
                "tinynim-jit": Target("tinynim-jit", "jax", "cpu"),
                "torch": Target("torch", None, "cpu"), "jax": Target("jax", None, "cpu")}
    if device != "cuda":
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    targets = {"tinynim": Target("tinynim", "cupy", "cuda:0", ("numpy", "cpu")),
               "tinynim-jit": Target("tinynim-jit", "jax", "gpu:0", ("jax", "cpu")),
               "torch": Target("torch", None, "cuda:0", (None, "cpu")),
               "jax": Target("jax", None, "gpu", (None, "cpu"))}
    if not dry_run:
        for t in targets.values():
            t.standin = None
    return targets


def _place(target: Target) -> tuple:
    return target.standin or (target.backend, target.device)


def device_check(target: Target) -> tuple[bool, str]:
    """Ask the target's own library for its intended device, without running anything:
    ``(ok, note)``; ok is False only for a device the library does not understand (no GPU
    here is fine for a dry run)."""
    from tinynim.backend import BackendError, use_backend
    library = target.backend or LIBRARY[target.impl]
    try:
        if target.backend is not None:
            with use_backend(target.backend, device=target.device):
                return True, "usable"
        if library == "torch":
            import torch
            dev = torch.device(target.device)
            return True, "usable" if dev.type == "cpu" or torch.cuda.is_available() else "no CUDA here"
        import jax
        return True, f"usable ({jax.devices(target.device)[0]})"
    except BackendError as err:
        message = str(err)
        if "is not usable" in message:
            return True, f"{library} not installed"
        ok = "needs" not in message and "is not a" not in message and "unknown" not in message
        return ok, ("no GPU here" if "GPU" in message or "CUDA" in message else message.split(";")[0])
    except RuntimeError as err:                             # jax.devices("gpu") without a GPU
        return "Unknown backend" in str(err), "no GPU here"


def synchronizer(target: Target) -> Callable:
    """The function called on every step's result before the clock stops."""
    if target.standin is not None:                     # dry run: record instead of waiting
        from benchmarks.common import block

        def record(result):
            target.syncs.append(len(result[1]) if isinstance(result[1], (dict, list, tuple)) else 1)
            return block(result)                       # the stand-in's own wait (jax CPU)
        return record
    library = target.backend or LIBRARY[target.impl]
    if library == "jax":
        import jax
        return jax.block_until_ready
    if library == "torch" and str(target.device).startswith("cuda"):
        import torch
        return lambda result: (torch.cuda.synchronize(target.device), result)[1]
    if library == "cupy":
        import cupy
        index = int(target.device.split(":")[-1])
        return lambda result: (cupy.cuda.Device(index).synchronize(), result)[1]
    return lambda result: result


@contextlib.contextmanager
def placed(target: Target):
    """Activate the target's tinynim backend (float32) and the twins' devices for setup."""
    from tinynim.backend import use_backend
    backend, device = _place(target)
    if backend is not None:
        with use_backend(backend, device=device, dtype="float32"):
            yield
        return
    old = DEVICES[target.impl]
    DEVICES[target.impl] = device
    try:
        yield
    finally:
        DEVICES[target.impl] = old


def why_not(case, impl: str) -> str | None:
    """Why `impl` does not run for `case` (None when it does)."""
    return case.skip.get(impl) or unavailable(impl)


def build_step(case, target: Target):
    """The zero-argument step of `case` for `target`, or a string saying why there is none."""
    with placed(target):
        if target.impl == "tinynim-jit":
            step = case.setup("tinynim")
            if not isinstance(step, TinynimStep):
                return "the case's tinynim step is a closure (return a benchmarks.common.TinynimStep to compile it)"
            return step.compiled()
        return case.setup(target.impl)


# -- timing ------------------------------------------------------------------------------

def time_block(step, sync, inner: int) -> float:
    """Seconds per step over `inner` consecutive synchronised steps, GC off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(inner):
            sync(step())
        return (time.perf_counter() - t0) / inner
    finally:
        gc.enable()


def prepare(case, targets, impls) -> dict:
    """Set up and check every implementation once: ``{impl: {"step", "sync", "loss", ...}}``
    or ``{impl: {"skipped": why}}``."""
    out = {}
    for impl in impls:
        step = build_step(case, targets[impl])
        if isinstance(step, str):
            out[impl] = {"skipped": step}
            continue
        sync = synchronizer(targets[impl])
        result = sync(step())
        loss, gnorm = summary(result)
        out[impl] = {"step": step, "sync": sync, "loss": loss, "grad_norm": gnorm,
                     "n_params": sum(math.prod(g.shape) for g in leaves(result[1]))}
    ref = out.get(REFERENCE, {})
    for impl, res in out.items():
        if "loss" in res and "loss" in ref and impl != REFERENCE:
            res["mismatch"] = max(abs(res[k] - ref[k]) / max(abs(ref[k]), 1e-30) for k in ("loss", "grad_norm"))
    return out


def time_case(prepared: dict, *, repeat: int, warmup: int, block_s: float) -> dict:
    """One run of a case: ``{impl: [ms per step, one per round]}``, implementations
    interleaved and rotated round by round."""
    live = [impl for impl, res in prepared.items() if "step" in res]
    inner = {}
    for impl in live:
        res = prepared[impl]
        t = min(time_block(res["step"], res["sync"], 1) for _ in range(warmup))
        inner[impl] = max(1, math.ceil(block_s / t))
    times = {impl: [] for impl in live}
    for r in range(repeat):
        for impl in live[r % len(live):] + live[:r % len(live)]:
            times[impl].append(1e3 * time_block(prepared[impl]["step"], prepared[impl]["sync"], inner[impl]))
    return times


# -- peak memory -------------------------------------------------------------------------

def _rss_mib(field_name: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in MiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field_name}:\s+(\d+) kB", status).group(1)) / 1024


def memory_probe(name: str, impl: str, device: str, steps: int = 3) -> float:
    """Peak RSS growth (MiB) of `steps` steps over the warmed-up baseline (module doc)."""
    case, target = load_cases()[name], plan(device)[impl]
    step = build_step(case, target)
    sync = synchronizer(target)
    sync(step())
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")    # reset the peak-RSS mark (Linux >= 4.0)
    base = _rss_mib("VmRSS")
    for _ in range(steps):
        sync(step())
    return _rss_mib("VmHWM") - base


def measure_memory(name: str, impl: str, device: str) -> float | None:
    """Run :func:`memory_probe` in a fresh interpreter; None where that is impossible."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    cmd = [sys.executable, "-m", "benchmarks.run", "--memory-probe", name, impl, "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MEMORY_ENV},
                          cwd=ROOT, timeout=900)
    if proc.returncode != 0:
        print(f"memory probe {name} {impl} failed:\n{proc.stderr}", file=sys.stderr)
        return None
    return float(proc.stdout.strip().splitlines()[-1])


# -- the run -----------------------------------------------------------------------------

def run_suite(cases, targets, impls_wanted, *, suite_repeats, repeat, warmup, block_s, memory, device) -> dict:
    """Everything the report needs: per case, per impl, the times of every round of every
    suite repeat, the check, the peak memory (of the implementations in `memory`)."""
    results = {}
    prepared = {}
    for name, case in cases.items():
        wanted = [i for i in case.impls if i in impls_wanted]
        runnable = [i for i in wanted if why_not(case, i) is None]
        print(f"{name}: setting up {', '.join(runnable)}", file=sys.stderr, flush=True)
        prepared[name] = prepare(case, targets, runnable)
        results[name] = {impl: {"skipped": why_not(case, impl)} if impl not in runnable else
                         {k: v for k, v in prepared[name][impl].items() if k not in ("step", "sync")}
                         for impl in wanted}
        for res in results[name].values():
            res.setdefault("runs", [])
    for k in range(suite_repeats):
        for name in cases:
            print(f"run {k + 1}/{suite_repeats}: {name}", file=sys.stderr, flush=True)
            for impl, times in time_case(prepared[name], repeat=repeat, warmup=warmup, block_s=block_s).items():
                results[name][impl]["runs"].append(times)
    prepared.clear()
    gc.collect()
    if memory:
        for name in cases:
            for impl, res in results[name].items():
                if "skipped" not in res and impl in memory:
                    res["peak_mib"] = measure_memory(name, impl, device)
    return results


def dry_run(cases, targets, impls_wanted) -> int:
    """Build the GPU plan and run each step once on its CPU stand-in (module docstring)."""
    rows, bad = [], False
    for name, case in cases.items():
        wanted = [i for i in case.impls if i in impls_wanted and why_not(case, i) is None]
        prepared = prepare(case, targets, wanted)
        for impl in wanted:
            t, res = targets[impl], prepared[impl]
            library = t.backend or LIBRARY[impl]
            device_ok, note = device_check(t)
            device = f"{t.device} ({note})"
            if "skipped" in res:
                rows.append((name, impl, library, device, "-", "-", "-", f"skipped: {res['skipped']}"))
                continue
            ok = res.get("mismatch") is None or res["mismatch"] <= RTOL
            bad |= not ok or not t.syncs or not device_ok
            standin = "/".join(x for x in (_place(t)[0] or library, _place(t)[1]) if x)
            rows.append((name, impl, library, device, standin, res["n_params"], t.sync_name,
                         f"{len(t.syncs)} sync(s), {'ok' if ok else 'MISMATCH'}"))
            t.syncs.clear()
    print(report.dry_run_table(rows, cases))
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run only cases whose 'module/case' name contains this (case-insensitive)")
    ap.add_argument("--skip", action="append", default=[], help="leave out cases whose name contains this (repeatable)")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds per implementation and run (default 15, quick 3)")
    ap.add_argument("--suite-repeats", type=int, default=1, help="run the whole suite this many times (RESULTS.md: 3)")
    ap.add_argument("--impl", action="append", choices=IMPLS, help="restrict to these implementations (repeatable)")
    ap.add_argument("--block-ms", type=float, default=None, help="target duration of one timed block (default 200, quick 20)")
    ap.add_argument("--threads", type=int, help="threads for numpy's BLAS, torch and XLA (default: libraries' own)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default cpu)")
    ap.add_argument("--dry-run", action="store_true", help="check the plan for --device on CPU stand-ins, no timing")
    ap.add_argument("--quick", action="store_true", help="few rounds, short blocks: a smoke test, not a measurement")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--memory-of", action="append", choices=IMPLS,
                    help="measure peak memory only for these implementations (repeatable; default all)")
    ap.add_argument("--json", type=Path, help="also write machine-readable results here")
    ap.add_argument("--results", type=Path, help="write the Markdown report here (benchmarks/RESULTS.md)")
    ap.add_argument("--update-readme", action="store_true", help="copy the report's summary block into README.md")
    ap.add_argument("--memory-probe", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        n = str(args.threads)
        env = {**os.environ, **dict.fromkeys(THREAD_VARS, n),
               "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}"}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *sys.argv[1:]], env)
    if args.threads:
        with contextlib.suppress(ImportError):
            import torch
            torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(memory_probe(*args.memory_probe, device=args.device))
        return 0
    cases = load_cases(args.only, args.skip)
    if not cases:
        print(f"no benchmark case matches --only {args.only!r} without --skip {args.skip}", file=sys.stderr)
        return 2
    impls = tuple(args.impl or IMPLS)
    targets = plan(args.device, dry_run=args.dry_run)
    if args.dry_run:
        return dry_run(cases, targets, impls)
    fingerprint, start = machine.fingerprint(), machine.probes()
    print(report.fingerprint_line(fingerprint, start), file=sys.stderr, flush=True)
    repeat = args.repeat or (3 if args.quick else 15)
    results = run_suite(cases, targets, impls, suite_repeats=args.suite_repeats, repeat=repeat,
                        warmup=2 if args.quick else 3, block_s=(args.block_ms or (20 if args.quick else 200)) / 1e3,
                        memory=() if args.no_memory else tuple(args.memory_of or IMPLS), device=args.device)
    end = machine.probes()
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    run = report.Run(command=command, fingerprint=fingerprint, probes={"start": start, "end": end},
                     repeat=repeat, suite_repeats=args.suite_repeats, device=args.device, targets=targets,
                     cases=cases, results=results, rtol=RTOL)
    text = report.markdown(run)
    print(text)
    if args.results:
        args.results.write_text(text)
    if args.update_readme:
        report.update_readme(ROOT / "README.md", text)
    if args.json:
        args.json.write_text(json.dumps(report.as_json(run), indent=1))
    if report.mismatched(run):
        print(f"MISMATCH: some implementation disagrees with tinynim by more than {RTOL}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
