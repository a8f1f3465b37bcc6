"""Every paper's claims (``CLAIMS`` of each module in ``tasks.PAPERS``), measured and checked.

This is the one place the tests assert the papers' numbers: each claim carries its bound,
the range observed over seeds when the bound was set, and why the bound is that wide
(``claim.why``: the tolerance statement of the statistical test). Exact claims (identities
in float64) are fast; statistical ones train a model (``slow``, fixed seeds, numpy) and share
one run per experiment. Times on a 2-core CPU: P1 ≈ 25 s, P3 ≈ 25 s, P5 ≈ 10 s in all.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import PAPERS, paper_modules
from tinynim import claims as cl
from tinynim.backend import use_backend

ROOT = Path(__file__).resolve().parent.parent
MODULES = paper_modules()
_measured = {}


def measured(module, experiment):
    """The metrics of one experiment, run once per test session (numpy, full size)."""
    key = (module.__name__, experiment)
    if key not in _measured:
        with use_backend("numpy", dtype="float32"):
            _measured[key] = module.measure(experiment, quick_mode=False)
    return _measured[key]


CASES = [pytest.param(m, c, id=c.id, marks=[pytest.mark.slow] if c.kind == "statistical" else [])
         for m in MODULES for c in m.CLAIMS]


@pytest.mark.parametrize("module, claim", CASES)
def test_claim(module, claim):
    """The measured value satisfies the claim's bound (see the claim's `why` for its width)."""
    claim.check(measured(module, claim.experiment)[claim.metric])


@pytest.mark.parametrize("module", MODULES, ids=PAPERS)
def test_claims_are_well_formed(module):
    """Unique ids with the paper's prefix, known experiments, a reason for every bound, and
    every observed range inside its own bound (a bound the data never met is no claim)."""
    cl.check_ids(module.CLAIMS)
    prefix = module.CLAIMS[0].id.split(".")[0]
    for c in module.CLAIMS:
        assert c.id.startswith(prefix + ".") and c.paper == module.PAPER and module.TITLE, c
        assert c.statement and c.why and c.source, c
        known = set(module.EXPERIMENTS) | set(getattr(module, "MEASUREMENTS", ())) | {"constructions", "baselines", "algebra"}
        assert c.experiment in known, c
        if c.observed is not None:
            assert all(c.holds(v) for v in c.observed), f"{c.id}: observed {c.observed} outside {cl.format_bound(c)}"


def test_claim_bounds_and_table():
    """Claim semantics on hand-made claims: each operator, the relative '~' bound, NaN, the
    table's verdict column and verify's message."""
    def claim(op, b, reference=None):
        return cl.Claim(id="X.y", paper="0000.00000", statement="s", kind="statistical", experiment="e",
                        metric="m", bound=(op, b), reference=reference, source="t", why="w")
    assert claim("<=", 1.0).holds(1.0) and not claim("<", 1.0).holds(1.0)
    assert claim(">=", 2.0).holds(2.0) and not claim(">", 2.0).holds(2.0)
    assert claim("~", 0.05, 0.2).holds(0.209) and not claim("~", 0.05, 0.2).holds(0.211)
    assert not claim("<=", 1.0).holds(float("nan"))
    with pytest.raises(ValueError, match="bound"):
        claim("==", 1.0)
    with pytest.raises(ValueError, match="numeric reference"):
        claim("~", 0.1, "exact")
    c = claim("<=", 1.0)
    text = cl.table([c], {"e": {"m": 2.0}})
    assert "| 2 | FAILS |" in text
    for rows in (cl.table([c]), text):                # every row has the header's column count
        assert len({row.count("|") for row in rows.splitlines()}) == 1, rows
    with pytest.raises(AssertionError, match=r"X.y: 2 \(asserted <= 1\)"):
        cl.verify([c], {"e": {"m": 2.0}})
    cl.verify([c], {"e": {"m": 0.5}})
    cl.verify([c], {})                                   # not measured: nothing to check


def test_readme_claims_table_is_current():
    """The README's results table is exactly what tools/claims.py generates from the claims."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "claims.py"), "readme", "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
