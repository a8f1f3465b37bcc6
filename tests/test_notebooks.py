"""Every example executes as a Jupyter notebook, in quick mode, in a real kernel, and shows
its figures inline (``tools/notebooks.py``: jupytext converts the percent-format script,
nbclient runs it in an ipykernel ``python3`` kernel with TINYNIM_QUICK=1).

A figure counts when the notebook displays it (a PNG output) and the example saved it
(a file under TINYNIM_FIGURES): each example makes at least one, and every saved figure is
also shown inline (a forced non-interactive backend, or a figure closed before the cell
ends, would show none). New examples are picked up by the glob.
"""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("tools_notebooks", ROOT / "tools" / "notebooks.py")
notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks)
EXAMPLES = notebooks.examples()


def test_notebook_tool_finds_the_examples():
    assert [p.name for p in EXAMPLES] == sorted(p.name for p in (ROOT / "examples").glob("[0-9]*.py"))
    assert EXAMPLES


def test_kernel_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TINYNIM_QUICK", "1")
    env = notebooks.kernel_env(quick=False, figures=tmp_path)
    assert "MPLBACKEND" not in env and "TINYNIM_QUICK" not in env
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT) and env["TINYNIM_FIGURES"] == str(tmp_path)
    assert notebooks.kernel_env(quick=True)["TINYNIM_QUICK"] == "1"


def test_the_kernel_is_quick_inline_and_imports_this_checkout(tmp_path, monkeypatch):
    """Through the same path as the examples: quick mode, inline figures, this checkout's code."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    script = tmp_path / "probe.py"
    script.write_text("# %%\nimport matplotlib, tinynim, tinynim.experiment as e\n"
                      "print(e.quick(), matplotlib.get_backend(), tinynim.__file__)\n")
    nb = notebooks.execute(script, quick=True, timeout=120)
    quick, backend, path = nb.cells[0].outputs[0]["text"].split()
    assert quick == "True" and "inline" in backend and Path(path).is_relative_to(ROOT), (quick, backend, path)


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_as_a_notebook_and_shows_its_figures(script, tmp_path):
    nb = notebooks.execute(script, quick=True, figures=tmp_path, timeout=600)
    saved = sorted(p.name for p in tmp_path.glob("*.png"))
    shown = notebooks.inline_figures(nb)
    assert saved, f"{script.name} as a notebook saved no figure under TINYNIM_FIGURES"
    assert shown == len(saved), f"{script.name}: {shown} figure(s) shown inline, {len(saved)} saved: {saved}"
