"""The output check of a whole table: each cell judged, complementary suppression of
the margins, 10-5 rounding, and the report the checkers read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, overload

import pyarrow as pa

from policies import suppression
from policies.disclosure.cells import (
    ADVICE,
    ALL_RULES,
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
from policies.errors import PolicyRefusal
from policies.outputs import EVIDENCE_PREFIX, MAGNITUDE, OutputRole, OutputSpec, evidence_name


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
            if not c.get(rule) or (rule == "missing" and p.missing_cells is CellVerdict.PASS):
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
    "missing": "rows with a missing value were left out, and the parameters hold such cells "
    "back (missing)",
    "complementary": "held back so that suppressed cells cannot be worked out from totals "
    "(complementary)",
}


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


def check_output(table: pa.Table, spec: OutputSpec, params: DisclosureParams) -> CheckResult:
    """Decide what of an admitted query's result may leave the sandbox (Art. 15).

    Every aggregate cell is judged by :data:`RULES`; with margins, cells are then
    suppressed until no relation holds exactly one suppressed cell. REVIEW cells
    count as released for that: the whole output waits for the reviewer, and a
    reviewer who suppresses one must run the check again with that decision.
    A missing evidence column refuses the whole output (fail closed).
    """
    evidence = _evidence(table, spec)
    judged = {(cell.row, i): judge(cell, params) for i, cells in evidence.items() for cell in cells}

    if spec.has_margins and table.num_rows:
        found = suppression.relations(table, spec)
        for i, cells in evidence.items():
            hidden = [c.row for c in cells if judged[(c.row, i)].verdict is CellVerdict.SUPPRESS]
            for r in suppression.complete(found, hidden, [c.n for c in cells]):
                before = judged[(r, i)]
                judged[(r, i)] = Judgement(
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
