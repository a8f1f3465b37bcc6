"""Mutation testing for tinynim: would the tests notice if the hand-derived maths broke?

    python tools/mutate.py                       # every mutant of tinynim/ and tasks/
    python tools/mutate.py --sample 200 --budget-minutes 30 --jobs 2
    python tools/mutate.py --paths tinynim/optim.py --operators swap_args drop_stmt
    python tools/mutate.py --list                # the mutants, not run
    python tools/mutate.py --show 3f2a9c1e       # one mutant as a diff
    python tools/mutate.py --rerun before.json   # the mutants of an earlier report, again

Each mutant is ONE small, realistic edit of one expression or statement inside a function
of ``tinynim/`` or ``tasks/`` (operators in :data:`OPERATORS`: a dropped term, factor or
transpose, a sign, a factor 2 or ½, an off-by-one slice or index, a wrong reduction axis,
sum↔mean, a forced route, swapped arguments, a dropped update such as a mask applied in
forward only). Error-handling code (``raise``, ``assert``, the ``if`` that guards a raise,
messages, validation calls) is not mutated. Every edit is made in a private COPY of the
tree (a temporary directory per job): the repository is never touched.

A mutant is run against the test files mapped to its module (those that import it, own
test file first; fast), stopping at the first failure; if it survives, against the whole
non-slow suite. Both stages run the numpy instance of backend-parametrised tests only (the
maths is the same on every backend); a mutant that survives them meets its mapped test
files on every backend (code about backends meets every backend from the start). It is
*killed* when a test fails, the suite cannot be collected, or the run exceeds its timeout
(an endless loop). Slow (trained) tests are not run: a mutant that only they could catch
counts as a survivor. ``--mapped-only`` skips the whole-suite stage (and times the baseline
on the mapped files only): a mutant that its own mapped test files miss then counts as a
survivor, so that score is a lower bound of the full one, for a loaded machine (a survivor
costs one whole-suite run otherwise). Survivors that are real equivalents (no test could
tell them apart from the original) are listed with a reason in
``tools/mutation_equivalents.txt``; any other survivor is reported as *unexplained* and
makes the exit code 1. The score is killed / (run − listed equivalents).

Tests run exactly as in CI (``HYPOTHESIS_PROFILE=ci``: derandomized, 12 examples) except
that Hypothesis neither shrinks a failure nor uses its example database (so one mutant's
failure is not replayed into the next). Note: Hypothesis also draws values from constants
found in the loaded *source* modules, so a mutant that changes a literal (e.g. ``2`` ->
``4``) also changes the examples drawn; a kill then still shows a real behaviour change
found by the test, but which examples were tried differs from CI.

Runs in a fork server: the parent imports numpy, torch, hypothesis and pytest once, and
each mutant's test run is a forked child that imports only the (mutated) project code.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.txt"
TARGETS = ("tinynim", "tasks")
COPY_IGNORE = (".git", "__pycache__", ".hypothesis", ".pytest_cache", "*.pyc", "*.egg-info",
               "build", "dist", ".whl", ".gl", "figures", "results")
PYTEST_ARGS = ["-q", "-x", "--tb=no", "-rfE", "-p", "no:cacheprovider", "-m", "not slow",
               "--no-header"]
# Stages: the mapped test files, then the whole non-slow suite, both on the numpy backend
# only (the maths is the same on every backend); a survivor then meets the mapped files on
# every backend. Code about backends themselves runs every backend from the start.
STAGES = ("mapped", "full", "all")
ALL_BACKENDS = ("tinynim/backend.py", "tinynim/random.py", "tinynim/checkpoint.py", "tinynim/__main__.py")
VALIDATION_CALLS = {"check_input", "require_keys", "isinstance", "print", "log"}
SKIP_FUNCTIONS = {"example", "examples"}      # test fixtures: any small valid instance will do
# calls whose first two arguments commute (for namespace look-ups: any order names the same backend)
COMMUTATIVE = {"min", "max", "maximum", "minimum", "add", "multiply", "hypot", "logical_and", "logical_or",
               "namespace", "array_namespace"}
SWAPS = {"sum": "mean", "mean": "sum", "max": "min", "min": "max", "maximum": "minimum",
         "minimum": "maximum", "argmax": "argmin", "argmin": "argmax"}

OPERATORS = {
    "drop_term": "a ± b -> a (or b): a term of a sum dropped (e.g. the max subtraction)",
    "sign": "+ <-> −, −x -> x",
    "drop_factor": "a * b -> a or b, a / b -> a: a chain-rule factor or a scale forgotten",
    "const": "a numeric constant c -> 2c or c/2 (factor 2 / ½)",
    "transpose": ".T/.mT dropped or added on a matmul operand; a @ b -> b @ a",
    "slice": "a slice bound ± 1 (off by one)",
    "index": "an integer index ± 1 (off by one)",
    "axis": "axis=k -> k ± 1, one axis of a tuple dropped, keepdims dropped",
    "reduce": "sum <-> mean, max <-> min, maximum <-> minimum, argmax <-> argmin",
    "route": "an if/else condition forced True or False (fast path vs plain path)",
    "swap_args": "the first two arguments of a call, or elements of a list/tuple, swapped",
    "drop_stmt": "an update x = f(x, ...) dropped (e.g. a mask applied in forward only)",
    "order": "two adjacent updates of the same variable swapped (e.g. the order of two clippings)",
}


# -- generating mutants ------------------------------------------------------------------

@dataclass
class Mutant:
    path: str            # relative to the root, e.g. "tinynim/optim.py"
    func: str            # qualified name of the enclosing function
    op: str
    line: int
    start: tuple         # (lineno, col) of the replaced span, 1-based lines as in ast
    end: tuple
    original: str
    replacement: str
    key: str = ""        # stable, readable identity (equivalents file)
    id: str = ""         # short hash of the key

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line.encode()))
        data = source.encode()
        a = offsets[self.start[0] - 1] + self.start[1]
        b = offsets[self.end[0] - 1] + self.end[1]
        return (data[:a] + self.replacement.encode() + data[b:]).decode()


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _num(node) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _raise_only(stmts) -> bool:
    return bool(stmts) and all(isinstance(s, (ast.Raise, ast.Pass)) for s in stmts)


def _call_name(call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")


def _names(node) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _stores(node) -> set:
    """Names a statement assigns, outside comprehensions and lambdas."""
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)):
        return set()
    own = {node.id} if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) else set()
    return own.union(*(_stores(c) for c in ast.iter_child_nodes(node)))


class _Finder(ast.NodeVisitor):
    """Collects (node, op, replacement node or text) inside function bodies."""

    def __init__(self, source):
        self.source, self.stack, self.found = source.encode(), [], []
        self.starts = [0]
        for line in source.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line.encode()))

    def segment(self, start, end) -> str:
        """Source text between two (lineno, col) positions (ast columns count UTF-8 bytes)."""
        a, b = (self.starts[ln - 1] + col for ln, col in (start, end))
        return self.source[a:b].decode()

    def add(self, node, op, new, last=None):
        """Replace `node` (through `last`, for a run of statements) by `new` (a node or text)."""
        text = new if isinstance(new, str) else ast.unparse(new)
        if not isinstance(new, str) and not isinstance(node, ast.stmt):
            text = f"({text})"
        last = last or node
        start, end = (node.lineno, node.col_offset), (last.end_lineno, last.end_col_offset)
        self.found.append((start, end, self.segment(start, end), op, text, ".".join(self.stack)))

    def generic_visit(self, node):
        for name in ("body", "orelse"):
            block = getattr(node, name, None)
            if isinstance(block, list) and self.stack:
                self._reorder(block)
        super().generic_visit(node)

    def _reorder(self, block):
        """Swap two adjacent updates of the same variable (e.g. two clippings in the wrong order)."""
        kinds = (ast.Assign, ast.AugAssign, ast.If)
        for a, b in zip(block, block[1:]):
            exits = any(isinstance(n, (ast.Return, ast.Raise)) for st in (a, b) for n in ast.walk(st))
            if not (isinstance(a, kinds) and isinstance(b, kinds)) or exits:
                continue
            if _stores(a) & _stores(b):
                gap = self.segment((a.end_lineno, a.end_col_offset), (b.lineno, b.col_offset))
                text = self.segment((b.lineno, b.col_offset), (b.end_lineno, b.end_col_offset)) + gap + \
                    self.segment((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset))
                self.add(a, "order", text, last=b)

    # structure: only function bodies; skip docstrings, raises, asserts, guards, messages
    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.visit(stmt)
        self.stack.pop()

    def visit_FunctionDef(self, node):
        if node.name in SKIP_FUNCTIONS:
            return
        self.stack.append(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]                                   # docstring
        self._reorder(body)
        for stmt in body:
            self.visit(stmt)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Module(self, node):
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.visit(stmt)

    def visit_Raise(self, node):
        pass

    def visit_Assert(self, node):
        pass

    def visit_JoinedStr(self, node):
        pass

    def visit_Lambda(self, node):
        self.visit(node.body)

    def visit_If(self, node):
        if _raise_only(node.body):                            # a guard: validation, not maths
            for stmt in node.orelse:
                self.visit(stmt)
            return
        if self.stack:
            self.add(node.test, "route", ast.Constant(True))
            self.add(node.test, "route", ast.Constant(False))
        self.generic_visit(node)

    def visit_IfExp(self, node):
        self.add(node.test, "route", ast.Constant(True))
        self.add(node.test, "route", ast.Constant(False))
        self.generic_visit(node)

    def visit_Call(self, node):
        name = _call_name(node)
        if name in VALIDATION_CALLS:
            return
        if isinstance(node.func, ast.Attribute) and name in SWAPS:
            func = ast.Attribute(node.func.value, SWAPS[name], ast.Load())
            self.add(node, "reduce", ast.Call(func, node.args, node.keywords))
        args = node.args
        if (len(args) >= 2 and name not in COMMUTATIVE and not any(isinstance(a, ast.Starred) for a in args[:2])
                and ast.unparse(args[0]) != ast.unparse(args[1])):
            self.add(node, "swap_args", ast.Call(node.func, [args[1], args[0], *args[2:]], node.keywords))
        for kw in node.keywords:
            self._axis(node, kw)
        self.generic_visit(node)

    def _axis(self, call, kw):
        def with_value(value):
            kws = [ast.keyword(k.arg, value) if k is kw else k for k in call.keywords]
            return ast.Call(call.func, call.args, kws)
        if kw.arg == "axis" and _num(kw.value):
            k = kw.value.value
            for alt in ([k - 1] if k < 0 else [k + 1] + ([k - 1] if k > 0 else [])):
                self.add(call, "axis", with_value(ast.Constant(alt)))
        elif kw.arg == "axis" and isinstance(kw.value, ast.Tuple) and len(kw.value.elts) > 1:
            for i in range(len(kw.value.elts)):
                rest = [e for j, e in enumerate(kw.value.elts) if j != i]
                self.add(call, "axis", with_value(ast.Tuple(rest, ast.Load())))
        elif kw.arg == "keepdims" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
            self.add(call, "axis", with_value(ast.Constant(False)))

    def visit_keyword(self, node):
        if node.arg in ("axis", "keepdims", "dtype", "device"):
            return                                            # mutated by _axis, or not maths
        self.visit(node.value)

    def visit_BinOp(self, node):
        L, R, op = node.left, node.right, node.op
        for c in (L, R):
            self._factor(c)
        if isinstance(op, ast.Add):
            self.add(node, "drop_term", L)
            self.add(node, "drop_term", R)
            self.add(node, "sign", ast.BinOp(L, ast.Sub(), R))
        elif isinstance(op, ast.Sub):
            self.add(node, "drop_term", L)
            self.add(node, "sign", ast.BinOp(L, ast.Add(), R))
        elif isinstance(op, ast.Mult):
            self.add(node, "drop_factor", L)
            self.add(node, "drop_factor", R)
        elif isinstance(op, ast.Div):
            self.add(node, "drop_factor", L)
        elif isinstance(op, ast.MatMult):
            self.add(node, "transpose", ast.BinOp(R, ast.MatMult(), L))
            for side in ("left", "right"):
                operand = getattr(node, side)
                if not (isinstance(operand, ast.Attribute) and operand.attr in ("T", "mT")):
                    new = ast.BinOp(L, op, R)
                    setattr(new, side, ast.Attribute(operand, "mT", ast.Load()))
                    self.add(node, "transpose", new)
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.USub) and not _num(node.operand):
            self.add(node, "sign", node.operand)
        if not _num(node.operand):
            self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr in ("T", "mT"):
            self.add(node, "transpose", node.value)
        self.generic_visit(node)

    def _factor(self, node):
        """Factor 2 / ½ on a numeric literal that is an operand of arithmetic (not a size, a
        seed passed as an argument, an index or an axis)."""
        if _num(node) and node.value != 0 and abs(node.value) >= 1e-3:
            self.add(node, "const", ast.Constant(node.value * 2))
            self.add(node, "const", ast.Constant(node.value / 2 if isinstance(node.value, float)
                                                 or node.value % 2 else node.value // 2))

    def visit_Subscript(self, node):
        self.visit(node.value)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for i, item in enumerate(items):
            if isinstance(item, ast.Slice):
                for bound in ("lower", "upper"):
                    b = getattr(item, bound)
                    if b is None:
                        continue
                    for delta in (1, -1):
                        self.add(b, "slice", _shift(b, delta))
                    if not (_num(b) or isinstance(b, ast.UnaryOp)):
                        self.visit(b)
            elif _num(item) or (isinstance(item, ast.UnaryOp) and _num(item.operand)):
                for delta in (1, -1):
                    self.add(item, "index", _shift(item, delta))
            else:
                self.visit(item)

    def visit_Tuple(self, node):
        self._swap_elts(node)
        self.generic_visit(node)

    def visit_List(self, node):
        self._swap_elts(node)
        self.generic_visit(node)

    def _swap_elts(self, node):
        e = node.elts
        if (isinstance(node.ctx, ast.Load) and len(e) >= 2 and not all(_num(x) for x in e)
                and not any(isinstance(x, ast.Starred) for x in e[:2])
                and ast.unparse(e[0]) != ast.unparse(e[1])):
            self.add(node, "swap_args", type(node)([e[1], e[0], *e[2:]], ast.Load()))

    def _drop_update(self, node, targets, value):
        if len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id in _names(value):
            self.add(node, "drop_stmt", "pass")

    def visit_Assign(self, node):
        self._drop_update(node, node.targets, node.value)
        self.visit(node.value)

    def visit_AugAssign(self, node):
        self._drop_update(node, [node.target], node.target)
        self.visit(node.value)


def _shift(node, delta):
    """`node` ± delta, folded when it is a literal."""
    if _num(node):
        return ast.Constant(node.value + delta)
    if isinstance(node, ast.UnaryOp) and _num(node.operand):
        return ast.Constant(-node.operand.value + delta)
    return ast.BinOp(node, ast.Add() if delta > 0 else ast.Sub(), ast.Constant(abs(delta)))


def mutants_of(root: Path, rel: str) -> list:
    source = (root / rel).read_text()
    finder = _Finder(source)
    finder.visit(ast.parse(source))
    seen, out = {}, []
    for start, end, original, op, text, func in finder.found:
        if _collapse(original) == _collapse(text.strip("()")) or op not in OPERATORS:
            continue
        m = Mutant(rel, func, op, start[0], start, end, original, text)
        base = f"{rel}:{func}:{op}:{_collapse(original)} -> {_collapse(text)}"
        seen[base] = seen.get(base, 0) + 1
        m.key = base if seen[base] == 1 else f"{base} #{seen[base]}"
        m.id = hashlib.sha1(m.key.encode()).hexdigest()[:8]
        try:
            with warnings.catch_warnings():            # e.g. `(1 + a)[i]` -> `1[i]`: valid syntax,
                warnings.simplefilter("ignore", SyntaxWarning)   # a TypeError when run
                compile(m.apply(source), rel, "exec")
        except SyntaxError:
            continue
        out.append(m)
    return out


def all_mutants(root: Path) -> list:
    files = sorted(str(p.relative_to(root)) for t in TARGETS for p in (root / t).rglob("*.py"))
    return [m for f in files for m in mutants_of(root, f)]


def sample(mutants, n, seed):
    """n mutants chosen by a hash of (seed, key): stable when unrelated code changes. They
    run in that random order, so a run cut short by its budget is still a random sample."""
    rank = lambda m: hashlib.sha1(f"{seed}:{m.key}".encode()).hexdigest()
    return sorted(mutants, key=rank)[:n]


# -- mapping modules to test files -------------------------------------------------------

def _module_name(rel: str) -> str:
    mod = rel[:-3].replace("/", ".")
    return mod[: -len(".__init__")] if mod.endswith(".__init__") else mod


def _defining_module(root: Path, package: str, name: str):
    """The submodule of `package` that is `name` or defines `name` at top level, if any."""
    pdir = root / package.replace(".", "/")
    if (pdir / f"{name}.py").exists():
        return f"{package}.{name}"
    pattern = re.compile(rf"^(class|def)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=", re.M)
    for p in sorted(pdir.rglob("*.py")):
        if p.name != "__init__.py" and pattern.search(p.read_text()):
            return _module_name(str(p.relative_to(root)))
    return None


def test_map(root: Path) -> dict:
    """{module: [test files]}: the test files that import the module, its own file first."""
    def imported(path):
        mods = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods.add(node.module)
                if (root / node.module.replace(".", "/")).is_dir():
                    mods |= {m for a in node.names if (m := _defining_module(root, node.module, a.name))}
        return mods

    tests = root / "tests"
    support = {p.stem: imported(p) for p in tests.glob("*.py") if not p.stem.startswith(("test_", "conftest"))}
    direct, indirect = {}, {}
    for test in sorted(tests.glob("test_*.py")):
        rel = str(test.relative_to(root))
        direct[rel] = imported(test)
        indirect[rel] = set().union(*(support[m] for m in direct[rel] if m in support))
    mapping, sources = {}, [str(p.relative_to(root)) for t in TARGETS for p in (root / t).rglob("*.py")]
    for rel in sources:
        mod, stem = _module_name(rel), Path(rel).stem
        own = [t for t in direct if Path(t).stem in (f"test_{stem}", f"test_{stem.lstrip('_')}")]
        files = own + [t for t, mods in direct.items() if mod in mods and t not in own]
        mapping[rel] = files + [t for t, mods in indirect.items() if mod in mods and t not in files]
    users = {rel: [u for u in sources if u != rel and _module_name(rel) in imported(root / u)] for rel in sources}
    for rel in sources:               # no test imports it: the test files of the modules that do
        if not mapping[rel]:
            mapping[rel] = list(dict.fromkeys(t for u in users[rel] for t in mapping[u]))
    # a paper's exact claims (tests/test_claims.py) run its module's measurements and what they import
    papers = {rel for rel in sources if re.search(r"^CLAIMS\b", (root / rel).read_text(), re.M)}
    claims = "tests/test_claims.py"
    for rel in sources:
        if (rel in papers or papers & set(users[rel])) and claims not in mapping[rel] and (root / claims).exists():
            mapping[rel].append(claims)
    return mapping


# -- equivalents ---------------------------------------------------------------------------

def read_equivalents(path: Path) -> dict:
    """{key: reason}. Format: key lines (as printed for a survivor), then the indented reason
    lines they share."""
    out, group, in_reason = {}, [], False
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            if not group:
                raise ValueError(f"{path}: reason without a key: {line!r}")
            for key in group:
                out[key] = (out[key] + " " + line.strip()).strip()
            in_reason = True
        else:
            group = group if not in_reason else []
            group.append(line.strip())
            out[line.strip()], in_reason = "", False
    missing = [k for k, r in out.items() if not r]
    if missing:
        raise ValueError(f"{path}: entries without a reason: {missing}")
    return out


# -- running tests in forked children -------------------------------------------------------

class _Plugin:
    """Loaded into each child's pytest: the ci profile without shrinking or database."""

    def __init__(self, numpy_only=False):
        self.durations, self.numpy_only = {}, numpy_only

    def pytest_collection_modifyitems(self, config, items):
        """Only the numpy instance of backend-parametrised tests (see STAGES)."""
        if not self.numpy_only:
            return
        other = lambda it: getattr(it, "callspec", None) and it.callspec.params.get("backend", ("numpy",))[0] != "numpy"
        drop = [it for it in items if other(it)]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [it for it in items if not other(it)]

    def pytest_configure(self, config):
        from hypothesis import Phase, settings
        name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
        phases = [p for p in settings.get_profile(name).phases if p not in (Phase.shrink, Phase.explain)]
        settings.register_profile("mutation", parent=settings.get_profile(name), database=None,
                                  phases=phases)
        settings.load_profile("mutation")

    def pytest_runtest_logreport(self, report):
        f = report.nodeid.split("::")[0]
        self.durations[f] = self.durations.get(f, 0.0) + report.duration


def _preload():
    """Import the heavy third-party modules once, in the parent (children inherit them)."""
    import numpy, numpy.testing, pytest, hypothesis, array_api_compat  # noqa: F401
    for optional in ("torch", "torch.optim", "torch._dynamo", "array_api_strict", "scipy", "sympy",
                     "hypothesis.extra._patching", "pytest_benchmark.plugin"):
        try:
            __import__(optional)
        except ImportError:
            pass


def _child(copy: Path, root: Path, args, log: Path, durations_out: Path | None, numpy_only: bool):
    os.setsid()                                        # own process group: killable as a whole
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(copy)
    sys.path[:] = [str(copy)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, root)]
    import pytest
    plugin = _Plugin(numpy_only)
    rc = pytest.main(list(args), plugins=[plugin])
    if durations_out is not None:
        durations_out.write_text(json.dumps(plugin.durations))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc))


@dataclass
class Job:
    mutant: Mutant | None
    worker: int
    stage: str                 # one of STAGES
    pid: int
    log: Path
    started: float
    timeout: float


@dataclass
class Result:
    mutant: Mutant
    status: str                # killed, timeout, survived, equivalent, error
    stage: str = ""
    test: str = ""
    seconds: float = 0.0


class Runner:
    def __init__(self, root: Path, jobs: int, tmp: Path):
        self.root, self.tmp = root, tmp
        self.copies = []
        for i in range(jobs):
            dst = tmp / f"w{i}" / "repo"
            shutil.copytree(root, dst, ignore=shutil.ignore_patterns(*COPY_IGNORE))
            self.copies.append(dst)
        self.env = {"HYPOTHESIS_PROFILE": "ci", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
                    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def start(self, worker: int, args, log: Path, durations_out=None, numpy_only=False) -> int:
        copy = self.copies[worker]
        os.environ.update(self.env, PYTHONPATH=str(copy))
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _child(copy, self.root, args, log, durations_out, numpy_only)
            finally:
                os._exit(3)
        return pid


def _failed_test(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.search(r"^(FAILED|ERROR) (\S+)", text, re.M)
    if m:
        return m.group(2)
    m = re.search(r"^(E\s+.*|.*Error.*)$", text, re.M)
    return (m.group(1)[:120] if m else "").strip()


def run(mutants, root: Path, *, jobs: int, budget_s: float | None, equivalents: dict,
        verbose=True, keep_logs: Path | None = None, mapped_only=False) -> tuple[list, dict]:
    """Run every mutant through the stages (without "full" if mapped_only); returns (results, timings)."""
    tmp = Path(tempfile.mkdtemp(prefix="tinynim-mutation-"))
    try:
        session = Session(root, jobs, tmp, equivalents, verbose, keep_logs, mapped_only)
        session.baseline(sorted({f for m in mutants for f in session.mapping.get(m.path) or ["tests"]})
                         if mapped_only else ["tests"])
        return session.run(mutants, budget_s), session.info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Session:
    """Worker copies, the queue of (mutant, stage) and the running children."""

    def __init__(self, root, jobs, tmp, equivalents, verbose, keep_logs=None, mapped_only=False):
        self.root, self.tmp, self.equivalents, self.verbose = root, tmp, equivalents, verbose
        self.keep_logs, self.mapped_only = keep_logs, mapped_only
        self.runner = Runner(root, jobs, tmp)
        self.mapping = test_map(root)
        self.originals, self.info, self.running = {}, {"mapped_only": mapped_only}, {}
        self.free = list(range(jobs))
        os.environ.update(self.runner.env)             # thread counts before torch is imported
        _preload()

    def baseline(self, files=("tests",)):
        """The unmutated copy must pass the whole non-slow suite (or the given test files);
        this also times each file."""
        t0, dur_file, log = time.time(), self.tmp / "durations.json", self.tmp / "baseline.log"
        _, status = os.waitpid(self.runner.start(0, PYTEST_ARGS + list(files), log, dur_file), 0)
        self.info["baseline_s"] = time.time() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"mutate: the unmutated suite fails:\n{log.read_text()[-3000:]}")
        self.durations = json.loads(dur_file.read_text())
        self.full_timeout = 60 + 4 * self.info["baseline_s"]
        if self.verbose:
            what = "the mapped test files pass" if list(files) != ["tests"] else "the non-slow suite passes"
            print(f"baseline: {what} in {self.info['baseline_s']:.0f} s", flush=True)

    def run(self, mutants, budget_s):
        self.queue, results, start = [(m, STAGES[0]) for m in mutants], [], time.time()
        if self.verbose:
            print(f"{len(mutants)} mutants, {len(self.free)} job(s)", flush=True)
        try:
            while self.queue or self.running:
                while self.queue and self.free:
                    if self.queue[0][1] == STAGES[0] and budget_s is not None and time.time() - start > budget_s:
                        self.queue = [q for q in self.queue if q[1] != STAGES[0]]   # started ones finish
                        continue
                    self.launch(*self.queue.pop(0))
                time.sleep(0.05)
                for result in self.collect():
                    results.append(result)
                    if self.verbose:
                        print(_line(result, len(results), len(mutants)), flush=True)
        except KeyboardInterrupt:
            for pid in self.running:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise
        self.info["mutation_s"] = time.time() - start
        self.info["not_run"] = len(mutants) - len(results)
        return results

    def launch(self, m, stage):
        w = self.free.pop(0)
        self.originals.setdefault(m.path, (self.root / m.path).read_text())
        (self.runner.copies[w] / m.path).write_text(m.apply(self.originals[m.path]))
        files = ["tests"] if stage == "full" else (self.mapping.get(m.path) or ["tests"])
        timeout = (self.full_timeout if files == ["tests"] else
                   60 + 4 * sum(self.durations.get(f, 1.0) for f in files))
        log = self.tmp / f"{m.id}-{stage}.log"
        numpy_only = stage != "all" and not m.path.startswith(ALL_BACKENDS)
        pid = self.runner.start(w, PYTEST_ARGS + files, log, numpy_only=numpy_only)
        self.running[pid] = Job(m, w, stage, pid, log, time.time(), timeout)

    def collect(self):
        """Results of the children that ended (or ran out of time) since the last call."""
        for pid, job in list(self.running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done and time.time() - job.started <= job.timeout:
                continue
            if not done:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
            del self.running[pid]
            result = self.finish(job, os.waitstatus_to_exitcode(status) if done else None)
            if result is not None:
                yield result

    def finish(self, job, code):
        m, secs = job.mutant, time.time() - job.started
        (self.runner.copies[job.worker] / m.path).write_text(self.originals[m.path])
        self.free.append(job.worker)
        if code is None:
            return Result(m, "timeout", job.stage, "", secs)
        if code == 0:
            later = [s for s in STAGES[STAGES.index(job.stage) + 1:] if not (s == "full" and self.mapped_only)]
            if later and not (later[0] == "all" and m.path.startswith(ALL_BACKENDS)):
                self.queue.insert(0, (m, later[0]))
                return None
            return Result(m, "equivalent" if m.key in self.equivalents else "survived", job.stage, "", secs)
        if code in (1, 2, 4):                           # failed, collection or conftest broken
            return Result(m, "killed", job.stage, _failed_test(job.log), secs)
        if self.keep_logs:
            shutil.copy(job.log, self.keep_logs / job.log.name)
        return Result(m, "error", job.stage, f"exit code {code}: {_failed_test(job.log)}", secs)


def _line(r: Result, i: int, n: int) -> str:
    m = r.mutant
    where = f"{m.path}:{m.line} {m.func}"
    what = f"{_collapse(m.original)[:60]} -> {_collapse(m.replacement)[:60]}"
    detail = f" [{r.stage}: {r.test}]" if r.status in ("killed", "error") and r.test else (f" [{r.stage}]" if r.stage else "")
    return f"[{i}/{n}] {r.status:<10} {m.id} {m.op:<11} {where}: {what}{detail} ({r.seconds:.1f} s)"


def summary(results, info, equivalents) -> int:
    count = lambda s: sum(r.status == s for r in results)
    killed = count("killed") + count("timeout")
    equiv, survived, errors = count("equivalent"), count("survived"), count("error")
    judged = len(results) - equiv
    score = killed / judged if judged else 1.0
    print(f"\n{len(results)} mutants run ({info.get('not_run', 0)} not run: budget), "
          f"{killed} killed ({count('timeout')} by timeout), {equiv} listed equivalent, "
          f"{survived} survived unexplained, {errors} errors")
    print(f"mutation score: {killed}/{judged} = {100 * score:.1f} %   "
          f"(raw, equivalents counted as survivors: {killed}/{len(results)} = "
          f"{100 * killed / max(len(results), 1):.1f} %)")
    if info.get("mapped_only"):
        print("(--mapped-only: each mutant met its mapped test files only, not the whole suite: a lower bound)")
    print(f"time: baseline {info.get('baseline_s', 0):.0f} s, mutants {info.get('mutation_s', 0):.0f} s")
    by_op = {}
    for r in results:
        k, n = by_op.get(r.mutant.op, (0, 0))
        by_op[r.mutant.op] = (k + (r.status in ("killed", "timeout", "equivalent")), n + 1)
    print("per operator (killed or equivalent / run): "
          + ", ".join(f"{op} {k}/{n}" for op, (k, n) in sorted(by_op.items())))
    survivors = [r for r in results if r.status in ("survived", "error")]
    if survivors:
        print(f"\nUNEXPLAINED SURVIVORS ({len(survivors)}): add a test, or list the key with the reason "
              f"it is equivalent in {EQUIVALENTS.relative_to(ROOT)}")
        for r in survivors:
            print(f"  {r.mutant.id}  {r.mutant.path}:{r.mutant.line}\n{r.mutant.key}")
    return 1 if survivors else 0


def rescore(report: Path, equivalents: dict) -> int:
    """The summary of a saved report, survivors re-judged against `equivalents`."""
    data = json.loads(report.read_text())
    fields = {f for f in Mutant.__dataclass_fields__}
    results = []
    for r in data["results"]:
        m = Mutant(**{k: (tuple(v) if k in ("start", "end") else v) for k, v in r.items() if k in fields})
        status = r["status"]
        if status in ("survived", "equivalent"):
            status = "equivalent" if m.key in equivalents else "survived"
        results.append(Result(m, status, r["stage"], r["test"], r["seconds"]))
    return summary(results, data["info"], equivalents)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="operators:\n" + "\n".join(f"  {k:<12} {v}" for k, v in OPERATORS.items()))
    ap.add_argument("--root", type=Path, default=ROOT, help="the tree to mutate (a copy is made)")
    ap.add_argument("--paths", nargs="*", help="only these files (relative to the root)")
    ap.add_argument("--operators", nargs="*", choices=sorted(OPERATORS), help="only these operators")
    ap.add_argument("--sample", type=int, help="run this many mutants, chosen by a seeded hash")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="parallel test runs (default 1)")
    ap.add_argument("--budget-minutes", type=float, help="stop starting new mutants after this")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--show", metavar="ID", help="print one mutant as a diff and exit")
    ap.add_argument("--report", type=Path, help="write the results as JSON here")
    ap.add_argument("--equivalents", type=Path, default=EQUIVALENTS)
    ap.add_argument("--keep-logs", type=Path, help="copy the test logs of errors here")
    ap.add_argument("--mapped-only", action="store_true",
                    help="skip the whole-suite stage: survivors of their mapped test files count (a lower bound)")
    ap.add_argument("--rerun", type=Path, metavar="REPORT",
                    help="run the mutants of a --report file again (same keys; before/after a fix)")
    ap.add_argument("--rescore", type=Path, metavar="REPORT",
                    help="re-read a --report file with the current equivalents file, run nothing")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if args.rescore:
        return rescore(args.rescore, read_equivalents(args.equivalents))

    mutants = all_mutants(root)
    if args.paths:
        mutants = [m for m in mutants if m.path in set(args.paths)]
    if args.operators:
        mutants = [m for m in mutants if m.op in set(args.operators)]
    if args.show:
        import difflib
        m = next((m for m in mutants if m.id == args.show), None)
        if m is None:
            print(f"mutate: no mutant with id {args.show}", file=sys.stderr)
            return 2
        src = (root / m.path).read_text()
        print(m.key)
        sys.stdout.writelines(difflib.unified_diff(src.splitlines(True), m.apply(src).splitlines(True),
                                                   f"a/{m.path}", f"b/{m.path}", n=2))
        return 0
    if args.rerun:                                     # the report's mutants, in its order
        keys = {r["key"]: i for i, r in enumerate(json.loads(args.rerun.read_text())["results"])}
        mutants = sorted((m for m in mutants if m.key in keys), key=lambda m: keys[m.key])
        if len(mutants) < len(keys):
            print(f"{len(keys) - len(mutants)} mutant(s) of {args.rerun} are no longer generated")
    if args.sample is not None:
        mutants = sample(mutants, args.sample, args.seed)
    if args.list:
        for m in mutants:
            print(f"{m.id}  {m.path}:{m.line}  {m.op:<11} {m.func}: "
                  f"{_collapse(m.original)} -> {_collapse(m.replacement)}")
        print(f"{len(mutants)} mutants")
        return 0
    equivalents = read_equivalents(args.equivalents)
    budget = None if args.budget_minutes is None else 60 * args.budget_minutes
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    results, info = run(mutants, root, jobs=args.jobs, budget_s=budget, equivalents=equivalents,
                        keep_logs=args.keep_logs, mapped_only=args.mapped_only)
    rc = summary(results, info, equivalents)
    if args.report:
        args.report.write_text(json.dumps({"info": info, "results": [
            {**asdict(r.mutant), "status": r.status, "stage": r.stage, "test": r.test,
             "seconds": round(r.seconds, 2)} for r in results]}, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
