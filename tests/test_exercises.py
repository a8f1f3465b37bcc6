"""The graded exercises (tools/exercises.py): generated from the library, each fails blank,
passes with the library's solution blocks filled back in, and the grader sees a wrong answer.

Grading runs in-process on the numpy backend: the gradient check of `python -m tinynim check`
on the student's classes (float64, FD + torch autograd, tinynim.gradcheck.TOLERANCES), or the
P1 property check (constructed LSA vs explicit GD, max |Δŷ| ≤ 1e-9 in float64).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("tools_exercises", ROOT / "tools" / "exercises.py")
ex = sys.modules["tools_exercises"] = importlib.util.module_from_spec(_spec)     # dataclasses look it up
_spec.loader.exec_module(ex)
IDS = [e.name for e in ex.EXERCISES]
SUMMARY = re.compile(r"^(\d+)/(\d+) (?:layer routes|parts) ok", re.M)


def grade(tmp_path, exercise, text, capsys):
    """(exit code, passed parts, total parts, output) of grading `text` as the student file."""
    path = tmp_path / ex.file_name(exercise)
    path.write_text(text)
    code = ex.grade(path)
    out = capsys.readouterr().out
    counts = SUMMARY.findall(out)
    assert len(counts) == 1, out
    return code, int(counts[0][0]), int(counts[0][1]), out


def test_the_required_exercises_exist():
    assert {"linear", "activations", "layernorm", "softmax_attention", "linear_self_attention",
            "rnn_bptt", "gd_construction"} <= set(IDS)


def test_markers_in_the_library_are_well_formed_and_known():
    """Every marker pair in the library closes and names an exercise of the table, so no
    block is left out of an exercise by a typo (or survives a renamed exercise)."""
    sources = list((ROOT / "tinynim").rglob("*.py")) + list((ROOT / "tasks").rglob("*.py"))
    named = {name for p in sources for name, _, _ in ex._scan(p.read_text().splitlines(keepends=True))}
    assert named == set(IDS)
    with pytest.raises(ValueError, match="never closed"):
        ex._scan(["    # exercise: linear\n", "    x = 1\n"])
    with pytest.raises(ValueError, match="without an opening"):
        ex._scan(["    # end exercise\n"])


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=IDS)
def test_exercise_is_the_library_with_blanks(exercise):
    """Blank: no line of a solution block left, every block a raise; filled back in: exactly
    the library file without its marker lines (after the header)."""
    text = ex.build(exercise)
    blocks = ex.solutions(exercise)
    assert blocks and text.count("raise NotImplementedError(\"exercise") == len(blocks)
    assert "# exercise:" not in text and "# end exercise" not in text
    assert ex.which_text(text) is exercise
    filled = ex.fill(text, blocks)
    assert filled.endswith(ex.strip_markers(exercise.path.read_text()))
    assert filled.startswith(f"# tinynim exercise `{exercise.name}`")


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=IDS)
def test_exercise_fails_blank_and_passes_solved(exercise, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TINYNIM_BACKEND", "numpy")
    text = ex.build(exercise)
    code, passed, total, out = grade(tmp_path, exercise, text, capsys)
    assert code == 1 and passed == 0 and total >= 1, f"blank {exercise.name} passed a part:\n{out}"
    assert out.count("NotImplementedError") == total, out      # every part failed on the blank itself
    code, passed, total_solved, out = grade(tmp_path, exercise, ex.fill(text, ex.solutions(exercise)), capsys)
    assert code == 0 and passed == total_solved == total, f"solved {exercise.name} failed:\n{out}"


# A plausible wrong answer per exercise (a student's typical slip), as a replacement in its
# first solution block: the grader must fail it although it runs without error.
WRONG = {
    "linear": ("X.T @ G", "X.T @ G / 2"),                                  # a stray factor on dW
    "activations": ("1 - out * out", "1 - out"),                           # tanh' = 1 − out
    "layernorm": ("- mean_g - x_hat", "- x_hat"),                         # forgets ∂μ/∂x
    "softmax_attention": ("xp.sum(P * dP, axis=-1, keepdims=True)", "0"),  # elementwise softmax'
    "linear_self_attention": ("xp.sum(dA.mT @ r + A.mT @ dy, axis=1)", "xp.sum(A.mT @ dy, axis=1)"),
    "rnn_bptt": ("xp.flip(scan(lam, xp.flip(g, axis=1)), axis=1)", "scan(lam, g)"),   # forward in time
    "gd_construction": ("(eta / n_context) * P", "eta * P"),               # the sum, not the mean
}


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=IDS)
def test_a_wrong_answer_fails(exercise, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TINYNIM_BACKEND", "numpy")
    old, new = WRONG[exercise.name]
    blocks = ex.solutions(exercise)
    assert old in blocks[0], f"{exercise.name}: the wrong answer no longer matches the solution"
    blocks[0] = blocks[0].replace(old, new)
    code, passed, total, out = grade(tmp_path, exercise, ex.fill(ex.build(exercise), blocks), capsys)
    assert code == 1 and passed < total and "FAIL" in out and "ERROR" not in out, out


def test_command_line_build_and_grade(tmp_path):
    """As a student runs it: build into a folder, grade one file, exit status 1 (blank)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYNIM_")}
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "tools" / "exercises.py"), *a], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, timeout=300)
    built = run("build", "--out", "ex")
    assert built.returncode == 0, built.stderr
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == sorted(ex.file_name(e) for e in ex.EXERCISES)
    graded = run("grade", "ex/01_linear.py")
    assert graded.returncode == 1 and "0/3 layer routes ok" in graded.stdout, graded.stdout + graded.stderr
