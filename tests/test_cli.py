"""`python -m tinynim` (info) and `python -m tinynim check`, run as the user runs them."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import backends
import tinynim
from tinynim.backend import available

ROOT = Path(__file__).resolve().parent.parent


def run(*args, backend="numpy", code=None):
    """Run ``python -m tinynim ARGS`` (or ``python -c CODE``) with a clean TINYNIM_* environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYNIM_")}
    env["TINYNIM_BACKEND"] = backend
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "tinynim", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def table_rows(stdout):
    """{layer: status} from the check table (the lines after the header)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    return {line.split()[0]: line.split()[-1] for line in lines[start + 1:-1]}


def test_info_lists_version_active_backend_and_every_backend():
    proc = run()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"tinynim {tinynim.__version__}" in out
    assert "active backend: numpy  device: cpu  dtype: float32" in out
    for name, (usable, _) in available().items():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert ("unusable" not in line) == usable, line


def test_check_passes_every_registered_layer_on_numpy():
    from tinynim.__main__ import import_layers
    proc = run("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    assert set(rows) == set(import_layers()), "every registered layer gets a row"
    assert set(rows.values()) == {"ok"}
    assert proc.stdout.strip().endswith(f"{len(rows)}/{len(rows)} layers ok")


def test_check_named_layers_on_array_api_strict():
    proc = run("check", "Linear", backend="array_api_strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gradient check on array_api_strict" in proc.stdout
    assert table_rows(proc.stdout) == {"Linear": "ok"}


def test_check_reports_a_wrong_backward_and_exits_1():
    """A Linear whose dW is off by a factor 2 must be flagged by FD (and torch when present)."""
    code = textwrap.dedent("""
        import sys
        from tinynim.__main__ import main
        from tinynim.nn.linear import Linear

        class BadLinear(Linear):
            def backward(self, params, cache, dout):
                dx, grads = super().backward(params, cache, dout)
                return dx, {**grads, "W": 2 * grads["W"]}

            @staticmethod
            def example(rng):                       # registers BadLinear
                return BadLinear(3, 4), Linear.example(rng)[1], {}

        sys.exit(main(["check", "BadLinear", "Linear"]))
    """)
    proc = run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert table_rows(proc.stdout) == {"BadLinear": "FAIL", "Linear": "ok"}
    assert "1 FAILED" in proc.stdout


@pytest.mark.parametrize("argv", [(), ("check",)])
def test_unknown_backend_is_one_clear_line_not_a_traceback(argv):
    proc = run(*argv, backend="nope")
    assert proc.returncode == 2
    assert "'nope'" in proc.stderr
    assert all(name in proc.stderr for name in backends.NAMES)
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_unknown_layer_name_exits_2():
    proc = run("check", "NoSuchLayer")
    assert proc.returncode == 2
    assert "NoSuchLayer" in proc.stderr and "Linear" in proc.stderr
