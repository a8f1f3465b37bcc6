"""Every ``examples/*.py`` runs to completion in quick mode (TINYNIM_QUICK=1, Agg backend).

A crash, a failed assertion inside an example (they check their own claims) or any
other non-zero exit fails the test. New examples are picked up by the glob.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples():
    assert EXAMPLES, f"no examples found under {ROOT / 'examples'}"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_in_quick_mode(path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYNIM_")}
    env.update(TINYNIM_QUICK="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, (f"{path.name} exited with {proc.returncode}\n"
                                  f"--- stdout (tail) ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr}")
