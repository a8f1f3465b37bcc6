"""Figures a student can read: a checker, and the one command that remakes docs/figures.

    python tools/figures.py [--quick] [--out DIR] [examples/01_icl_gradient_descent.py ...]

runs every example (default: all; full runs unless ``--quick``) as a script with
``TINYNIM_FIGURES=DIR`` (default ``docs/figures/``, the README's figures), and checks every
figure it saves with :func:`problems`; it prints one line per figure and exits 1 if any
example failed or any figure has a problem. Regenerating the docs figures is this command
with no arguments (the full runs take the example runtimes of the README, about 10 min).

:func:`problems` is also applied to every figure of every example in quick mode by
``tests/test_examples.py``. A figure passes when, panel by panel:

* a plot has a title, an x label and a y label (with the unit or the quantity's definition in
  it), and no twin axis: one message per panel, read against one scale;
* an image (a matrix) has a title and a colorbar, its own or that of an image drawn with the
  same colormap and limits;
* a legend covers no data: no point of a line (sampled along each segment), marker or bar
  of its panel lies inside the legend's box;
* no text (ticks, labels, titles, legends) is smaller than ``MIN_FONT`` points, and no two
  texts overlap (crowded ticks, a label running into the next panel).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MIN_FONT = 7.0          # points: smaller text is unreadable in a notebook or on a projector


def _is_colorbar(ax) -> bool:
    return hasattr(ax, "_colorbar")


def _tick_labels(ax) -> list:
    """The tick labels drawn: those of ticks inside the view limits."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    inside = lambda v, lo, hi: lo - 1e-9 * (hi - lo) <= v <= hi + 1e-9 * (hi - lo)
    return ([t for t in ax.get_xticklabels() if inside(t.get_position()[0], x0, x1)]
            + [t for t in ax.get_yticklabels() if inside(t.get_position()[1], y0, y1)])


def _data_points(ax) -> np.ndarray:
    """Display coordinates (n, 2) of the panel's data: line points with 16 samples per segment,
    scatter offsets, and the corners and centre of every bar."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = line.get_transform().transform(np.column_stack(line.get_data()).astype(float))
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy) > 1:
            t = np.linspace(0, 1, 16, endpoint=False)[:, None, None]
            xy = np.concatenate([(xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2), xy[-1:]])
        pts.append(xy)
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets):
            pts.append(coll.get_offset_transform().transform(np.asarray(offsets, dtype=float)))
    for patch in ax.patches:
        b = patch.get_window_extent()
        pts.append(np.array([[b.x0, b.y0], [b.x1, b.y1], [b.x0, b.y1], [b.x1, b.y0],
                             [(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2]]))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def problems(fig) -> list[str]:
    """What makes `fig` hard to read (empty list: nothing), one string per problem."""
    fig.canvas.draw()
    found = []
    panels = [ax for ax in fig.axes if ax.get_visible() and not _is_colorbar(ax)]
    bars = [im for ax in fig.axes for im in ax.images if im.colorbar is not None]
    for i, ax in enumerate(panels):
        name = f"panel {i + 1} ({ax.get_title() or 'untitled'!r})"
        has_data = bool(ax.get_lines() or ax.collections or ax.patches or ax.images)
        if not has_data:
            continue
        if not ax.get_title() and not fig.get_suptitle():
            found.append(f"{name}: no title")
        if ax.images:
            for im in ax.images:
                same = lambda o: (o.cmap.name == im.cmap.name and o.norm.vmin == im.norm.vmin
                                  and o.norm.vmax == im.norm.vmax)
                if im.colorbar is None and not any(same(o) for o in bars):
                    found.append(f"{name}: a matrix without a colorbar")
        else:
            if not ax.get_xlabel():
                found.append(f"{name}: no x label")
            if not ax.get_ylabel():
                found.append(f"{name}: no y label")
        twins = [o for o in panels if o is not ax and np.allclose(o.get_position().bounds, ax.get_position().bounds)]
        if twins and i < panels.index(twins[0]):
            found.append(f"{name}: a twin axis (two scales in one panel)")
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            box = legend.get_window_extent()
            pts = np.concatenate([_data_points(a) for a in [ax] + twins])
            inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
            if inside.any():
                found.append(f"{name}: the legend covers {int(inside.sum())} data point(s)")
    texts = [t for ax in fig.axes for t in
             [ax.title, ax.xaxis.label, ax.yaxis.label, *_tick_labels(ax),
              *(ax.get_legend().get_texts() if ax.get_legend() else [])] if t.get_visible() and t.get_text()]
    small = sorted({t.get_fontsize() for t in texts if t.get_fontsize() < MIN_FONT})
    if small:
        found.append(f"text smaller than {MIN_FONT:g} pt: {', '.join(f'{s:g}' for s in small)} pt")
    if fig.get_suptitle():
        texts.append(fig._suptitle)
    boxes = [(t.get_text(), t.get_window_extent()) for t in texts]
    clashes = sorted({f"{a!r} / {b!r}" for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:]
                      if p.overlaps(q) and p.width * p.height > 0 and q.width * q.height > 0})
    if clashes:
        found.append(f"overlapping text: {'; '.join(clashes[:4])}" + (" ..." if len(clashes) > 4 else ""))
    return found


def run(script: Path, out: Path, quick: bool) -> subprocess.CompletedProcess:
    """Run one example as a script (Agg) with its figures checked as they are saved."""
    env = {k: v for k, v in os.environ.items() if k not in ("TINYNIM_QUICK", "TINYNIM_FIGURES")}
    env.update(TINYNIM_FIGURES=str(out), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if quick:
        env["TINYNIM_QUICK"] = "1"
    code = (f"import runpy, sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import figures; "
            f"figures.check_on_save(); runpy.run_path({str(script)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)


def check_on_save():
    """Make :func:`tinynim.experiment.save_figure` print ``figure problem: NAME: ...`` for
    every problem of each figure it saves (call before the example imports it)."""
    import tinynim.experiment as experiment
    save = experiment.save_figure

    def checked(fig, name, *args, **kwargs):
        for p in problems(fig):
            print(f"figure problem: {name}: {p}", flush=True)
        return save(fig, name, *args, **kwargs)
    experiment.save_figure = checked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scripts", nargs="*", type=Path, help="examples to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="quick mode (TINYNIM_QUICK=1)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="where the figures go")
    args = parser.parse_args(argv)
    bad = 0
    for script in args.scripts or sorted((ROOT / "examples").glob("[0-9]*.py")):
        t0 = time.perf_counter()
        proc = run(script.resolve(), args.out.resolve(), args.quick)
        lines = proc.stdout.splitlines()
        saved = [line.split("figure:", 1)[1].strip() for line in lines if line.startswith("figure:")]
        issues = [line for line in lines if line.startswith("figure problem:")]
        print(f"{script.name}: {'ok' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'}, "
              f"{time.perf_counter() - t0:.0f} s, figures: {', '.join(Path(s).name for s in saved) or 'none'}")
        for line in issues:
            print("  " + line)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
        bad += bool(proc.returncode or issues or not saved)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
