"""Statistics and the Markdown report of a benchmark run (``benchmarks/RESULTS.md``).

Per implementation: median and IQR of ms per step over every round of every suite run.
Per pair (a ÷ b, a and b timed in the same round): the median of the per-round ratios,
their IQR and min–max, and the min–max of the per-run medians. Roofline: see
:mod:`benchmarks.run`. The summary block (between ``SUMMARY_BEGIN`` and ``SUMMARY_END``) is
what README.md quotes, verbatim.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAIRS = (("tinynim", "torch"), ("tinynim", "jax"), ("tinynim-jit", "jax"))
GOAL_JIT_VS_JAX = 0.8           # issue 10: compiled tinynim <= 0.8× JAX jit(value_and_grad)
GOAL_SHORT = {"eager tinynim ÷ torch autograd": "eager ÷ torch", "tinynim-jit ÷ JAX jit(value_and_grad)":
              "jit ÷ JAX", "peak MiB: tinynim ÷ torch": "peak MiB ÷ torch"}
SUMMARY_BEGIN, SUMMARY_END = "<!-- benchmark-summary:begin -->", "<!-- benchmark-summary:end -->"


@dataclass
class Run:
    command: str
    fingerprint: dict
    probes: dict                 # {"start": {...}, "end": {...}} from benchmarks.machine.probes
    repeat: int
    suite_repeats: int
    device: str
    targets: dict
    cases: dict
    results: dict                # {case: {impl: {"runs": [[ms per round], ...], ...} or {"skipped"}}}
    rtol: float


# -- statistics --------------------------------------------------------------------------

def times(res) -> dict | None:
    """Median and IQR (ms) over every round of every run; None if skipped."""
    pooled = [t for run in res.get("runs", []) for t in run]
    if not pooled:
        return None
    q25, med, q75 = np.percentile(pooled, [25, 50, 75])
    return {"median": float(med), "iqr": float(q75 - q25)}


def ratio(results, a, b) -> dict | None:
    """a ÷ b from per-round ratios (module docstring); None if either did not run."""
    ra, rb = results.get(a, {}).get("runs"), results.get(b, {}).get("runs")
    if not ra or not rb:
        return None
    per_run = [np.asarray(x) / np.asarray(y) for x, y in zip(ra, rb)]
    pooled = np.concatenate(per_run)
    q25, med, q75 = np.percentile(pooled, [25, 50, 75])
    medians = [float(np.median(r)) for r in per_run]
    return {"median": float(med), "iqr": float(q75 - q25), "min": float(pooled.min()), "max": float(pooled.max()),
            "run_min": min(medians), "run_max": max(medians), "runs": len(per_run)}


def roofline_ms(case, probes) -> float | None:
    """max(flops / GEMM rate, bytes / bandwidth) in ms, from the start-of-run probes."""
    if case.flops is None or case.bytes is None:
        return None
    return 1e3 * max(case.flops / (probes["gemm_gflops"] * 1e9), case.bytes / (probes["bandwidth_gbs"] * 1e9))


def goals(run: Run) -> list:
    """``[(goal, case, measured dict or None, bound)]`` for every goal that applies."""
    out = []
    for name, case in run.cases.items():
        res = run.results[name]
        if case.goal_vs_torch is not None:
            out.append(("eager tinynim ÷ torch autograd", name, ratio(res, "tinynim", "torch"), case.goal_vs_torch))
        if "tinynim-jit" in res and "jax" in res:
            out.append(("tinynim-jit ÷ JAX jit(value_and_grad)", name, ratio(res, "tinynim-jit", "jax"),
                        GOAL_JIT_VS_JAX))
        mine, theirs = res.get("tinynim", {}).get("peak_mib"), res.get("torch", {}).get("peak_mib")
        if mine is not None and theirs is not None:
            out.append(("peak MiB: tinynim ÷ torch", name, {"median": mine / max(theirs, 1e-9), "note":
                        f"{mine:.1f} vs {theirs:.1f} MiB"}, 1.0))
    return out


def verdict(measured, bound) -> str:
    if measured is None:
        return "n/a (not measured)"
    if measured["median"] > bound:
        return "FAIL"
    if measured.get("run_max", measured["median"]) > bound:
        return "PASS (borderline: a run's median is above the bound)"
    return "PASS"


def mismatched(run: Run) -> bool:
    return any((r.get("mismatch") or 0) > run.rtol for res in run.results.values() for r in res.values())


# -- formatting --------------------------------------------------------------------------

def fmt_ratio(r) -> str:
    if r is None:
        return "–"
    runs = f"; runs {r['run_min']:.2f}–{r['run_max']:.2f}" if r["runs"] > 1 else ""
    return f"{r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}, IQR {r['iqr']:.2f}{runs})"


def fingerprint_line(fp: dict, probes: dict) -> str:
    return (f"{fp['date']} · {fp['cpu']} ({fp['simd']}), {fp['cores']} cores ({fp['cores_usable']} usable), "
            f"{fp['memory_gib']} GiB · load {fp['load_avg']} · GEMM {probes['gemm_gflops']} GFLOP/s, "
            f"bandwidth {probes['bandwidth_gbs']} GB/s")


def _machine(run: Run) -> list:
    fp, s, e = run.fingerprint, run.probes["start"], run.probes["end"]
    libs = ", ".join(f"{k} {fp[k]}" for k in ("python", "numpy", "array_api_compat", "torch", "jax", "jaxlib", "tinynim"))
    places = ", ".join(f"{i}: {t.backend or i} on {t.device or 'default device'}" for i, t in run.targets.items())
    return [
        f"- **date** {fp['date']}",
        f"- **CPU** {fp['cpu']} ({fp['simd']}), {fp['cores']} logical cores ({fp['cores_usable']} usable), "
        f"{fp['memory_gib']} GiB; {fp['os']}",
        f"- **libraries** {libs}",
        f"- **BLAS** {fp['blas']}",
        f"- **threads** {', '.join(f'{k}={v}' for k, v in fp['threads'].items())}; **where** {places}",
        f"- **load average** (1, 5, 15 min) at start {fp['load_avg']}; 1 min at the end {e['load_avg_1m']}",
        f"- **probes** float32 GEMM n=1024 (numpy BLAS): {s['gemm_gflops']} GFLOP/s at start, "
        f"{e['gemm_gflops']} at end; memory bandwidth (c = a + b, 3 × 64 MiB float32): "
        f"{s['bandwidth_gbs']} GB/s at start, {e['bandwidth_gbs']} at end",
    ]


def summary_block(run: Run) -> str:
    fp = run.fingerprint
    lines = [SUMMARY_BEGIN,
             f"Measured {fp['date']} on {fp['cpu']} ({fp['cores']} cores, load {fp['load_avg'][0]}), "
             f"{run.suite_repeats} suite runs × {run.repeat} rounds, float32, `{run.command}`. "
             "Ratios below 1: tinynim is faster. Each cell: median of per-round ratios "
             "(min–max over rounds, IQR; runs: min–max of the per-run medians).", "",
             "| case | tinynim ÷ torch | tinynim ÷ JAX | tinynim-jit ÷ JAX | issue 10 goals |", "|---|---|---|---|---|"]
    by_case = {}
    for goal, name, measured, bound in goals(run):
        by_case.setdefault(name, []).append(f"{GOAL_SHORT[goal]} ≤ {bound:g}: {verdict(measured, bound).split(' ')[0]}")
    for name, res in run.results.items():
        lines.append(f"| {name} | " + " | ".join(fmt_ratio(ratio(res, a, b)) for a, b in PAIRS) + " | "
                     + ("; ".join(by_case.get(name, [])) or "–") + " |")
    met = [g for g in goals(run) if verdict(g[2], g[3]).startswith("PASS")]
    lines += ["", f"Goals met on this machine: {len(met)} of {len(goals(run))} (PASS on the median; the Goals "
              "table in benchmarks/RESULTS.md marks those a run's median crossed).", SUMMARY_END]
    return "\n".join(lines)


def _goals_table(run: Run) -> list:
    lines = ["| goal | case | measured | bound | result |", "|---|---|---|---:|---|"]
    for goal, name, measured, bound in goals(run):
        shown = "–" if measured is None else (measured["note"] if "note" in measured else fmt_ratio(measured))
        lines.append(f"| {goal} | {name} | {shown} | ≤ {bound:g} | {verdict(measured, bound)} |")
    return lines


def _times_table(run: Run) -> list:
    probes = run.probes["start"]
    lines = ["| case | sizes | GFLOP | MB | roofline ms | impl | median ms | IQR ms | % of roofline | peak MiB | check |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for name, res in run.results.items():
        case = run.cases[name]
        roof = roofline_ms(case, probes)
        head = (f"| {name} | {case.info} | {'–' if case.flops is None else f'{case.flops / 1e9:.3f}'} | "
                f"{'–' if case.bytes is None else f'{case.bytes / 1e6:.1f}'} | {'–' if roof is None else f'{roof:.3f}'}")
        for impl, r in res.items():
            if "skipped" in r:
                lines.append(f"{head} | {impl} | – | – | – | – | skipped: {r['skipped']} |")
                continue
            t = times(r)
            frac = "–" if roof is None else f"{100 * roof / t['median']:.0f}"
            check = "reference" if impl == "tinynim" else (
                "n/a" if r.get("mismatch") is None else
                f"{'ok' if r['mismatch'] <= run.rtol else 'MISMATCH'} ({r['mismatch']:.0e})")
            peak = r.get("peak_mib")
            lines.append(f"{head} | {impl} | {t['median']:.3f} | {t['iqr']:.3f} | {frac} | "
                         f"{'–' if peak is None else f'{peak:.1f}'} | {check} |")
    return lines


def markdown(run: Run) -> str:
    return "\n".join([
        "# Benchmark results", "",
        f"Generated by `{run.command}`; not edited by hand (regenerate with that command). "
        "One training step = forward + loss + backward on fixed data, float32; tinynim-jit is "
        "tinynim's own step on the jax backend under `tinynim.compile` (jax.jit). Method: "
        "`benchmarks/run.py` docstring.", "",
        "## Machine", "", *_machine(run), "",
        "## Summary", "", summary_block(run), "",
        "## Goals (issue 10)", "", *_goals_table(run), "",
        "## Times, roofline and memory", "",
        "GFLOP and MB: textbook counts per step (`benchmarks/common.py`); roofline ms = max(GFLOP ÷ GEMM rate, "
        "MB ÷ bandwidth) with the start-of-run probes; % of roofline = roofline ÷ median. peak MiB: peak RSS "
        "growth during a step, fresh process per row.", "",
        *_times_table(run), ""])


def dry_run_table(rows, cases) -> str:
    lines = ["| case | sizes | impl | library | device | ran on (stand-in) | parameters | sync point | result |",
             "|---|---|---|---|---|---|---:|---|---|"]
    for name, impl, library, device, standin, n_params, sync, result in rows:
        lines.append(f"| {name} | {cases[name].info} | {impl} | {library} | {device} | {standin} | {n_params} | "
                     f"{sync} | {result} |")
    return "\n".join(lines)


def update_readme(path, results_text: str):
    """Replace README's summary block with the one in `results_text`."""
    block = extract_summary(results_text)
    text = path.read_text()
    start, end = text.index(SUMMARY_BEGIN), text.index(SUMMARY_END) + len(SUMMARY_END)
    path.write_text(text[:start] + block + text[end:])


def extract_summary(text: str) -> str:
    start, end = text.index(SUMMARY_BEGIN), text.index(SUMMARY_END) + len(SUMMARY_END)
    return text[start:end]


def as_json(run: Run) -> dict:
    return {"command": run.command, "fingerprint": run.fingerprint, "probes": run.probes, "repeat": run.repeat,
            "suite_repeats": run.suite_repeats, "device": run.device, "rtol": run.rtol,
            "cases": {n: {"info": run.cases[n].info, "flops": run.cases[n].flops, "bytes": run.cases[n].bytes,
                          "results": r, "ratios": {f"{a} / {b}": ratio(r, a, b) for a, b in PAIRS}}
                      for n, r in run.results.items()}}
