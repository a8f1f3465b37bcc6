"""The package layout's promises: dependencies point inward, and the generic top-level name
`backends` cannot be silently shadowed."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path):
    """Top-level module names imported anywhere in a Python file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_framework_never_imports_tasks_tools_or_examples():
    """tinynim/ and backends/ import neither the papers' tasks nor tools or examples."""
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & {"tasks", "tools", "examples"})
                 for folder in ("tinynim", "backends") for p in (ROOT / folder).rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_a_foreign_backends_module_is_a_clear_error(tmp_path):
    """A user's own `backends.py` first on sys.path: tinynim refuses it, naming the file."""
    (tmp_path / "backends.py").write_text("x = 1\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); sys.path.insert(1, {str(ROOT)!r}); import tinynim"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    assert "tinynim needs its own top-level package 'backends'" in proc.stderr
    assert str(tmp_path / "backends.py") in proc.stderr
