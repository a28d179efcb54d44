"""The output check of a whole table: each cell judged, the class rule (a count cell
holding almost all of a margin), secondary suppression of the margins (on the declared
hypercube with the interval audit of :mod:`policies.audit` when the output has a
declared grid, else :mod:`policies.suppression`), the same audit across the earlier
releases of the output's lineage (``lineage=``, :func:`_lineage`), 10-5 rounding, and
the report the checkers read (docs/disclosure.md, "Interval audit" and "Class
disclosure").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, overload

import pyarrow as pa

from policies import audit, suppression
from policies.disclosure.cells import (
    ADVICE,
    RULES,
    CellEvidence,
    CellReport,
    Judgement,
    judge,
)
from policies.disclosure.params import (
    ARTICLE,
    COUNTS,
    CellVerdict,
    DisclosureParams,
    Mitigation,
    OutputVerdict,
)
from policies.domains import canonical
from policies.errors import PolicyRefusal
from policies.outputs import (
    EVIDENCE_PREFIX,
    MAGNITUDE,
    OutputRole,
    OutputSpec,
    evidence_name,
    grouping_mask,
)

# Class disclosure (issue 17, item 2): a count cell holding at least this share of its
# margin's entities (``DisclosureParams.class_share``, 90% by default) says that almost
# everyone in the margin has the cell's code.
CLASS_RULE = "class"
# A table whose suppression pattern does not pass the interval audit leaves nothing.
AUDIT_RULE = "audit"
PATTERN_ROUNDS = 100  # audits the greedy pattern may run after its first, per measure
# Every rule a report counts, in the order the summary lists them.
REPORTED_RULES = (*RULES, CLASS_RULE, suppression.RULE, AUDIT_RULE)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of the output check of one table."""

    verdict: OutputVerdict
    released: pa.Table  # visible columns only; suppressed cells NULL; counts rounded if asked
    cells: tuple[CellReport, ...]  # every aggregate cell that did not simply pass
    counts: dict[str, int]  # cells per rule fired, plus cells, suppressed, review, rounded
    params: DisclosureParams = field(default_factory=DisclosureParams)
    # the audit across releases (``check_output(lineage=...)``): the output's cells as the
    # history keeps them, and what the checkers read of it
    lineage: LineageOutcome | None = None

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
        words = {**p.to_dict(), "class_share": f"{class_share(p):.0%}"}
        for rule in REPORTED_RULES:
            if not c.get(rule) or (rule == "missing" and p.missing_cells is CellVerdict.PASS):
                continue
            lines.append(f"- {_cells(c[rule])}: {_RULE_WORDS[rule].format(**words)}.")
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
        if self.lineage is not None and self.lineage.summary:
            lines.append(f"Note: {self.lineage.summary}")
        advice = [_ADVICE[r].format(**words) for r in _ADVICE if c.get(r)]
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
    "missing": "rows with a missing value were left out, and the parameters hold such cells "
    "back (missing)",
    "class": "the cell holds at least {class_share} of the entities of a margin, which would "
    "tell an attribute of almost everyone in that margin (class)",
    "complementary": "held back so that suppressed cells cannot be worked out from totals "
    "(complementary)",
    "audit": "no pattern of held-back cells could be found that keeps every suppressed cell "
    "from being narrowed by the released totals, so nothing of the table is released (audit)",
}
_ADVICE = {
    **ADVICE,
    "class": "ask for the counts with the attribute's margin only, or merge its codes",
    "audit": "drop some of the margins (fewer grouping sets) or widen the small groups",
}


def class_share(params: DisclosureParams) -> float:
    """The class-disclosure share in force (``class_share``, 90% by default)."""
    return float(params.class_share)


def protection(params: DisclosureParams) -> tuple[float, float]:
    """The protection interval's share of a suppressed cell's value and its minimum
    (``protection_share`` 10% and ``protection_minimum`` 1 by default)."""
    return float(params.protection_share), float(params.protection_minimum)


@overload
def _column(table: pa.Table, name: str) -> list[Any]: ...
@overload
def _column(table: pa.Table, name: str, *, required: bool) -> list[Any] | None: ...
def _column(table: pa.Table, name: str, *, required: bool = True) -> list[Any] | None:
    if name in table.column_names:
        values: list[Any] = table.column(name).to_pylist()
        return values
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
    joined = _column(table, evidence_name("joined"), required=False) or [None] * rows
    out: dict[int, list[CellEvidence]] = {}
    for i, col in spec.aggregates():
        fn = col.function or ""
        values = _column(table, col.name)
        n = _column(table, evidence_name("n", i))
        nulls = _column(table, evidence_name("null", i), required=False) or [None] * rows
        magnitude = fn in MAGNITUDE
        extra: dict[str, list[Any]] = {
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
                joined=joined[r],
            )
            for r in range(rows)
        ]
    return out


def _round(value: object, base: int) -> object:
    if not isinstance(value, int) or base <= 1:
        return value
    return (value + base // 2) // base * base


def check_output(
    table: pa.Table,
    spec: OutputSpec,
    params: DisclosureParams,
    grid: Mapping[str, Sequence[Any]] | None = None,
    lineage: Lineage | None = None,
) -> CheckResult:
    """Decide what of an admitted query's result may leave the sandbox (Art. 15).

    Every aggregate cell is judged by :data:`RULES`, and count cells by the class
    rule (:func:`_class_disclosure`). With margins, secondary suppression follows:

    * with a declared ``grid`` (the declared codes of every group key, ``jobs.grid``),
      the table's rows are cells of the hypercube over those keys and
      :func:`_audited` chooses the pattern (:func:`policies.audit.secondary_pattern`,
      value-free costs) and releases only what passes the interval audit;
    * without one, :mod:`policies.suppression` suppresses until no relation one key
      apart holds exactly one suppressed cell (subtotals two keys apart are not
      linked: that weakness stays for outputs without declared code lists).

    REVIEW cells count as released for that: the whole output waits for the reviewer,
    and a reviewer who suppresses one must run the check again with that decision.
    A missing evidence column refuses the whole output (fail closed).

    With ``lineage`` (the earlier releases of the output's lineage, measure and WHERE),
    the pattern grows further until the audit on the hypercube over the union of their
    dimensions passes too (:func:`_lineage`), and :attr:`CheckResult.lineage` gives the
    output's cells as the history records them.
    """
    evidence = _evidence(table, spec)
    primary = {
        (cell.row, i): judge(cell, params) for i, cells in evidence.items() for cell in cells
    }
    judged = dict(primary)
    layout = _layout(table, spec) if table.num_rows and spec.group_keys else None
    class_down = (
        {}
        if layout is None
        else _class_disclosure(layout, evidence, judged, params, margins=spec.has_margins)
    )

    if spec.has_margins and layout is not None:
        if grid is not None:
            _audited(layout, spec, evidence, primary, judged, params, grid, class_down)
        else:
            found = suppression.relations(table, spec)
            for i, cells in evidence.items():
                hidden = [c.row for c in cells if judged[(c.row, i)].verdict is _SUPPRESS]
                for r in suppression.complete(found, hidden, [c.n for c in cells]):
                    judged[(r, i)] = _suppressed(judged[(r, i)], *_COMPLEMENTARY)
    outcome = None
    if lineage is not None:
        outcome = _lineage(table, layout, spec, evidence, primary, judged, params, class_down,
                           lineage)  # fmt: skip

    counts = {rule: 0 for rule in REPORTED_RULES}
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
    return CheckResult(verdict, released, reports, counts, params, outcome)


_SUPPRESS = CellVerdict.SUPPRESS
_COMPLEMENTARY = (
    suppression.RULE,
    "a total next to it would otherwise reveal a suppressed cell (complementary)",
)
_UNRESOLVED = (
    AUDIT_RULE,
    "no pattern of held-back cells keeps the suppressed cells of the table from being "
    "narrowed by its released totals (audit)",
)


def _suppressed(before: Judgement, rule: str, reason: str) -> Judgement:
    return Judgement(_SUPPRESS, (*before.rules, rule), (*before.reasons, reason))


@dataclass(frozen=True)
class _Layout:
    """Per output row: its grouping set and its group keys' values."""

    sets: list[frozenset[str]]
    keys: dict[str, list[Any]]

    def label(self, row: int, keys: frozenset[str], order: Sequence[str]) -> tuple[Any, ...]:
        return tuple(self.keys[k][row] for k in order if k in keys)


def _layout(table: pa.Table, spec: OutputSpec) -> _Layout | None:
    """None for an output without margins that does not select all its group keys (its
    rows cannot be told apart by key; with margins that refuses, as before)."""
    shown = {c.group_key: c.name for c in spec.columns if c.role is OutputRole.GROUP}
    if not spec.has_margins and any(
        shown.get(k, k) not in table.column_names for k in spec.group_keys
    ):
        return None
    by_mask = {grouping_mask(spec, s): frozenset(s) for s in spec.grouping_sets}
    masks = _column(table, evidence_name("grouping"), required=spec.has_margins)
    sets = []
    for row, mask in enumerate(masks or [grouping_mask(spec, spec.grouping_sets[0])] * len(table)):
        if mask not in by_mask:
            raise PolicyRefusal(
                "evidence_mismatch",
                f"output row {row} belongs to no declared grouping set",
                subject=evidence_name("grouping"),
                hint="this is a platform fault; report it with the job id",
            )
        sets.append(by_mask[mask])
    return _Layout(sets, suppression.key_values(table, spec))


def _class_disclosure(
    layout: _Layout,
    evidence: dict[int, list[CellEvidence]],
    judged: dict[tuple[int, int], Judgement],
    params: DisclosureParams,
    *,
    margins: bool,
) -> dict[tuple[int, int], float]:
    """The class rule (issue 17, item 2), in place on ``judged``: a count cell whose
    entities are at least :func:`class_share` of its margin's along one of its keys is
    suppressed ("almost everyone in county X is Y"). Only grouping sets of two keys or
    more: a one-key table's margin is the whole population, which the dataset's own
    description already names.

    A margin's entities are its row's evidence (``__n_i``) when the output has that
    row; otherwise, in an output without margins, the sum of the cells along the key.
    That sum is exact when each entity lies in one cell of the key (one sex per
    person), and an over-count otherwise (the share is then understated, and the rule
    may miss a cell). An output with margins is judged only along the margins it
    lists: ``ROLLUP(county, town)`` lists no town total over counties, since towns
    nest in counties, and "everyone in town t lives in county c" discloses nothing.
    A plain ``GROUP BY county, town`` cannot say so, and holds its towns back:
    declared hierarchies, which would exempt nested keys, are not modelled.

    Returns, per suppressed cell, how far down (in the cell's value) the secondary
    pattern must leave its range open for the share to stay unknown: its value less
    ``share`` times the margin's value, plus the audit's minimum (see :func:`_levels`).
    """
    share = Fraction(str(class_share(params)))
    keys = tuple(layout.keys)
    row_of: dict[tuple[frozenset[str], tuple[Any, ...]], int] = {}
    along: dict[tuple[frozenset[str], str, tuple[Any, ...]], list[int]] = {}
    for row, keyset in enumerate(layout.sets):
        row_of.setdefault((keyset, layout.label(row, keyset, keys)), row)
        if len(keyset) < 2:
            continue
        for key in keyset:
            rest = keyset - {key}
            along.setdefault((keyset, key, layout.label(row, rest, keys)), []).append(row)
    found: dict[tuple[int, int], float] = {}
    for i, cells in evidence.items():
        if not cells or cells[0].function not in COUNTS:
            continue
        entities = [c.n for c in cells]
        values = [_number(c.value) for c in cells]
        for (keyset, key, label), rows in along.items():
            parent = row_of.get((keyset - {key}, label))
            if parent is None and margins:
                continue  # a margin the output does not list: ROLLUP nests this key
            if parent is not None and entities[parent] is not None:
                margin, total = entities[parent], values[parent]
            else:
                margin = sum(entities[r] or 0 for r in rows)
                total = sum(values[r] for r in rows)
            if not margin:
                continue
            for r in rows:
                held = entities[r]
                if held and Fraction(held) >= share * margin:
                    down = values[r] - float(share) * total + protection(params)[1]
                    found[(r, i)] = max(found.get((r, i), -math.inf), down)
    for cell in sorted(found):
        judged[cell] = _suppressed(judged[cell], CLASS_RULE, _class_reason(params))
    return found


def _class_reason(params: DisclosureParams) -> str:
    return (
        f"it holds at least {class_share(params):.0%} of the entities of a margin, which "
        "tells an attribute of almost everyone in that margin (class)"
    )


def _number(value: object) -> float:
    """A cell's value as a number for the audit: NULL (an empty SUM) adds nothing."""
    if value is None:
        return 0.0
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else math.nan


def _audited(
    layout: _Layout,
    spec: OutputSpec,
    evidence: dict[int, list[CellEvidence]],
    primary: dict[tuple[int, int], Judgement],
    judged: dict[tuple[int, int], Judgement],
    params: DisclosureParams,
    grid: Mapping[str, Sequence[Any]],
    class_down: Mapping[tuple[int, int], float],
) -> None:
    """Secondary suppression on the declared hypercube, in place on ``judged``
    (issue 17, item 3, for one table).

    A row is a cell of :class:`policies.audit.Hypercube` over the group keys (a
    rolled-up key is TOTAL); its codes are the declared ones, then any other value
    the rows hold (NULL among them), sorted. One pattern serves every column: a row
    suppressed in one column is suppressed in all (an AVG beside a released COUNT
    and a hidden SUM would give the SUM back). The additive measures (COUNT, COUNT(*),
    SUM, and AVG through its SUM evidence) each grow the pattern with
    :func:`policies.audit.secondary_pattern` over their own suppressed cells, then
    each is audited on the final pattern: every suppressed cell must keep its
    protection interval (:func:`_levels`) against every released cell of the table.
    Other measures (COUNT DISTINCT, MIN, MAX, quantiles) are not sums of their
    children: their cells get the value-free step only (no relation holds one as
    its only unknown). When a pattern leaves a cell narrowed, or the released values
    are not consistent sums, every cell is suppressed (rule ``audit``): the table is
    refused, and its job withheld.
    """
    hypercube, cell_of = _hypercube(layout, spec, grid)
    rows_of: dict[audit.Cell, list[int]] = {}
    for row, cell in enumerate(cell_of):
        rows_of.setdefault(cell, []).append(row)
    hidden = {cell_of[r] for (r, _i), j in judged.items() if j.verdict is _SUPPRESS}
    open_ = set(rows_of) - hidden
    measures: list[tuple[dict[audit.Cell, float], set[audit.Cell], audit.AuditParams, Any]] = []
    value_free: set[audit.Cell] = set()
    for i, cells in evidence.items():
        fn = cells[0].function
        protected = {cell_of[c.row] for c in cells if judged[(c.row, i)].verdict is _SUPPRESS}
        if fn not in _AUDITED:
            value_free |= protected
            continue
        if not protected:
            continue
        value = {cell_of[c.row]: _number(c.total if fn == "avg" else c.value) for c in cells}
        negative = fn in MAGNITUDE and any(c.negatives for c in cells)
        share, least = protection(params)
        ap = audit.AuditParams(
            share,
            share,
            least,
            lower_bound=None if negative else 0.0,
            witness=True,  # the verdicts only: an end shown past its need is not solved
        )
        levels = {
            cell_of[c.row]: _levels(c, value[cell_of[c.row]], primary[(c.row, i)], params,
                                    class_down.get((c.row, i)))
            for c in cells
            if cell_of[c.row] in protected and c.row == rows_of[cell_of[c.row]][0]
        }  # fmt: skip
        measures.append((value, protected, ap, levels))
    try:
        before = []
        for value, protected, ap, levels in measures:
            if not all(math.isfinite(v) for v in value.values()):
                raise ValueError("a cell is not a finite number: no equation holds")
            grown = audit.secondary_pattern(
                hypercube, open_, protected, value, ap, levels=levels, max_rounds=PATTERN_ROUNDS
            )
            open_ -= grown.suppressed
            before.append(grown.audit)
        open_ -= audit.structural_pattern(hypercube, open_, value_free)
        passed = all(
            audit.audit(hypercube, open_, protected, value, ap, levels=levels, previous=old).passed
            for (value, protected, ap, levels), old in zip(measures, before, strict=True)
        )
    except ValueError:  # values that are not finite sums of their cells: fail closed
        passed = False
    for key, judgement in judged.items():
        if not passed:
            judged[key] = _suppressed(judgement, *_UNRESOLVED)
        elif cell_of[key[0]] not in open_ and judgement.verdict is not _SUPPRESS:
            judged[key] = _suppressed(judgement, *_COMPLEMENTARY)


_AUDITED = frozenset({"count", "count_star", "sum", "avg"})
_NULL_CODE = "\x00null"  # a NULL group key value that is not a rolled-up total


def _hypercube(
    layout: _Layout, spec: OutputSpec, grid: Mapping[str, Sequence[Any]]
) -> tuple[audit.Hypercube, list[audit.Cell]]:
    def code(value: Any) -> str:
        return _NULL_CODE if value is None else canonical(value)

    codes = []
    for key in spec.group_keys:
        declared = list(dict.fromkeys(canonical(v) for v in grid[key]))
        seen = {code(v) for v, s in zip(layout.keys[key], layout.sets, strict=True) if key in s}
        codes.append((*declared, *sorted(seen - set(declared))))
    hypercube = audit.Hypercube(tuple(spec.group_keys), tuple(codes))
    cells: list[audit.Cell] = [
        tuple(code(layout.keys[k][r]) if k in keyset else audit.TOTAL for k in spec.group_keys)
        for r, keyset in enumerate(layout.sets)
    ]
    return hypercube, cells


def _levels(
    cell: CellEvidence,
    value: float,
    primary: Judgement,
    params: DisclosureParams,
    class_down: float | None,
) -> tuple[float, float]:
    """(down, up): how far below and above its value the attacker's range of a
    suppressed cell must reach. tau-argus's protection levels, from the rules in force:

    * a count: a share of the value, at least the minimum, and upwards at least up to
      ``min_entities`` (the range must not tell that the cell is below the threshold);
    * a sum (or an AVG's sum): a share that covers what the p% rule asks
      (``p_ratio`` of the largest contribution, at most ``p_ratio`` of the value) and
      the (n, k) rule (at most ``1/k - 1`` of the value), at least the minimum;
    * a cell suppressed by the class rule alone: downwards only, past ``share`` of its
      margin (:func:`_class_disclosure`); with another rule too, the larger of both.
    """
    share, least = protection(params)
    if cell.function in MAGNITUDE:
        share = max(share, params.p_ratio, 1 / params.dominance_k - 1)
        down = up = max(least, share * abs(value))
    else:
        down = max(least, share * abs(value))
        up = max(down, params.min_entities - value)
    if class_down is None:
        return down, up
    if primary.verdict is not _SUPPRESS:
        return max(least, class_down), 0.0
    return max(down, class_down), up


def _released(
    table: pa.Table,
    spec: OutputSpec,
    judged: dict[tuple[int, int], Judgement],
    params: DisclosureParams,
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


# --------------------------------------------------------------------------- across releases

# The audit across releases (issue 17, item 3, "one hypercube per lineage"): earlier
# releases join the hypercube while the product of its dimensions' sizes (each code
# list plus its total) stays under this; those left out are named in the report.
LINEAGE_LIMIT = 200_000
RELEASED, PROTECTED, SUPPRESSED = "released", "protected", "suppressed"
_LINEAGE_COMPLEMENTARY = (
    suppression.RULE,
    "with an earlier release of the same measure it would narrow a suppressed cell "
    "(complementary, across releases)",
)
_LINEAGE_UNRESOLVED = (
    AUDIT_RULE,
    "no pattern of held-back cells keeps the suppressed cells of this and earlier releases "
    "from being narrowed by the released cells of both (audit, across releases)",
)


@dataclass(frozen=True)
class LineageCell:
    """One cell of one measure as the history keeps it."""

    codes: tuple[str | None, ...]  # per dimension of its release (sorted); None: TOTAL
    value: float  # as released (for a suppressed cell: its value, kept inside)
    state: str  # RELEASED, PROTECTED (a primary rule's: needs its interval), SUPPRESSED
    down: float = 0.0  # PROTECTED: how far below and above the attacker's range must reach
    up: float = 0.0
    bounded: bool = True  # no contribution is negative: every cell is at least 0


@dataclass(frozen=True)
class Release:
    """An earlier release of one measure of the lineage."""

    job: int
    dimensions: tuple[str, ...]  # sorted
    cells: tuple[LineageCell, ...]


@dataclass(frozen=True)
class Lineage:
    """What the audit across releases needs besides the output."""

    dimensions: Mapping[str, str]  # group key -> the dimension (column) it reads
    measures: Mapping[int, str]  # aggregate position -> measure key (``sum(capital)``)
    codes: Mapping[str, Sequence[Any]]  # the declared codes of the dataset's dimensions
    earlier: Mapping[str, Sequence[Release]]  # measure key -> earlier releases
    limit: int = LINEAGE_LIMIT


@dataclass(frozen=True)
class LineageOutcome:
    """The output's cells per measure key (row, cell: state as the check left it) and
    what the checkers read of the audit across releases."""

    dimensions: tuple[str, ...]
    cells: Mapping[str, tuple[tuple[int, LineageCell], ...]]
    note: dict[str, Any]
    measures: Mapping[int, str] = field(default_factory=dict)  # position -> measure key

    @property
    def summary(self) -> str:
        note = self.note
        if note.get("skipped"):
            return f"the audit across releases did not run: {note['skipped']}."
        parts = [note["skipped_counts"]] if note.get("skipped_counts") else []
        if note.get("fallback"):
            parts.append(f"the audit across releases fell back to this table alone: "
                         f"{note['fallback']}")  # fmt: skip
        elif note.get("earlier"):
            text = (
                f"audited with {len(note['earlier'])} earlier release(s) of the same measures "
                f"({note['cells']} cells in the hypercube)"
            )
            if note.get("left_out"):
                text += f"; {len(note['left_out'])} left out, over the cell limit"
            parts.append(text)
        return "; ".join(parts) + "." if parts else ""


def final_cells(
    outcome: LineageOutcome, result: CheckResult, spec: OutputSpec
) -> dict[str, tuple[LineageCell, ...]]:
    """Per measure key, the output's cells with the states of ``result`` (which may hold
    back more than the check that made ``outcome``, e.g. the differencing defence). One
    cell per hypercube cell (the first row's, as the audit reads it)."""
    names = {i: c.name for i, c in spec.aggregates()}
    by_name = {name: i for i, name in names.items()}
    hidden = {
        (c.row, by_name[c.column])
        for c in result.cells
        if c.verdict is _SUPPRESS and c.column in by_name
    }
    measure_of = {key: i for i, key in outcome.measures.items()}
    found: dict[str, tuple[LineageCell, ...]] = {}
    for key, cells in outcome.cells.items():
        i = measure_of[key]
        seen: dict[tuple[str | None, ...], LineageCell] = {}
        for row, cell in cells:
            if cell.codes in seen:
                continue
            state = RELEASED
            if (row, i) in hidden:
                state = SUPPRESSED if cell.state == RELEASED else cell.state
            seen[cell.codes] = LineageCell(
                cell.codes, cell.value, state, cell.down, cell.up, cell.bounded
            )
        found[key] = tuple(seen.values())
    return found


def lineage_outcome(
    result: CheckResult, table: pa.Table, spec: OutputSpec, lineage: Lineage
) -> LineageOutcome:
    """The output's cells as the history records them, for a ``result`` checked without
    earlier releases (``check_output(lineage=)`` with none gives the same verdicts): the
    primary and class rules judged again, the verdicts read from ``result``."""
    params = result.params
    evidence = _evidence(table, spec)
    primary = {
        (cell.row, i): judge(cell, params) for i, cells in evidence.items() for cell in cells
    }
    layout = _layout(table, spec) if table.num_rows and spec.group_keys else None
    scratch = dict(primary)
    class_down = (
        {}
        if layout is None
        else _class_disclosure(layout, evidence, scratch, params, margins=spec.has_margins)
    )
    position = {c.name: i for i, c in spec.aggregates()}
    hidden = {
        (c.row, position[c.column])
        for c in result.cells
        if c.verdict is _SUPPRESS and c.column in position
    }
    judged = {
        key: Judgement(_SUPPRESS if key in hidden else CellVerdict.PASS, (), ()) for key in primary
    }
    alone = Lineage(lineage.dimensions, lineage.measures, lineage.codes, {}, lineage.limit)
    return _lineage(table, layout, spec, evidence, primary, judged, params, class_down, alone)


def audit_release(
    dims: tuple[str, ...],
    cells: Sequence[LineageCell],
    earlier: Sequence[Release],
    codes: Mapping[str, Sequence[Any]],
    limit: int = LINEAGE_LIMIT,
) -> bool:
    """Whether an output's cells as they stand (no cell may be added to its pattern: a
    reviewed output) keep every protected cell of ``earlier`` and its own unnarrowed."""
    lineage = Lineage({}, {}, codes, {}, limit)
    rows = set(range(len(cells)))
    try:
        forced, passed, _note = _across(
            dims, list(enumerate(cells)), earlier, lineage, rows, False,
            (audit.PROTECTION_SHARE, audit.PROTECTION_MINIMUM),
        )  # fmt: skip
    except ValueError:  # released twice with two values: fail closed
        return False
    return passed and not forced


def _lineage(
    table: pa.Table,
    layout: _Layout | None,
    spec: OutputSpec,
    evidence: dict[int, list[CellEvidence]],
    primary: dict[tuple[int, int], Judgement],
    judged: dict[tuple[int, int], Judgement],
    params: DisclosureParams,
    class_down: Mapping[tuple[int, int], float],
    lineage: Lineage,
) -> LineageOutcome:
    """The audit across releases, in place on ``judged`` (issue 17, item 3).

    Per measure with earlier releases (same lineage, measure key and WHERE key): the
    hypercube over the union of the dimensions (:func:`_across`) holds every earlier
    released cell (fixed: it cannot be taken back), every earlier and new suppressed
    cell of a primary rule as protected, and the output's released cells; the output's
    secondary pattern grows (:func:`policies.audit.secondary_pattern`) until no
    protected cell is narrowed. One pattern for every column of a row, as for one table;
    then every measure is audited on the final pattern. A pattern that cannot pass holds
    back the whole output (rule ``audit``). Counts rounded by ``round_10_5`` are not
    equations: the audit is then skipped, and the report says so."""
    dims = tuple(sorted(lineage.dimensions.values()))
    measures = {i: k for i, k in lineage.measures.items() if i in evidence}
    note: dict[str, Any] = {}
    if params.mitigation is Mitigation.ROUND_10_5:  # rounded counts are not equations
        rounded = {i for i in measures if evidence[i][0].function in COUNTS}
        if rounded:
            note["skipped_counts"] = (
                "count cells are rounded (round_10_5), so they are not equations: "
                "the audit across releases holds sums only"
            )
        measures = {i: k for i, k in measures.items() if i not in rounded}
        if not measures:
            note["skipped"] = "counts are rounded (round_10_5), so released cells are not equations"
            return LineageOutcome(dims, {}, note, measures)
    if spec.group_keys and layout is None:
        note["skipped"] = "the output does not show all its group keys"
        return LineageOutcome(dims, {}, note, measures)
    key_of = {d: k for k, d in lineage.dimensions.items()}

    def code(value: Any) -> str:
        return _NULL_CODE if value is None else canonical(value)

    rows = range(table.num_rows)
    if layout is None:
        cell_of: list[tuple[str | None, ...]] = [()] * table.num_rows
    else:
        cell_of = [
            tuple(
                code(layout.keys[key_of[d]][r]) if key_of[d] in layout.sets[r] else None
                for d in dims
            )
            for r in rows
        ]
    cells: dict[str, tuple[tuple[int, LineageCell], ...]] = {}
    for i, key in measures.items():
        found = []
        bounded = not any(c.negatives for c in evidence[i])
        for c in evidence[i]:
            r, value = c.row, _number(c.value)
            state, down, up = RELEASED, 0.0, 0.0
            if judged[(r, i)].verdict is _SUPPRESS:
                state = SUPPRESSED
                if primary[(r, i)].verdict is _SUPPRESS or (r, i) in class_down:
                    state = PROTECTED
                    down, up = _levels(c, value, primary[(r, i)], params, class_down.get((r, i)))
            found.append((r, LineageCell(cell_of[r], value, state, down, up, bounded)))
        cells[key] = tuple(found)
    outcome = LineageOutcome(dims, cells, note, measures)
    open_rows = set(rows) - {
        r for r in rows if all(judged[(r, i)].verdict is _SUPPRESS for i, _ in spec.aggregates())
    }
    if not open_rows or not any(lineage.earlier.get(k) for k in cells):
        return outcome  # nothing leaves, or nothing earlier to audit with
    added: set[int] = set()
    passed = True
    share, least = protection(params)
    memo: dict[str, dict[str, Any]] = {}
    try:
        for grow in (True, False):
            for key, mine in cells.items():
                earlier = lineage.earlier.get(key) or ()
                if not earlier:
                    continue
                more, ok, seen = _across(
                    dims, mine, earlier, lineage, open_rows - added, grow, (share, least),
                    memo.setdefault(key, {}),
                )  # fmt: skip
                added |= more
                passed = passed and ok
                note.setdefault("earlier", [])
                note["earlier"] = sorted({*note["earlier"], *seen.get("earlier", ())})
                note["left_out"] = sorted({*note.get("left_out", ()), *seen.get("left_out", ())})
                note["cells"] = max(note.get("cells", 0), seen.get("cells", 0))
                for word in ("fallback", "already_narrowed"):
                    if seen.get(word):
                        note[word] = seen[word]
            if not passed or not added:
                break
    except ValueError as error:  # inconsistent values (another version?): fail closed
        note["inconsistent"] = str(error)
        passed = False
    note["suppressed_rows"] = len(added)
    if not open_rows - added:  # the pattern leaves nothing: the audit's, not a complement
        passed = False
    for key_, judgement in judged.items():
        if not passed:
            judged[key_] = _suppressed(judgement, *_LINEAGE_UNRESOLVED)
        elif key_[0] in added and judgement.verdict is not _SUPPRESS:
            judged[key_] = _suppressed(judgement, *_LINEAGE_COMPLEMENTARY)
    return outcome


def _across(
    dims: tuple[str, ...],
    new: Sequence[tuple[int, LineageCell]],
    earlier: Sequence[Release],
    lineage: Lineage,
    open_rows: set[int],
    grow: bool,
    protection_: tuple[float, float],
    memo: dict[str, Any] | None = None,
) -> tuple[set[int], bool, dict[str, Any]]:
    """One measure: the rows of the output to hold back so that no protected cell of the
    lineage is narrowed (``grow``), or only whether the output as it is passes. Returns
    (rows, passed, note)."""
    note: dict[str, Any] = {}
    seen: dict[str, set[str]] = {}
    for release_dims, release_cells in [(r.dimensions, r.cells) for r in earlier] + [
        (dims, tuple(c for _r, c in new))
    ]:
        for cell in release_cells:
            for d, c in zip(release_dims, cell.codes, strict=True):
                if c is not None:
                    seen.setdefault(d, set()).add(c)
    domains: dict[str, tuple[str, ...]] = {}
    for d in {*dims, *(d for r in earlier for d in r.dimensions)}:
        declared = tuple(dict.fromkeys(canonical(v) for v in lineage.codes.get(d, ())))
        domains[d] = (*declared, *sorted(seen.get(d, set()) - set(declared)))

    def size(names: set[str]) -> int:
        return math.prod(len(domains[d]) + 1 for d in names)

    own = set(dims)
    if size(own) > lineage.limit:
        note["fallback"] = f"the table alone has more than {lineage.limit} cells"
        return set(), True, note
    related = sorted(
        earlier,
        key=lambda r: (not (set(r.dimensions) <= own or set(r.dimensions) >= own), r.job),
    )
    union, used, left = set(own), [], []
    for release in related:
        if size(union | set(release.dimensions)) <= lineage.limit:
            union |= set(release.dimensions)
            used.append(release)
        else:
            left.append(release.job)
    note.update(earlier=[r.job for r in used], left_out=left, cells=size(union))
    if left and not used:
        note["fallback"] = f"every earlier release would take the hypercube over {lineage.limit}"
    if not used or not union:
        return set(), True, note
    order = tuple(sorted(union))
    hc = audit.Hypercube(order, tuple(domains[d] for d in order))

    def lift(names: tuple[str, ...], codes: tuple[str | None, ...]) -> audit.Cell:
        at = dict(zip(names, codes, strict=True))
        return tuple(at.get(d) for d in order)

    values: dict[audit.Cell, float] = {}
    tolerance = 1e-6

    def put(cell: audit.Cell, value: float) -> None:
        before = values.setdefault(cell, value)
        if abs(before - value) > tolerance * (1 + abs(value)):
            raise ValueError(f"cell {cell!r} was released with two values")

    fixed: set[audit.Cell] = set()
    old: dict[audit.Cell, tuple[float, float]] = {}
    mine: dict[audit.Cell, tuple[float, float]] = {}
    open_: dict[audit.Cell, list[int]] = {}
    bounded = True
    sources: list[
        tuple[
            tuple[str, ...],
            list[tuple[int | None, LineageCell]],
            dict[audit.Cell, tuple[float, float]],
        ]
    ] = [(r.dimensions, [(None, c) for c in r.cells], old) for r in used]
    sources.append((dims, list(new), mine))
    for names, found, protected in sources:
        present: dict[frozenset[str], set[audit.Cell]] = {}
        for row, cell in found:
            at = lift(names, cell.codes)
            put(at, cell.value)
            bounded = bounded and cell.bounded
            keys = frozenset(d for d, c in zip(names, cell.codes, strict=True) if c is not None)
            present.setdefault(keys, set()).add(at)
            if cell.state == PROTECTED:
                down, up = protected.get(at, (0.0, 0.0))
                protected[at] = (max(down, cell.down), max(up, cell.up))
            elif cell.state == RELEASED and row is None:
                fixed.add(at)
            elif cell.state == RELEASED and row in open_rows:
                open_.setdefault(at, []).append(row)
        # a declared grid lists every non-empty group: a cell it lacks is known to be 0
        for keys, cells in present.items():
            choices = [domains[d] if d in keys else (audit.TOTAL,) for d in order]
            if len(cells) < math.prod(map(len, choices)):
                for at in itertools.product(*choices):
                    if at not in cells:
                        put(at, 0.0)
                        fixed.add(at)
    levels = {**old}
    for at, (down, up) in mine.items():
        levels[at] = (max(down, levels.get(at, (0, 0))[0]), max(up, levels.get(at, (0, 0))[1]))
    lost = set(levels) & fixed  # released by some release already: nothing to protect
    for at in lost:
        del levels[at]
    forced = {r for at in set(open_) & set(levels) for r in open_.pop(at)}
    share, least = protection_
    ap = audit.AuditParams(share, share, least, lower_bound=0.0 if bounded else None, witness=True)
    if not levels:
        return forced, True, note
    # Cells the earlier releases narrow already keep what they have left: the new release
    # may not narrow them further (they cannot be taken back). ``memo`` keeps this audit
    # of the earlier releases alone from the pattern's pass to the final one.
    if memo is not None and "before" in memo:
        levels, before = memo["levels"], memo["before"]
        narrowed = memo["narrowed"]
    else:
        before = audit.audit(hc, fixed, set(levels), values, ap, levels=levels)
        narrowed = before.narrowed
        for at in narrowed:
            a = before.cells[at]
            levels[at] = (max(0.0, a.value - a.low), max(0.0, a.high - a.value))
        if narrowed:
            before = audit.audit(hc, fixed, set(levels), values, ap, levels=levels, previous=before)
        if memo is not None:
            memo.update(levels=levels, before=before, narrowed=narrowed)
    if narrowed:
        note["already_narrowed"] = len(narrowed)
    released = fixed | set(open_)
    if not grow:
        result = audit.audit(hc, released, set(levels), values, ap, levels=levels, previous=before)
        return forced, result.passed, note
    pattern = audit.secondary_pattern(
        hc,
        released,
        set(levels),
        values,
        ap,
        fixed=fixed,
        levels=levels,
        previous=before,
        max_rounds=PATTERN_ROUNDS,
    )
    taken = {r for at in pattern.suppressed if at in open_ for r in open_[at]}
    return forced | taken, not pattern.unresolved, note
