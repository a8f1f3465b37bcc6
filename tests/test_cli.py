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


def run(*args, backend="numpy", code=None, env=None):
    """Run ``python -m tinynim ARGS`` (or ``python -c CODE``) with a clean TINYNIM_* environment
    (plus `env`)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TINYNIM_")}, **(env or {})}
    env["TINYNIM_BACKEND"] = backend
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "tinynim", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def table_rows(stdout):
    """{Layer/route: status} from the check table (the lines after the header)."""
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


def test_check_passes_every_route_of_framework_and_task_layers_on_numpy():
    """`--include tasks` adds the paper models (LinearTransformer, RNNRegressor) to the
    framework layers; every route of every layer gets a row and passes."""
    from tinynim.__main__ import layers, routes
    proc = run("check", "--include", "tasks")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    registry = layers(["tasks"])
    assert {"LinearTransformer", "RNNRegressor"} <= set(registry)
    assert set(rows) == set(routes(registry)), "every route of every layer gets a row"
    assert {r.split("/")[0] for r in rows} == set(registry)
    assert set(rows.values()) == {"ok"}
    assert proc.stdout.strip().endswith(f"{len(rows)}/{len(rows)} layer routes ok")


def test_check_defaults_to_framework_layers_and_never_imports_tasks():
    """Without --include, check covers tinynim.nn.REGISTRY only, and tinynim imports no `tasks`."""
    code = textwrap.dedent("""
        import sys
        import tinynim.__main__, tinynim.nn
        assert "tasks" not in sys.modules, "tinynim imported tasks"
        assert "LinearTransformer" not in tinynim.__main__.layers()
        assert set(tinynim.__main__.layers()) == set(tinynim.nn.REGISTRY)
    """)
    proc = run(code=code)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_named_layers_and_routes_on_array_api_strict():
    proc = run("check", "Linear", "LayerNorm/default", backend="array_api_strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gradient check on array_api_strict" in proc.stdout
    assert table_rows(proc.stdout) == {"Linear/bias": "ok", "Linear/no_bias": "ok", "Linear/ntk": "ok",
                                        "LayerNorm/default": "ok"}


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
            def examples(rng):                      # found by --include __main__
                return {"bias": (BadLinear(3, 4), Linear.examples(rng)["bias"][1], {})}

        sys.exit(main(["check", "--include", "__main__", "BadLinear", "Linear/bias"]))
    """)
    proc = run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert table_rows(proc.stdout) == {"BadLinear/bias": "FAIL", "Linear/bias": "ok"}
    assert "1 FAILED" in proc.stdout


def test_check_uses_random_parameters_so_init_values_hide_nothing():
    """A LayerNorm whose dx forgets γ is right at init (γ = 1): check perturbs the init
    (tinynim.gradcheck.perturb), so it fails, and stderr names the array and the criterion."""
    code = textwrap.dedent("""
        import sys
        from tinynim.__main__ import main
        from tinynim.nn.norm import LayerNorm

        class NoGammaLayerNorm(LayerNorm):
            def backward(self, params, cache, dout):
                dx, _ = super().backward({**params, "gamma": params["gamma"] * 0 + 1}, cache, dout)
                return dx, super().backward(params, cache, dout)[1]

            @staticmethod
            def examples(rng):
                return {"default": (NoGammaLayerNorm(4), LayerNorm.examples(rng)["default"][1], {})}

        sys.exit(main(["check", "--include", "__main__", "NoGammaLayerNorm", "LayerNorm"]))
    """)
    proc = run(code=code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert table_rows(proc.stdout) == {"NoGammaLayerNorm/default": "FAIL", "LayerNorm/default": "ok"}
    assert "NoGammaLayerNorm/default: fd check" in proc.stderr and "  x: ‖Δ‖" in proc.stderr


@pytest.mark.parametrize("argv", [(), ("check",)])
def test_unknown_backend_is_one_clear_line_not_a_traceback(argv):
    proc = run(*argv, backend="nope")
    assert proc.returncode == 2
    assert "'nope'" in proc.stderr
    assert all(name in proc.stderr for name in backends.NAMES)
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("name", ["NoSuchLayer", "Linear/no_such_route"])
def test_unknown_layer_name_exits_2(name):
    proc = run("check", name)
    assert proc.returncode == 2
    assert name in proc.stderr and "Linear" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_include_module_is_one_line_exit_2():
    proc = run("check", "--include", "no_such_module_xyz")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tinynim check: cannot import --include module: No module named 'no_such_module_xyz'"
    assert proc.stdout == ""


@pytest.mark.parametrize("device", ["meta", "mps"])
def test_unusable_torch_device_is_one_clear_error_not_one_per_layer(device):
    """TINYNIM_DEVICE=meta|mps with torch (no MPS here): exit 2 with the one-line error naming
    the variable (plus the usual list of backends); it was exit 1 with an error per layer."""
    torch = pytest.importorskip("torch")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS: the error path cannot be reached")
    proc = run("check", backend="torch", env={"TINYNIM_DEVICE": device})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    error, backends_line = proc.stderr.splitlines()
    assert error.startswith(f"tinynim: TINYNIM_DEVICE='{device}'"), error
    assert backends_line.startswith("valid backends: ")


def test_check_of_a_missing_file_or_a_file_without_layers_is_one_line_exit_2(tmp_path):
    proc = run("check", str(tmp_path / "nope.py"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"tinynim check: cannot import no file {str(tmp_path / 'nope.py')!r}"
    (tmp_path / "empty.py").write_text("x = 1\n")
    proc = run("check", str(tmp_path / "empty.py"))
    assert proc.returncode == 2 and "no layer with examples(rng)" in proc.stderr, proc.stderr
