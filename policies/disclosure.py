"""The output check: statistical disclosure control of an aggregate result (Art. 15).

Raw data may never reach a consumer, and an aggregate over a handful of people
or one dominant enterprise is raw data in disguise. This module decides, cell
by cell, what of an admitted query's result may leave the sandbox. It reads the
visible columns and the evidence columns fixed by :mod:`policies.outputs`, and
it is a pure function over a pyarrow table: no engine, no I/O.

The rules are data: :data:`RULES` maps a name to a small pure function of one
cell's evidence that returns a :class:`RuleOutcome` (a verdict and a summary in
plain words). The semantics follow ACRO's default risk appetite:

``threshold``
    fewer than ``min_entities`` entities contribute to the cell, or to its row
    (the row's ``__n``): suppress. A zero COUNT cell is left to ``zero``. Under
    ``ROUND_10_5`` a count cell whose value is below ``min_entities`` is
    suppressed as well (the "10" of 10-5).
``negative``
    SUM / AVG with an entity whose own sum is negative: shares of a total are
    then meaningless, so dominance and p% are skipped and a person reviews it.
``dominance``
    SUM / AVG: the top ``dominance_n`` entities hold more than ``dominance_k``
    of the total: suppress. The evidence carries the top two contributions
    only, so ``dominance_n`` is 1 or 2.
``p_ratio``
    SUM / AVG: ``total - top1 - top2 < p_ratio * top1``: the second largest
    contributor could estimate the largest too closely; suppress.
``zero``
    a COUNT cell equal to 0: ``zero_cells`` decides (review by default: only a
    person can tell a structural zero from a disclosive one).
``missing``
    rows with a NULL argument were left out: a note, never a suppression.

A cell's verdict is the strictest of its rules with SUPPRESS above REVIEW: a
cell that is suppressed anyway needs no reviewer. Complementary suppression of
margins lives in :mod:`policies.suppression`. Boundaries are compared exactly
(``fractions.Fraction``): "exactly 90 %" is not "more than 90 %".

Summaries never contain a cell's value, its contributor count or its top
contributions: they name the rule, the row and column, and what to do next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import NamedTuple

import pyarrow as pa

from . import suppression
from .classes import did_you_mean
from .errors import ConfigError, PolicyRefusal
from .outputs import EVIDENCE_PREFIX, MAGNITUDE, OutputRole, OutputSpec, evidence_name

ARTICLE = "Art. 15"
COUNTS = frozenset({"count", "count_star", "count_distinct"})


class CellVerdict(Enum):
    PASS = "pass"
    SUPPRESS = "suppress"
    REVIEW = "review"


class OutputVerdict(Enum):
    RELEASED = "released"
    RELEASED_WITH_SUPPRESSIONS = "released_with_suppressions"
    HELD_FOR_REVIEW = "held_for_review"
    REFUSED = "refused"


class Mitigation(Enum):
    SUPPRESS = "suppress"
    ROUND_10_5 = "round_10_5"  # suppress below 10, round the other COUNT cells to a base


# Strictness orders for check_not_below / tightened: later is stricter.
# REVIEW is weaker than SUPPRESS for zero cells: a reviewer may still release a
# reviewed zero, a suppressed one never leaves.
_ZERO_ORDER = (CellVerdict.PASS, CellVerdict.REVIEW, CellVerdict.SUPPRESS)
_MITIGATION_ORDER = (Mitigation.SUPPRESS, Mitigation.ROUND_10_5)


@dataclass(frozen=True)
class DisclosureParams:
    """The disclosure parameters of one output check.

    Stricter means "suppresses at least the same cells": a higher
    ``min_entities``, ``dominance_n``, ``p_ratio`` and ``rounding_base``, a lower
    ``dominance_k``, rounding over plain suppression, and for zeros
    PASS < REVIEW < SUPPRESS. A larger ``dominance_n`` is *stricter* at the same
    ``k``: the top two always hold at least the top one's share.
    """

    min_entities: int = field(default=10, metadata={"help": "fewest entities per cell and row"})
    dominance_n: int = field(default=2, metadata={"help": "(n, k) rule: how many top entities"})
    dominance_k: float = field(default=0.90, metadata={"help": "(n, k) rule: largest share"})
    p_ratio: float = field(default=0.10, metadata={"help": "p% rule: least uncertainty"})
    mitigation: Mitigation = field(
        default=Mitigation.SUPPRESS, metadata={"help": "suppress, or round_10_5 for counts"}
    )
    rounding_base: int = field(default=5, metadata={"help": "base of ROUND_10_5 rounding"})
    zero_cells: CellVerdict = field(
        default=CellVerdict.REVIEW, metadata={"help": "verdict for COUNT cells equal to 0"}
    )

    def __post_init__(self) -> None:
        for name in ("min_entities", "dominance_n", "rounding_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"disclosure parameter '{name}' must be a whole number")
        for name in ("dominance_k", "p_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ConfigError(f"disclosure parameter '{name}' must be a number")
        if not isinstance(self.mitigation, Mitigation):
            raise ConfigError("disclosure parameter 'mitigation' must be a Mitigation")
        if not isinstance(self.zero_cells, CellVerdict):
            raise ConfigError("disclosure parameter 'zero_cells' must be a CellVerdict")
        if self.min_entities < 1:
            raise ConfigError("disclosure parameter 'min_entities' must be at least 1")
        if self.dominance_n not in (1, 2):
            raise ConfigError(
                "disclosure parameter 'dominance_n' must be 1 or 2: the evidence carries "
                "the two largest contributions only"
            )
        if not 0 < self.dominance_k <= 1:
            raise ConfigError("disclosure parameter 'dominance_k' must be above 0 and at most 1")
        if not 0 <= self.p_ratio <= 1:
            raise ConfigError("disclosure parameter 'p_ratio' must be between 0 and 1")
        if self.rounding_base < 1:
            raise ConfigError("disclosure parameter 'rounding_base' must be at least 1")
        if self.mitigation is Mitigation.ROUND_10_5 and self.min_entities < 10:
            raise ConfigError(
                "disclosure parameter 'min_entities' must be at least 10 with mitigation "
                "'round_10_5', which suppresses counts below 10"
            )

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["mitigation"] = self.mitigation.value
        out["zero_cells"] = self.zero_cells.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> DisclosureParams:
        """Parse a mapping (from YAML, the store or an agreement); missing keys keep defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError("disclosure parameters must be a mapping of name to value")
        known = [f.name for f in fields(cls)]
        values = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(
                    f"unknown disclosure parameter '{key}'; " + did_you_mean(str(key), known)
                )
            if key == "mitigation":
                value = _enum(Mitigation, key, value)
            elif key == "zero_cells":
                value = _enum(CellVerdict, key, value)
            values[key] = value
        return cls(**values)

    def tightened(self, overrides: Mapping) -> DisclosureParams:
        """These parameters made stricter by an agreement's ``overrides``.

        Each parameter named in ``overrides`` (validated on its own, as by
        :meth:`from_dict`) takes the stricter of the two values, so an agreement
        can raise strictness but never lower it: the result always passes
        ``result.check_not_below(self)``.
        """
        asked = DisclosureParams.from_dict(overrides)
        stricter = {
            name: _stricter(name, getattr(self, name), getattr(asked, name)) for name in overrides
        }
        return replace(self, **stricter)

    def check_not_below(self, minimums: DisclosureParams) -> None:
        """Refuse parameters weaker than the authority's minimums (Art. 15).

        Compared one parameter at a time; each must be at least as strict.
        """
        weaker = [
            name
            for name in _ORDER
            if _stricter(name, getattr(self, name), getattr(minimums, name)) != getattr(self, name)
        ]
        if weaker:
            described = ", ".join(
                f"{name} {_show(getattr(self, name))} (minimum {_show(getattr(minimums, name))})"
                for name in weaker
            )
            raise PolicyRefusal(
                "disclosure_minimum",
                f"disclosure parameters weaker than the authority's minimum: {described}",
                article=ARTICLE,
                subject=weaker[0],
                hint="use parameters at least as strict as the authority's",
            )


def _enum(kind: type[Enum], key: str, value) -> Enum:
    if isinstance(value, kind):
        return value
    text = str(value).strip().lower()
    try:
        return kind(text)
    except ValueError:
        names = [m.value for m in kind]
        raise ConfigError(
            f"disclosure parameter '{key}': unknown value '{value}'; " + did_you_mean(text, names)
        ) from None


def _show(value) -> str:
    return value.value if isinstance(value, Enum) else str(value)


# name -> key whose larger value is stricter.
_ORDER: dict[str, Callable] = {
    "min_entities": lambda v: v,
    "dominance_n": lambda v: v,
    "dominance_k": lambda v: -v,
    "p_ratio": lambda v: v,
    "mitigation": _MITIGATION_ORDER.index,
    "rounding_base": lambda v: v,
    "zero_cells": _ZERO_ORDER.index,
}


def _stricter(name: str, a, b):
    return b if _ORDER[name](b) > _ORDER[name](a) else a


# --------------------------------------------------------------------------- cells


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


class RuleOutcome(NamedTuple):
    """A rule's answer for one cell: its verdict, a summary, whether it fired."""

    verdict: CellVerdict
    summary: str
    fired: bool


def _quiet(why: str) -> RuleOutcome:
    return RuleOutcome(CellVerdict.PASS, why, False)


def _exact(value) -> Fraction | None:
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
    if cell.nulls:
        return RuleOutcome(
            CellVerdict.PASS, "rows with a missing value were left out of it (a note only)", True
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


class _Judgement(NamedTuple):
    verdict: CellVerdict
    rules: tuple[str, ...]
    reasons: tuple[str, ...]

    def report(self, cell: CellEvidence) -> CellReport:
        summary = _cell_summary(cell.row, cell.column, self.verdict, self.reasons)
        return CellReport(cell.row, cell.column, self.verdict, self.rules, summary)


def _judge(cell: CellEvidence, params: DisclosureParams) -> _Judgement:
    verdict, fired, reasons, skipped = CellVerdict.PASS, [], [], set()
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
    return _Judgement(verdict, tuple(fired), tuple(reasons))


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


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class CheckResult:
    """The outcome of the output check of one table."""

    verdict: OutputVerdict
    released: pa.Table  # visible columns only; suppressed cells NULL; counts rounded if asked
    cells: tuple[CellReport, ...]  # every aggregate cell that did not simply pass
    counts: dict[str, int]  # cells per rule fired, plus cells, suppressed, review, rounded
    params: DisclosureParams = field(default_factory=DisclosureParams)

    def summary_text(self) -> str:
        """What was held back and why, in plain words, and what to do next."""
        c, p = self.counts, self.params
        lines = []
        if self.verdict is OutputVerdict.RELEASED:
            lines.append(f"Released: all {c['cells']} cells passed the output check ({ARTICLE}).")
        elif self.verdict is OutputVerdict.RELEASED_WITH_SUPPRESSIONS:
            lines.append(
                f"Released with {c['suppressed']} of {c['cells']} cells held back ({ARTICLE}); "
                "they are empty in the released table."
            )
        elif self.verdict is OutputVerdict.HELD_FOR_REVIEW:
            lines.append(
                f"Held for review: {c['review']} of {c['cells']} cells need an output checker "
                f"to look at them; nothing is released until the review is done ({ARTICLE})."
            )
        elif c["cells"] == 0:
            lines.append(f"Refused: the output has no aggregate cell to release ({ARTICLE}).")
        else:
            lines.append(f"Refused: none of the {c['cells']} cells can be released ({ARTICLE}).")
        for rule in ALL_RULES:
            if rule == "missing" or not c.get(rule):
                continue
            lines.append(f"- {_cells(c[rule])}: {_RULE_WORDS[rule].format(**p.to_dict())}.")
        if c.get("missing"):
            lines.append(
                f"Note: {_cells(c['missing'])} left out rows with a missing value; they describe "
                "only the rows that have one."
            )
        if c.get("rounded"):
            lines.append(
                f"Note: {c['rounded']} count cells were rounded to a multiple of "
                f"{p.rounding_base}; sums, averages and other statistics are not rounded."
            )
        advice = [ADVICE[r].format(**p.to_dict()) for r in ADVICE if c.get(r)]
        if advice:
            lines.append("What to do next: " + "; ".join(dict.fromkeys(advice)) + ".")
        return "\n".join(lines)


def _cells(number: int) -> str:
    return "1 cell" if number == 1 else f"{number} cells"


_RULE_WORDS = {
    "threshold": "fewer than {min_entities} entities in the cell or its group (threshold)",
    "negative": "negative contributions make the dominance rules undefined (negative)",
    "dominance": "the largest contributors hold more than the allowed share of the total "
    "(dominance)",
    "p_ratio": "the second largest contributor could estimate the largest too closely (p% rule)",
    "zero": "zero counts, which may reveal an attribute of a whole group (zero)",
    "complementary": "held back so that suppressed cells cannot be worked out from totals "
    "(complementary)",
}


def _column(table: pa.Table, name: str, *, required: bool = True) -> list | None:
    if name in table.column_names:
        return table.column(name).to_pylist()
    if not required:
        return None
    raise PolicyRefusal(
        "evidence_missing",
        f"the output lacks the evidence column '{name}', so it cannot be checked",
        subject=name,
        hint="this is a platform fault; report it with the job id",
    )


def _evidence(table: pa.Table, spec: OutputSpec) -> dict[int, list[CellEvidence]]:
    """Every aggregate cell's evidence, by output column position."""
    rows = table.num_rows
    row_n = _column(table, evidence_name("n"))
    out: dict[int, list[CellEvidence]] = {}
    for i, col in spec.aggregates():
        fn = col.function or ""
        values = _column(table, col.name)
        n = _column(table, evidence_name("n", i))
        nulls = _column(table, evidence_name("null", i), required=False) or [None] * rows
        magnitude = fn in MAGNITUDE
        extra = {
            kind: (_column(table, evidence_name(kind, i)) if magnitude else [None] * rows)
            for kind in ("total", "top1", "top2", "neg")
        }
        out[i] = [
            CellEvidence(
                row=r,
                column=col.name,
                function=fn,
                value=values[r],
                n=n[r],
                row_n=row_n[r],
                total=extra["total"][r],
                top1=extra["top1"][r],
                top2=extra["top2"][r],
                negatives=extra["neg"][r],
                nulls=nulls[r],
            )
            for r in range(rows)
        ]
    return out


def _round(value, base: int):
    if not isinstance(value, int) or base <= 1:
        return value
    return (value + base // 2) // base * base


def check_output(table: pa.Table, spec: OutputSpec, params: DisclosureParams) -> CheckResult:
    """Decide what of an admitted query's result may leave the sandbox (Art. 15).

    Every aggregate cell is judged by :data:`RULES`; with margins, cells are then
    suppressed until no relation holds exactly one suppressed cell. REVIEW cells
    count as released for that: the whole output waits for the reviewer, and a
    reviewer who suppresses one must run the check again with that decision.
    A missing evidence column refuses the whole output (fail closed).
    """
    evidence = _evidence(table, spec)
    judged = {
        (cell.row, i): _judge(cell, params) for i, cells in evidence.items() for cell in cells
    }

    if spec.has_margins and table.num_rows:
        found = suppression.relations(table, spec)
        for i, cells in evidence.items():
            hidden = [c.row for c in cells if judged[(c.row, i)].verdict is CellVerdict.SUPPRESS]
            for r in suppression.complete(found, hidden, [c.n for c in cells]):
                before = judged[(r, i)]
                judged[(r, i)] = _Judgement(
                    CellVerdict.SUPPRESS,
                    (*before.rules, suppression.RULE),
                    (*before.reasons, _COMPLEMENTARY_REASON),
                )

    counts = {rule: 0 for rule in ALL_RULES}
    for judgement in judged.values():
        for rule in judgement.rules:
            counts[rule] += 1
    verdicts = [j.verdict for j in judged.values()]
    counts["cells"] = len(verdicts)
    counts["suppressed"] = verdicts.count(CellVerdict.SUPPRESS)
    counts["review"] = verdicts.count(CellVerdict.REVIEW)
    released, counts["rounded"] = _released(table, spec, judged, params)

    if counts["cells"] == counts["suppressed"]:
        verdict = OutputVerdict.REFUSED
    elif counts["review"]:
        verdict = OutputVerdict.HELD_FOR_REVIEW
    elif counts["suppressed"]:
        verdict = OutputVerdict.RELEASED_WITH_SUPPRESSIONS
    else:
        verdict = OutputVerdict.RELEASED
    reports = tuple(
        judged[key].report(evidence[key[1]][key[0]])
        for key in sorted(judged)
        if judged[key].verdict is not CellVerdict.PASS or judged[key].rules
    )
    return CheckResult(verdict, released, reports, counts, params)


_COMPLEMENTARY_REASON = (
    "a total next to it would otherwise reveal a suppressed cell (complementary)"
)


def _released(
    table: pa.Table, spec: OutputSpec, judged: dict, params: DisclosureParams
) -> tuple[pa.Table, int]:
    """The visible columns, suppressed cells set to NULL, counts rounded if asked."""
    position = {c.name: i for i, c in enumerate(spec.columns) if c.role is OutputRole.AGGREGATE}
    rounding = params.mitigation is Mitigation.ROUND_10_5
    rounded = 0
    columns, names = [], []
    for name in table.column_names:
        if name.startswith(EVIDENCE_PREFIX):
            continue
        column = table.column(name)
        i = position.get(name)
        if i is not None:
            values = column.to_pylist()
            for r in range(len(values)):
                if judged[(r, i)].verdict is CellVerdict.SUPPRESS:
                    values[r] = None
                elif rounding and spec.columns[i].function in COUNTS and values[r] is not None:
                    values[r] = _round(values[r], params.rounding_base)
                    rounded += 1
            column = pa.array(values, type=column.type)
        columns.append(column)
        names.append(name)
    return pa.table(columns, names=names), rounded
