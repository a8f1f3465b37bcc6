"""Build every example as a Jupyter notebook and execute it in a real kernel.

    pip install -e ".[notebooks]"
    python tools/notebooks.py [--quick] [--out DIR] [examples/01_icl_gradient_descent.py ...]

Each ``examples/NN_topic.py`` (jupytext percent format) becomes ``DIR/NN_topic.ipynb``
(default ``examples/notebooks/``, not tracked), executed top to bottom by nbclient in an
ipykernel ``python3`` kernel, so the outputs and inline figures are those a student sees.
The kernel runs in ``examples/`` (figures go to ``examples/figures/``), imports this
checkout's code (the repository root is put first on its PYTHONPATH), shows figures inline
(an inherited ``MPLBACKEND`` is dropped) and, with ``--quick``, has ``TINYNIM_QUICK=1`` in
its environment. One line per notebook: time, inline figures, saved figures; exit status 1
if any notebook failed. ``tests/test_notebooks.py`` runs :func:`execute` on every example.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def examples() -> list[Path]:
    return sorted(EXAMPLES.glob("[0-9]*.py"))


def kernel_env(*, quick: bool, figures: Path | None = None) -> dict:
    """The kernel's environment: ours, with this checkout first on PYTHONPATH, inline figures,
    TINYNIM_QUICK set or cleared, and TINYNIM_FIGURES when `figures` is given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("MPLBACKEND", None)                   # e.g. Agg from CI: ipykernel's default is inline
    env.pop("TINYNIM_QUICK", None)
    if quick:
        env["TINYNIM_QUICK"] = "1"
    if figures is not None:
        env["TINYNIM_FIGURES"] = str(figures)
    return env


def execute(script: Path, *, quick: bool = False, figures: Path | None = None, timeout: int = 1800):
    """The example `script` as a notebook (nbformat node), executed in a fresh python3 kernel
    whose working directory is the script's folder. Raises nbclient's CellExecutionError
    (with the cell and the traceback) if a cell fails."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(script)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(script).resolve().parent)}})
    client.execute(env=kernel_env(quick=quick, figures=figures))
    return nb


def inline_figures(nb) -> int:
    """How many PNG images the notebook's outputs display."""
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def main(argv=None) -> int:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scripts", nargs="*", type=Path, help="examples to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="TINYNIM_QUICK=1 in the kernel")
    parser.add_argument("--out", type=Path, default=EXAMPLES / "notebooks", help="where the .ipynb files go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for script in args.scripts or examples():
        t0 = time.perf_counter()
        try:
            nb = execute(script, quick=args.quick)
        except CellExecutionError as err:
            failed.append(script.name)
            print(f"{script.name}: FAILED after {time.perf_counter() - t0:.0f} s\n{err}", file=sys.stderr)
            continue
        target = args.out / (script.stem + ".ipynb")
        nbformat.write(nb, target)
        print(f"{target}: {time.perf_counter() - t0:.0f} s, {inline_figures(nb)} inline figure(s)")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
