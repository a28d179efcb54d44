"""The output check of a whole table: each cell judged, the class rule (a count cell
holding almost all of a margin), secondary suppression of the margins (on the declared
hypercube with the interval audit of :mod:`policies.audit` when the output has a
declared grid, else :mod:`policies.suppression`), the same audit across the earlier
releases of the output's lineage (``lineage=``, :func:`lineage_of`), 10-5 rounding, and
the report the checkers read (docs/disclosure.md, "Interval audit" and "Class
disclosure").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from policies import audit, suppression
from policies.disclosure.cells import (
    ADVICE,
    RULES,
    CellReport,
    Judgement,
    judge,
)
from policies.disclosure.hypercube import (
    AUDIT_RULE,
    CLASS_RULE,
    COMPLEMENTARY,
    SUPPRESS_VERDICT,
    audited_pattern,
    class_disclosure,
    class_share,
    evidence_of,
    layout_of,
    suppressed_by,
)
from policies.disclosure.lineage import (
    LINEAGE_LIMIT,
    RELEASED,
    SUPPRESSED,
    Lineage,
    LineageCell,
    LineageOutcome,
    Release,
    across_lineage,
    lineage_of,
)
from policies.disclosure.params import (
    ARTICLE,
    COUNTS,
    CellVerdict,
    DisclosureParams,
    Mitigation,
    OutputVerdict,
)
from policies.outputs import (
    EVIDENCE_PREFIX,
    OutputRole,
    OutputSpec,
)

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
    rule (:func:`class_disclosure`). With margins, secondary suppression follows:

    * with a declared ``grid`` (the declared codes of every group key, ``jobs.grid``),
      the table's rows are cells of the hypercube over those keys and
      :func:`audited_pattern` chooses the pattern (:func:`policies.audit.secondary_pattern`,
      value-free costs) and releases only what passes the interval audit;
    * without one, :mod:`policies.suppression` suppresses until no relation one key
      apart holds exactly one suppressed cell (subtotals two keys apart are not
      linked: that weakness stays for outputs without declared code lists).

    REVIEW cells count as released for that: the whole output waits for the reviewer,
    and a reviewer who suppresses one must run the check again with that decision.
    A missing evidence column refuses the whole output (fail closed).

    With ``lineage`` (the earlier releases of the output's lineage, measure and WHERE),
    the pattern grows further until the audit on the hypercube over the union of their
    dimensions passes too (:func:`lineage_of`), and :attr:`CheckResult.lineage` gives the
    output's cells as the history records them.
    """
    evidence = evidence_of(table, spec)
    primary = {
        (cell.row, i): judge(cell, params) for i, cells in evidence.items() for cell in cells
    }
    judged = dict(primary)
    layout = layout_of(table, spec) if table.num_rows and spec.group_keys else None
    class_down = (
        {}
        if layout is None
        else class_disclosure(layout, evidence, judged, params, margins=spec.has_margins)
    )

    if spec.has_margins and layout is not None:
        if grid is not None:
            audited_pattern(layout, spec, evidence, primary, judged, params, grid, class_down)
        else:
            found = suppression.relations(table, spec)
            for i, cells in evidence.items():
                hidden = [c.row for c in cells if judged[(c.row, i)].verdict is SUPPRESS_VERDICT]
                for r in suppression.complete(found, hidden, [c.n for c in cells]):
                    judged[(r, i)] = suppressed_by(judged[(r, i)], *COMPLEMENTARY)
    outcome = None
    if lineage is not None:
        outcome = lineage_of(table, layout, spec, evidence, primary, judged, params, class_down,
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
        if c.verdict is SUPPRESS_VERDICT and c.column in by_name
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
    evidence = evidence_of(table, spec)
    primary = {
        (cell.row, i): judge(cell, params) for i, cells in evidence.items() for cell in cells
    }
    layout = layout_of(table, spec) if table.num_rows and spec.group_keys else None
    scratch = dict(primary)
    class_down = (
        {}
        if layout is None
        else class_disclosure(layout, evidence, scratch, params, margins=spec.has_margins)
    )
    position = {c.name: i for i, c in spec.aggregates()}
    hidden = {
        (c.row, position[c.column])
        for c in result.cells
        if c.verdict is SUPPRESS_VERDICT and c.column in position
    }
    judged = {
        key: Judgement(SUPPRESS_VERDICT if key in hidden else CellVerdict.PASS, (), ())
        for key in primary
    }
    alone = Lineage(lineage.dimensions, lineage.measures, lineage.codes, {}, lineage.limit)
    return lineage_of(table, layout, spec, evidence, primary, judged, params, class_down, alone)


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
        forced, passed, _note = across_lineage(
            dims, list(enumerate(cells)), earlier, lineage, rows, False,
            (audit.PROTECTION_SHARE, audit.PROTECTION_MINIMUM),
        )  # fmt: skip
    except ValueError:  # released twice with two values: fail closed
        return False
    return passed and not forced
