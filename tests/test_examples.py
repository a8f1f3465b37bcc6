"""Every ``examples/*.py`` runs as a script in quick mode (TINYNIM_QUICK=1, Agg) on numpy,
torch (CPU) and array_api_strict, saves its figures, which must pass the readability checks of
``tools/figures.py`` (labels, colorbars, legends off the data, no twin axes, no tiny or
overlapping text), and computes the same numbers on all three.

A crash, a failed assertion inside an example (they check their own claims) or any other
non-zero exit fails the test. New examples are picked up by the glob; the only convention
used is that an example leaves its numbers in a global dict ``measured``
({experiment: {metric: value}}, what it passes to ``claims.table``), read here through
``runpy`` after the script ends.

Agreement across backends (every number, quick mode):
* array_api_strict wraps numpy's own kernels: the same operations in the same order, so
  its numbers equal numpy's to ``RTOL_STRICT`` = 1e-12 relative (allowing for a reordered
  sum in a compat route, not for a different algorithm).
* torch runs its own float32 kernels (other summation orders, fused ops): one rounding
  of float32 is 6e-8, and a few hundred Adam steps amplify such differences, so torch
  agrees to ``RTOL_TORCH`` = 2e-3 relative. Below ``ATOL`` = 1e-7 a number is rounding
  noise: the float64 identity errors of the exact claims (~1e-16) and the errors against
  central finite differences (1e-10 to 1e-8, the rounding of a difference quotient, which
  differs between numpy's and torch's kernels and thread counts: P9's grad_own_vs_fd was
  1.2e-9 on numpy and 8.3e-10 on torch in one run). Those must stay below it on every
  backend (each example asserts its claims' bounds, 1e-7 for the FD ones), not agree digit
  for digit. Conversely, torch's numbers may not all be
  bit-identical to numpy's: that would mean the example never computed on torch.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("[0-9]*.py"))
BACKENDS = ("numpy", "torch", "array_api_strict")
RTOL_STRICT, RTOL_TORCH, ATOL = 1e-12, 2e-3, 1e-7

# Run the script as __main__ with every saved figure checked (tools/figures.py prints a
# "figure problem:" line per problem), then write its `measured` numbers, flattened to
# "a/b/c" keys.
RUNNER = """
import json, runpy, sys
import numpy as np
script, out, tools = sys.argv[1], sys.argv.pop(2), sys.argv.pop(2)
sys.path.insert(0, tools)
import figures
figures.check_on_save()
g = runpy.run_path(script, run_name="__main__")
def flat(prefix, v, acc):
    if isinstance(v, dict):
        for k, x in v.items():
            flat(f"{prefix}/{k}" if prefix else str(k), x, acc)
    elif isinstance(v, (int, float, np.ndarray, np.generic)) and not isinstance(v, bool):
        for i, x in enumerate(np.asarray(v, dtype=float).ravel()):
            acc[prefix if np.ndim(v) == 0 else f"{prefix}[{i}]"] = float(x)
    return acc
json.dump(flat("", g.get("measured"), {}), open(out, "w"))
"""


def test_there_are_examples():
    assert EXAMPLES, f"no examples found under {ROOT / 'examples'}"


def run_example(path, backend, tmp_path):
    """Run `path` in quick mode on `backend`: its flattened `measured` numbers."""
    figures, out = tmp_path / f"figures-{backend}", tmp_path / f"{backend}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYNIM_")}
    env.update(TINYNIM_QUICK="1", TINYNIM_BACKEND=backend, TINYNIM_FIGURES=str(figures), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(out), str(ROOT / "tools")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, (f"{path.name} on {backend} exited with {proc.returncode}\n"
                                  f"--- stdout (tail) ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}")
    assert list(figures.glob("*.png")), f"{path.name} on {backend} saved no figure"
    problems = [line for line in proc.stdout.splitlines() if line.startswith("figure problem:")]
    assert not problems, f"{path.name} on {backend}: figures hard to read (tools/figures.py):\n" + "\n".join(problems)
    return json.loads(out.read_text())


def disagreements(ref, other, rtol):
    """Keys whose values differ by more than rtol (relative) unless both are below ATOL."""
    bad = []
    for key, a in ref.items():
        b = other[key]
        if abs(a) < ATOL and abs(b) < ATOL:
            continue
        if not math.isclose(a, b, rel_tol=rtol, abs_tol=0.0):
            bad.append(f"{key}: numpy {a:.9g}, other {b:.9g} (rel. diff {abs(a - b) / max(abs(a), abs(b)):.1e})")
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_on_every_backend(path, tmp_path):
    results = {b: run_example(path, b, tmp_path) for b in BACKENDS}
    ref = results["numpy"]
    assert ref, f"{path.name} left no numbers in a global dict `measured`"
    for backend, rtol in (("array_api_strict", RTOL_STRICT), ("torch", RTOL_TORCH)):
        got = results[backend]
        assert got.keys() == ref.keys(), f"{path.name}: {backend} measured other keys: {got.keys() ^ ref.keys()}"
        bad = disagreements(ref, got, rtol)
        assert not bad, f"{path.name}: {backend} disagrees with numpy (rtol {rtol:g}):\n" + "\n".join(bad)
    assert results["torch"] != ref, (f"{path.name}: every number on torch is bit-identical to numpy's: the "
                                     f"example cannot have computed on torch (is it pinned to numpy?)")
