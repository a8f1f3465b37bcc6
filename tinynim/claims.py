"""Claims as data: a paper's reference numbers and this project's pass bounds, in one place.

Each paper's task module declares a tuple ``CLAIMS`` of :class:`Claim`. A claim names

* what is measured: ``experiment`` (a name the task module's ``measure(name)`` knows) and
  ``metric`` (a key of the dict that measurement returns);
* the paper's number, ``reference``, and where it comes from, ``source`` (a table or figure
  of the paper, the official code, or "ours": our reconstruction where the paper gives none);
* the bound this project asserts, ``bound = (op, value)`` with op one of ``OPS``
  (``"~"``: within a relative tolerance `value` of the reference);
* ``observed``: the range measured over ``seeds`` when the bound was set, and ``why``: why
  the bound has the width it has (the tolerance statement of a statistical test).

The trained-solution tests are parametrised over the claims, the examples print their closing
"paper vs ours" table with :func:`table`, and the README's results table is generated from
them (``python tools/claims_table.py``). A number a reader sees anywhere comes from here.
"""
from __future__ import annotations

import dataclasses
import math

KINDS = ("exact", "statistical")
OPS = ("<=", ">=", "<", ">", "~")


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str                                  # "P1.one_layer.loss_over_gd"
    paper: str                               # arXiv id, e.g. "2212.07677"
    statement: str                           # one line a reader understands
    kind: str                                # "exact" | "statistical" (trained, Monte Carlo)
    experiment: str                          # what the task module's measure() runs
    metric: str                              # key of the metrics it returns
    bound: tuple                             # (op, value): what is asserted
    reference: float | tuple | str | None = None   # the paper's number(s)
    source: str = ""                         # where the reference comes from
    observed: tuple | None = None            # (min, max) measured over `seeds`
    seeds: str = ""
    why: str = ""                            # why the bound is this wide

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Claim {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        op = self.bound[0] if isinstance(self.bound, tuple) and len(self.bound) == 2 else None
        if op not in OPS:
            raise ValueError(f"Claim {self.id}: bound must be (op, value) with op in {OPS}, got {self.bound!r}")
        if op == "~" and not isinstance(self.reference, (int, float)):
            raise ValueError(f"Claim {self.id}: bound '~' needs a numeric reference, got {self.reference!r}")

    def holds(self, value: float) -> bool:
        """Does the measured `value` satisfy the bound? (NaN never does.)"""
        op, b = self.bound
        value = float(value)
        if math.isnan(value):
            return False
        if op == "~":
            return abs(value - self.reference) <= b * abs(self.reference)
        return {"<=": value <= b, ">=": value >= b, "<": value < b, ">": value > b}[op]

    def check(self, value: float) -> None:
        """Raise AssertionError, naming the claim, the value and the bound, unless it holds."""
        if not self.holds(value):
            raise AssertionError(f"claim {self.id} ({self.statement}) fails: measured {float(value):.6g}, "
                                 f"bound {format_bound(self)}; observed when set {format_observed(self)}")


def format_number(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, tuple):
        return "–".join(format_number(x) for x in v)
    v = float(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.1e}"
    return f"{v:.4g}"


def format_bound(claim: Claim) -> str:
    op, b = claim.bound
    if op == "~":
        return f"within {100 * b:g} % of {format_number(claim.reference)}"
    return f"{op} {format_number(b)}"


def format_observed(claim: Claim) -> str:
    if claim.observed is None:
        return "–"
    return format_number(tuple(claim.observed)) + (f" ({claim.seeds})" if claim.seeds else "")


def select(claims, kind=None, experiment=None):
    """The claims of one kind and/or one experiment, in order."""
    return [c for c in claims if (kind is None or c.kind == kind)
            and (experiment is None or c.experiment == experiment)]


def check_ids(claims) -> None:
    """Raise ValueError if two claims share an id."""
    seen = set()
    for c in claims:
        if c.id in seen:
            raise ValueError(f"claims: duplicate id {c.id!r}")
        seen.add(c.id)


def table(claims, measured=None) -> str:
    """A markdown table of `claims`; with `measured` ({experiment: {metric: value}}) two more
    columns: the value of this run and whether it satisfies the bound."""
    head = "| claim | reference (source) | asserted | observed when set |"
    rule = "|---|---|---|---|"
    if measured is not None:
        head, rule = head + " this run | |", rule + "---|---|"
    lines = [head, rule]
    for c in claims:
        ref = format_number(c.reference) + (f" ({c.source})" if c.source else "")
        row = f"| {c.statement} | {ref} | {format_bound(c)} | {format_observed(c)} |"
        if measured is not None:
            value = value_of(c, measured)
            row += " not run | |" if value is None else f" {format_number(value)} | {'ok' if c.holds(value) else 'FAILS'} |"
        lines.append(row)
    return "\n".join(lines)


def value_of(claim: Claim, measured):
    """The measured value of `claim` in {experiment: {metric: value}}, or None if not run."""
    return measured.get(claim.experiment, {}).get(claim.metric)


def verify(claims, measured, kinds=KINDS) -> None:
    """Check every claim of the given kinds that was measured; one AssertionError listing
    each failing claim with its value and bound."""
    bad = [(c, v) for c in claims if c.kind in kinds
           for v in [value_of(c, measured)] if v is not None and not c.holds(v)]
    if bad:
        raise AssertionError("claims failing: " + "; ".join(
            f"{c.id}: {format_number(v)} (asserted {format_bound(c)})" for c, v in bad))


__all__ = ["Claim", "KINDS", "OPS", "select", "check_ids", "table", "value_of", "verify", "format_bound",
           "format_observed"]
