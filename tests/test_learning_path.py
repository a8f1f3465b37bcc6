"""The "write your own layer" walkthrough of docs/learning_path.md works as written: its
RMSNorm code block passes ``python -m tinynim check my_rmsnorm.py`` (a file outside the
package, run from another folder), and the bug the text describes makes the same command fail."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "learning_path.md"


def rmsnorm_block() -> str:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if "class RMSNorm" in b]
    assert len(blocks) == 1, f"{DOC}: expected one python block defining RMSNorm, found {len(blocks)}"
    return blocks[0]


def check(path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("TINYNIM_BACKEND", None)
    return subprocess.run([sys.executable, "-m", "tinynim", "check", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_walkthrough_layer_passes_check(tmp_path):
    (tmp_path / "my_rmsnorm.py").write_text(rmsnorm_block())
    proc = check(tmp_path / "my_rmsnorm.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"RMSNorm/default\s+\S+\s+\S+\s+ok", proc.stdout), proc.stdout
    assert "1/1 layer routes ok" in proc.stdout


def test_the_described_bug_fails_check(tmp_path):
    code = rmsnorm_block()
    buggy = code.replace("xp.mean(g * x_hat,", "xp.mean(g,")
    assert buggy != code, "the bug described in the walkthrough no longer matches its code"
    (tmp_path / "my_rmsnorm.py").write_text(buggy)
    proc = check(tmp_path / "my_rmsnorm.py")
    assert proc.returncode == 1 and "FAIL" in proc.stdout, proc.stdout + proc.stderr
