"""The primary rules, one cell at a time: threshold, negatives, (n, k) dominance, p %,
zeros, missing values; each returns a verdict and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

from policies import suppression
from policies.disclosure.params import (
    COUNTS,
    CellVerdict,
    DisclosureParams,
    Mitigation,
)
from policies.outputs import MAGNITUDE


@dataclass(frozen=True)
class CellEvidence:
    """What the rules see of one cell. Never shown to a user."""

    row: int
    column: str
    function: str
    value: object
    n: int | None  # __n_{i}
    row_n: int | None  # __n
    total: object = None
    top1: object = None
    top2: object = None
    negatives: int | None = None
    nulls: int | None = None
    # __joined: the fewest entities of any other joined table that reaches the row
    # (issue 17: one firm behind forty employees is one firm); None without a join
    joined: int | None = None


class RuleOutcome(NamedTuple):
    """A rule's answer for one cell: its verdict, a summary, whether it fired."""

    verdict: CellVerdict
    summary: str
    fired: bool


def _quiet(why: str) -> RuleOutcome:
    return RuleOutcome(CellVerdict.PASS, why, False)


def _exact(value: Any) -> Fraction | None:
    """An exact number for boundary comparisons; None when absent or not finite."""
    if value is None:
        return None
    if isinstance(value, float):
        # the float as written (0.4 is 4/10), not its binary expansion
        return Fraction(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    return Fraction(value)


def rule_threshold(cell: CellEvidence, p: DisclosureParams) -> RuleOutcome:
    limit = p.min_entities
    if cell.row_n is None or cell.n is None:
        return RuleOutcome(
            CellVerdict.SUPPRESS, "its contributor count is missing from the evidence", True
        )
    if cell.row_n < limit:
        return RuleOutcome(CellVerdict.SUPPRESS, f"its group has fewer than {limit} entities", True)
    if cell.joined is not None and cell.joined < limit:
        return RuleOutcome(
            CellVerdict.SUPPRESS,
            f"fewer than {limit} entities of a joined table reach its group",
            True,
        )
    if cell.function in COUNTS and cell.value == 0:
        return _quiet("a zero count is left to the zero rule")
    if cell.n < limit:
        return RuleOutcome(
            CellVerdict.SUPPRESS, f"fewer than {limit} entities contribute to it", True
        )
    if p.mitigation is Mitigation.ROUND_10_5 and cell.function in COUNTS:
        if isinstance(cell.value, int) and cell.value < limit:
            return RuleOutcome(CellVerdict.SUPPRESS, f"the count is below {limit}", True)
    return _quiet(f"at least {limit} entities contribute")


def rule_negative(cell: CellEvidence, p: DisclosureParams) -> RuleOutcome:
    if cell.function not in MAGNITUDE:
        return _quiet("negative contributions matter for SUM and AVG only")
    if cell.negatives is None:
        return RuleOutcome(
            CellVerdict.REVIEW, "the evidence does not say whether contributions are negative", True
        )
    if cell.negatives > 0:
        return RuleOutcome(
            CellVerdict.REVIEW,
            "some contributions are negative, so the dominance and p% rules cannot judge it",
            True,
        )
    return _quiet("no negative contributions")


def rule_dominance(cell: CellEvidence, p: DisclosureParams) -> RuleOutcome:
    if cell.function not in MAGNITUDE:
        return _quiet("dominance applies to SUM and AVG only")
    total, top1, top2 = _exact(cell.total), _exact(cell.top1), _exact(cell.top2) or Fraction(0)
    if total is None or top1 is None:
        return RuleOutcome(CellVerdict.SUPPRESS, "its dominance evidence is incomplete", True)
    top = top1 + top2 if p.dominance_n == 2 else top1
    if top > Fraction(str(p.dominance_k)) * total:
        who = "largest contributor holds" if p.dominance_n == 1 else "two largest contributors hold"
        share = float(Fraction(str(p.dominance_k)) * 100)
        return RuleOutcome(
            CellVerdict.SUPPRESS, f"its {who} more than {share:g}% of the total", True
        )
    return _quiet("no dominant contributors")


def rule_p_ratio(cell: CellEvidence, p: DisclosureParams) -> RuleOutcome:
    if cell.function not in MAGNITUDE:
        return _quiet("the p% rule applies to SUM and AVG only")
    total, top1, top2 = _exact(cell.total), _exact(cell.top1), _exact(cell.top2) or Fraction(0)
    if total is None or top1 is None:
        return RuleOutcome(CellVerdict.SUPPRESS, "its p% evidence is incomplete", True)
    if cell.function == "avg" and top1 == 0 and total == 0 and p.p_ratio > 0:
        # Every contribution is zero (negatives skip this rule), so any contributor
        # knows all the others' values exactly, as ACRO's p% check finds. A SUM's
        # contributors are its non-zero ones, so the threshold rule holds that cell;
        # an AVG counts every entity with a value.
        return RuleOutcome(
            CellVerdict.SUPPRESS,
            "every contribution is zero, so each contributor's value is known (p% rule)",
            True,
        )
    if total - top1 - top2 < Fraction(str(p.p_ratio)) * top1:
        return RuleOutcome(
            CellVerdict.SUPPRESS,
            "the second largest contributor could estimate the largest one too closely (p% rule)",
            True,
        )
    return _quiet("the p% rule holds")


def rule_zero(cell: CellEvidence, p: DisclosureParams) -> RuleOutcome:
    if cell.function not in COUNTS or cell.value != 0:
        return _quiet("not a zero count")
    if p.zero_cells is CellVerdict.PASS:
        return _quiet("zero counts are allowed by the parameters")
    return RuleOutcome(p.zero_cells, "it is a zero count, which may reveal an attribute", True)


def rule_missing(cell: CellEvidence, p: DisclosureParams) -> RuleOutcome:
    """ACRO's ``check_missing_values``: a note by default; ``missing_cells`` may make it
    a review or a suppression (a cell describing only the rows that have a value)."""
    if cell.nulls:
        if p.missing_cells is CellVerdict.PASS:
            return RuleOutcome(
                CellVerdict.PASS,
                "rows with a missing value were left out of it (a note only)",
                True,
            )
        return RuleOutcome(
            p.missing_cells, "rows with a missing value were left out of it (missing)", True
        )
    return _quiet("no missing values")


# Rules as data, in the order they run; a rule named in SKIPPED_AFTER's value is
# not run for a cell once its key has fired.
RULES: dict[str, Callable[[CellEvidence, DisclosureParams], RuleOutcome]] = {
    "threshold": rule_threshold,
    "negative": rule_negative,
    "dominance": rule_dominance,
    "p_ratio": rule_p_ratio,
    "zero": rule_zero,
    "missing": rule_missing,
}
SKIPPED_AFTER = {"negative": ("dominance", "p_ratio")}
ALL_RULES = (*RULES, suppression.RULE)

ADVICE = {
    "threshold": "widen the groups (fewer or coarser GROUP BY keys, a longer period) so every "
    "cell has at least {min_entities} entities",
    "dominance": "merge groups so that no one or two entities dominate a total, or ask for "
    "counts instead of sums",
    "p_ratio": "merge groups so that no one or two entities dominate a total, or ask for "
    "counts instead of sums",
    "complementary": "these cells were held back only so that others cannot be worked out "
    "from the totals; dropping ROLLUP/CUBE margins or widening the small groups frees them",
    "negative": "ask an output checker for review, or aggregate a measure without negative values",
    "zero": "ask an output checker for review: only a person can tell whether a zero is structural",
}
VERDICT_RANK = {CellVerdict.PASS: 0, CellVerdict.REVIEW: 1, CellVerdict.SUPPRESS: 2}


@dataclass(frozen=True)
class CellReport:
    """One aggregate cell that did not simply pass: its verdict, rules and why."""

    row: int
    column: str
    verdict: CellVerdict
    rules: tuple[str, ...]
    summary: str


class Judgement(NamedTuple):
    verdict: CellVerdict
    rules: tuple[str, ...]
    reasons: tuple[str, ...]

    def report(self, cell: CellEvidence) -> CellReport:
        summary = _cell_summary(cell.row, cell.column, self.verdict, self.reasons)
        return CellReport(cell.row, cell.column, self.verdict, self.rules, summary)


def judge(cell: CellEvidence, params: DisclosureParams) -> Judgement:
    verdict = CellVerdict.PASS
    fired: list[str] = []
    reasons: list[str] = []
    skipped: set[str] = set()
    for name, rule in RULES.items():
        if name in skipped:
            continue
        outcome = rule(cell, params)
        if not outcome.fired:
            continue
        fired.append(name)
        reasons.append(outcome.summary)
        skipped.update(SKIPPED_AFTER.get(name, ()))
        if VERDICT_RANK[outcome.verdict] > VERDICT_RANK[verdict]:
            verdict = outcome.verdict
    return Judgement(verdict, tuple(fired), tuple(reasons))


def _cell_summary(row: int, column: str, verdict: CellVerdict, reasons: tuple[str, ...]) -> str:
    what = {
        CellVerdict.PASS: "released",
        CellVerdict.SUPPRESS: "suppressed",
        CellVerdict.REVIEW: "held for review",
    }[verdict]
    if verdict is CellVerdict.PASS:
        notes = "; ".join(reasons) if reasons else "it passed every rule"
        return f"row {row}, column '{column}': released; note: {notes}"
    return f"row {row}, column '{column}': {what} because {'; '.join(reasons)}"
