"""Graded exercises, generated from the library's own sources.

    python tools/exercises.py build [--out DIR]      write DIR/NN_name.py (default exercises/)
    python tools/exercises.py grade FILE..           grade a student's file(s): pass/fail per part
    python tools/exercises.py list                   the exercises and what each asks for

**Where they come from.** A solution block in the library is a run of lines between two
comments, ``# exercise: NAME`` and ``# end exercise`` (e.g. the body of
``Linear.backward`` in ``tinynim/nn/linear.py``). ``build`` copies the whole library file and
replaces each block of the exercise by ``raise NotImplementedError`` under a ``TODO`` comment
(the module docstring, left in place, derives what to write). The solution is the library
itself, so exercise and solution never drift; ``tests/test_exercises.py`` checks that every
exercise fails blank and passes once the library's blocks are put back.

**Grading.** ``grade`` imports the student's file as a module of its own
(:func:`tinynim.nn.base.load_file`) and runs the project's own checks on it, on the active
backend (``TINYNIM_BACKEND``):

* a layer exercise: the student's class through ``python -m tinynim check``'s gradient check
  (central finite differences and torch autograd of the student's own forward, float64,
  randomised parameters, the tolerances of :data:`tinynim.gradcheck.TOLERANCES`), one part
  per route of the layer's ``examples`` that goes through the blanked code;
* the P1 construction (``gd_construction``): the student's ``gd_weights`` in the library's
  :class:`tasks.icl_regression.LinearTransformer` must predict what explicit gradient descent
  predicts (:func:`tasks.icl_regression.gd_predict`), one part per setting.

One line per part (``ok`` / ``FAIL`` / ``ERROR``), a summary line, exit status 0 iff every
part of every file passes.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))           # run as `python tools/exercises.py` from a checkout

OPEN = re.compile(r"^(?P<indent>[ \t]*)# exercise: (?P<name>\w+)[ \t]*$")
CLOSE = re.compile(r"^[ \t]*# end exercise[ \t]*$")
HEADER = re.compile(r"^# tinynim exercise `(?P<name>\w+)`", re.M)
TODO = "# TODO (exercise {name}, block {i} of {n}, in {func}()): the code removed here; see the module docstring"
DEF = re.compile(r"^[ \t]*def (\w+)\(")


@dataclass(frozen=True)
class Exercise:
    name: str
    source: str             # the library file holding the solution blocks (from the root)
    task: str               # what to write, one line
    parts: tuple = ()       # layer exercises: "Layer" (every route) or "Layer/route"

    @property
    def path(self) -> Path:
        return ROOT / self.source


EXERCISES = (
    Exercise("linear", "tinynim/nn/linear.py",
             "Linear.backward: dL/dx, dL/dW and dL/db from dout (module docstring, 'Backward')",
             ("Linear",)),
    Exercise("activations", "tinynim/nn/activations.py",
             "f'(x) of Tanh, Sigmoid and GELU (module docstring); backward multiplies by it",
             ("Tanh", "Sigmoid", "GELU")),
    Exercise("layernorm", "tinynim/nn/norm.py",
             "LayerNorm.backward: dx through the standardisation, dγ, dβ (module docstring)",
             ("LayerNorm",)),
    Exercise("softmax_attention", "tinynim/nn/attention.py",
             "SoftmaxAttention.backward: through Wo, P V, the row softmax, Q Kᵀ/√d and the "
             "projections (module docstring)", ("SoftmaxAttention",)),
    Exercise("linear_self_attention", "tinynim/nn/linear_attention.py",
             "the plain LSA backward: dP, dy, dA (masked), dr, dQ and dx with the context rows "
             "(module docstring, 'Backward of the plain path')",
             ("LinearSelfAttention/plain_causal", "LinearSelfAttention/plain_last_only")),
    Exercise("rnn_bptt", "tinynim/nn/recurrent.py",
             "backpropagation through time: δ_t = e_t + λ ⊙ δ_{t+1} (reverse_scan), dλ and dh0 "
             "(module docstring, 'Backward (BPTT)')",
             tuple(f"GatedLinearRNN/{r}" for r in ("sigmoid", "exp", "direct", "parallel_scan",
                                                    "h0_return_state", "plain_last_only_h0"))),
    Exercise("gd_construction", "tasks/icl_regression.py",
             "gd_weights: the LSA weights (Q, P) whose every layer is one GD step from W₀ "
             "(module docstring, 'Constructions')"),
)
BY_NAME = {e.name: e for e in EXERCISES}


def file_name(exercise: Exercise) -> str:
    return f"{EXERCISES.index(exercise) + 1:02d}_{exercise.name}.py"


# -- generation -------------------------------------------------------------------------

def _scan(lines, name=None):
    """[(name, open line index, close line index)] of the blocks (of exercise `name`, or all).
    Raises ValueError for an unclosed, nested or stray marker."""
    found, current = [], None
    for i, line in enumerate(lines):
        m = OPEN.match(line)
        if m:
            if current is not None:
                raise ValueError(f"line {i + 1}: exercise block opened inside another (line {current[1] + 1})")
            current = (m["name"], i)
        elif CLOSE.match(line):
            if current is None:
                raise ValueError(f"line {i + 1}: '# end exercise' without an opening marker")
            found.append((*current, i))
            current = None
    if current is not None:
        raise ValueError(f"line {current[1] + 1}: exercise block {current[0]!r} never closed")
    return [b for b in found if name is None or b[0] == name]


def solutions(exercise: Exercise) -> list[str]:
    """The library's solution blocks of `exercise`, in file order (the text between markers)."""
    lines = exercise.path.read_text().splitlines(keepends=True)
    return ["".join(lines[a + 1:b]) for _, a, b in _scan(lines, exercise.name)]


def strip_markers(text: str) -> str:
    """`text` without its exercise marker lines: what the library code reads as."""
    lines = text.splitlines(keepends=True)
    marks = {i for _, a, b in _scan(lines) for i in (a, b)}
    return "".join(line for i, line in enumerate(lines) if i not in marks)


def build(exercise: Exercise, out: Path = Path("exercises")) -> str:
    """The exercise file: the library file, this exercise's blocks blanked, every marker gone."""
    lines = exercise.path.read_text().splitlines(keepends=True)
    blocks = _scan(lines, exercise.name)
    if not blocks:
        raise ValueError(f"{exercise.source}: no '# exercise: {exercise.name}' block")
    head = (f"# tinynim exercise `{exercise.name}`: {exercise.task}.\n"
            f"# Generated from {exercise.source} by `python tools/exercises.py build`: fill in the\n"
            f"# {len(blocks)} TODO block(s) (each replaces one `raise NotImplementedError`), then run\n"
            f"#     python tools/exercises.py grade {out / file_name(exercise)}\n"
            f"# The solution is {exercise.source} itself.\n")
    out, start = [head], 0
    for i, (_, a, b) in enumerate(blocks, 1):
        out.append(strip_markers("".join(lines[start:a])))
        indent = OPEN.match(lines[a])["indent"]
        func = next(m[1] for m in map(DEF.match, reversed(lines[:a])) if m)
        out.append(f"{indent}{TODO.format(name=exercise.name, i=i, n=len(blocks), func=func)}\n"
                   f"{indent}raise NotImplementedError(\"exercise {exercise.name}, block {i}\")\n")
        start = b + 1
    out.append(strip_markers("".join(lines[start:])))
    return "".join(out)


def fill(text: str, blocks: list[str]) -> str:
    """An exercise file with its blanks (TODO comment + raise) replaced by `blocks`, in order."""
    pattern = re.compile(r"^[ \t]*# TODO \(exercise \w+, block (\d+) of \d+, .*\n"
                         r"[ \t]*raise NotImplementedError\(\"exercise \w+, block \d+\"\)\n", re.M)
    return pattern.sub(lambda m: blocks[int(m[1]) - 1], text)


# -- grading ----------------------------------------------------------------------------

def which_text(text: str) -> Exercise | None:
    """The exercise an exercise file's text was built for (its header line), or None."""
    m = HEADER.search(text)
    return BY_NAME.get(m["name"]) if m else None


def grade_layers(exercise: Exercise, module) -> int:
    """The gradient check of `python -m tinynim check` on the student's classes."""
    from tinynim.__main__ import check_routes, routes
    from tinynim.nn.base import collect_layers
    own = collect_layers(module)
    names = {p.split("/")[0] for p in exercise.parts}
    missing = names - own.keys()
    if missing:
        print(f"FAIL: the file defines no layer {', '.join(sorted(missing))} (with examples)")
        return 1
    return check_routes(own, routes({n: own[n] for n in names}, exercise.parts))


# P1 (arXiv:2212.07677): constructed LSA vs explicit GD, in float64. Predictions are O(1) and
# the two computations differ only in rounding (~1e-15); a wrong construction is off by O(1).
GD_TOL = 1e-9
GD_SETTINGS = {                     # part: (d, d_out, K layers = GD steps, form, from a W₀)
    "one GD step from 0 (merged Q, P)": (3, 1, 1, "merged", False),
    "three shared layers = three GD steps": (3, 1, 3, "merged", False),
    "from an initial guess W0, vector y (d_out 2)": (3, 2, 2, "merged", True),
    "four-matrix form (Wq Wkᵀ = Q, Wv Wp = P)": (4, 2, 2, "full", True),
}


def grade_gd_construction(module) -> int:
    """The student's gd_weights in the library's LinearTransformer against gd_predict."""
    import numpy as np
    from tasks import icl_regression as lib
    from tinynim.backend import get_backend, to_numpy, use_dtype
    from tinynim.random import RNG
    print(f"GD construction on {get_backend().name}, float64: max |ŷ_LSA − ŷ_GD| over 64 tasks ≤ {GD_TOL:g}")
    failed = 0
    with use_dtype("float64"):
        for part, (d, d_out, K, form, guess) in GD_SETTINGS.items():
            try:
                tokens, _ = lib.sample(RNG(K), 64, n_context=8, d=d, d_out=d_out)
                W0 = RNG(K + 1).normal((d_out, d)) if guess else None
                eta = 0.7
                params = module.gd_weights(d, 8, eta, d_out=d_out, W0=W0, form=form)
                model = lib.LinearTransformer(d, d_out, K, form=form)
                pred = model(params, tokens if W0 is None else lib.with_initial_guess(tokens, W0))
                err = float(np.max(np.abs(to_numpy(pred - lib.gd_predict(tokens, eta, K, W0, d_out=d_out)))))
                status = "ok" if err <= GD_TOL else "FAIL"
                detail = f"{err:.1e}"
            except Exception as exc:        # a blank or broken construction fails this part
                status, detail = f"ERROR {type(exc).__name__}: {exc}", "–"
            failed += status != "ok"
            print(f"  {part:<46} {detail:>8}  {status}")
    print(f"{len(GD_SETTINGS) - failed}/{len(GD_SETTINGS)} parts ok" + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0


def grade(path) -> int:
    """Grade one student file; prints the parts; 0 iff all pass."""
    from tinynim.nn.base import load_file
    exercise = which_text(Path(path).read_text())
    if exercise is None:
        print(f"FAIL: {path} has no '# tinynim exercise `NAME`' header of a known exercise "
              f"({', '.join(BY_NAME)}); build them with `python tools/exercises.py build`")
        return 1
    print(f"== {path}: exercise {exercise.name} ({exercise.task})")
    try:
        module = load_file(path)
    except Exception as exc:
        print(f"FAIL: the file does not import: {type(exc).__name__}: {exc}")
        return 1
    return grade_layers(exercise, module) if exercise.parts else grade_gd_construction(module)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the exercise files")
    b.add_argument("--out", type=Path, default=Path("exercises"))
    g = sub.add_parser("grade", help="grade exercise files")
    g.add_argument("files", nargs="+", type=Path)
    sub.add_parser("list", help="list the exercises")
    args = parser.parse_args(argv)
    if args.command == "list":
        for e in EXERCISES:
            print(f"{file_name(e):<28} {e.source:<32} {e.task}")
        return 0
    if args.command == "build":
        args.out.mkdir(parents=True, exist_ok=True)
        for e in EXERCISES:
            (args.out / file_name(e)).write_text(build(e, args.out))
            print(args.out / file_name(e))
        return 0
    return 1 if sum(grade(f) for f in args.files) else 0


if __name__ == "__main__":
    sys.exit(main())
