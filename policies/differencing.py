"""The differencing defence: no new cell may, with earlier releases, isolate a few entities.

Per-cell rules are beaten by combining releases: "total income of men" minus
"total income of men not aged 37" is one man's income, though both cells have
hundreds of contributors. So every released cell's set of contributing
entities is kept (inside the platform only, as a compressed bitmap over a
stable numbering of the dataset's entities), and a new cell B is suppressed
(rule ``differencing``, Art. 15) when, against the released cells of the same
dataset lineage, of every operator, over all time:

``near``
    some released A has ``0 < |A xor B| < k`` (N versus N-1 by a filter, nested
    ranges ``age <= 66`` / ``age <= 67``, a repeat with one entity swapped);
``inside``
    B lies inside a released A and ``0 < |A - B| < k`` (the same as ``near``
    for that pair, named apart because it reads differently);
``union``
    the released cells lying inside B cover all of B but ``0 < r < k``
    entities (B minus the sum of its released parts);
``complement``
    B lies inside a released A, and A minus B, which the two releases now
    reveal as well, is itself ``near`` a released cell or nearly covered by
    released cells inside it (a total, then one part, then the other part
    less one entity).

A repeat of a released cell (``|A xor B| = 0``) adds nothing and passes.

The same function judges the cells of one output against each other
(:func:`check_cells`): a table and its margins are cells too, taken largest
first, so a small margin difference suppresses the finer cell, and
complementary suppression (:mod:`policies.suppression`) then runs again over
the result (:func:`suppress_rows`).

Speed: conditions are tested exactly on bitmaps, but only for candidates that
survive vectorised filters which never drop a true match: ``near`` needs
``||A| - |B|| < k``; ``A inside B`` needs ``|A| <= |B|``, ``min A >= min B`` and
eight pivot entities of A (spread over its ranks) all in B; ``B inside A``
needs ``|A| >= |B| + k`` and A's range to cover B's. Group keys are not a sound
filter (an attacker moves a key from GROUP BY into WHERE), so they are not used
to skip cells.

What it cannot stop (see docs/disclosure.md): linear reconstruction from many
overlapping cells none of which is near another, and general trackers built
from cells that each differ by at least k. Those need the DP mode.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from . import suppression
from .disclosure import CellReport, CellVerdict, CheckResult, OutputVerdict
from .outputs import OutputRole, OutputSpec, evidence_name

RULE = "differencing"
ARTICLE = "Art. 15"
PIVOTS = 8
BUCKETS = 64  # a cell's sketch: how many of its entities fall in each hash bucket
_TAIL = 512  # cells kept outside the vectorised arrays until merged


class Condition(Enum):
    NEAR = "near"
    INSIDE = "inside"
    UNION = "union"
    COMPLEMENT = "complement"


class DiffVerdict(Enum):
    PASS = "pass"
    SUPPRESS = "suppress"


_WORDS = {
    Condition.NEAR: "it differs from an earlier released cell by fewer than {k} entities",
    Condition.INSIDE: "it lies inside an earlier released cell and leaves fewer than {k} "
    "entities outside it",
    Condition.UNION: "earlier released cells inside it leave fewer than {k} of its entities "
    "uncovered",
    Condition.COMPLEMENT: "with an earlier released cell that contains it, it would reveal a "
    "remainder that earlier releases pin down to fewer than {k} entities",
}


@dataclass(frozen=True)
class Finding:
    """The differencing verdict of one new cell, with a summary safe to show."""

    verdict: DiffVerdict
    condition: Condition | None = None
    summary: str = "no earlier release isolates a small group with it"

    @classmethod
    def suppress(cls, condition: Condition, k: int) -> Finding:
        return cls(
            DiffVerdict.SUPPRESS, condition, _WORDS[condition].format(k=k) + " (differencing)"
        )


PASSED = Finding(DiffVerdict.PASS)


def sketch(cell: BitMap) -> np.ndarray:
    """Entities per hash bucket. |A xor B| >= L1(sketch A - sketch B), and A inside B
    implies sketch A <= sketch B in every bucket: both prune candidates soundly."""
    numbers = np.frombuffer(cell.to_array(), dtype=np.uint32).astype(np.uint64)
    buckets = ((numbers * np.uint64(2654435761)) >> np.uint64(16)) % np.uint64(BUCKETS)
    return np.bincount(buckets.astype(np.int64), minlength=BUCKETS).astype(np.int32)


def pivots(cell: BitMap) -> np.ndarray:
    """PIVOTS entities of ``cell`` spread over its ranks (repeats when it is smaller)."""
    n = len(cell)
    ranks = np.linspace(0, n - 1, PIVOTS).round().astype(np.int64)
    return np.array([cell[int(r)] for r in ranks], dtype=np.int64)


class HistoryIndex:
    """The released cells of one dataset lineage, in memory, ready to be checked against.

    ``add`` appends; the vectorised arrays are rebuilt from a short tail now and
    then, so adding many cells stays linear.
    """

    def __init__(self) -> None:
        self.cells: list[BitMap] = []
        self._card = np.empty(0, np.int64)
        self._min = np.empty(0, np.int64)
        self._max = np.empty(0, np.int64)
        self._piv = np.empty((0, PIVOTS), np.int64)
        self._sketch = np.empty((0, BUCKETS), np.int32)
        self._tail: list[tuple[int, int, int, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.cells)

    def add(self, cell: BitMap) -> None:
        if not cell:
            return
        self.cells.append(cell)
        self._tail.append((len(cell), cell.min(), cell.max(), pivots(cell), sketch(cell)))
        if len(self._tail) >= _TAIL:
            self._merge()

    def _merge(self) -> None:
        if not self._tail:
            return
        card, lo, hi, piv, sk = zip(*self._tail, strict=True)
        self._card = np.concatenate([self._card, np.array(card, np.int64)])
        self._min = np.concatenate([self._min, np.array(lo, np.int64)])
        self._max = np.concatenate([self._max, np.array(hi, np.int64)])
        self._piv = np.concatenate([self._piv, np.stack(piv)])
        self._sketch = np.concatenate([self._sketch, np.stack(sk)])
        self._tail = []

    # --- candidate filters (never drop a true match) -------------------------------

    def near(self, cell: BitMap, k: int) -> np.ndarray:
        """Cells that may differ from ``cell`` by fewer than ``k`` entities."""
        self._merge()
        band = np.flatnonzero(np.abs(self._card - len(cell)) < k)
        if not band.size:
            return band
        distance = np.abs(self._sketch[band] - sketch(cell)).sum(axis=1)
        close: np.ndarray = band[distance < k]
        return close

    def inside(self, cell: BitMap) -> np.ndarray:
        """Cells that may lie inside ``cell``."""
        self._merge()
        if not len(self.cells):
            return np.empty(0, np.int64)
        top = cell.max()
        mask = np.zeros(top + 1, dtype=bool)
        mask[np.frombuffer(cell.to_array(), dtype=np.uint32)] = True
        piv = self._piv
        hits = (piv <= top) & mask[np.minimum(piv, top)]
        keep = hits.all(axis=1) & (self._card <= len(cell)) & (self._min >= cell.min())
        found = np.flatnonzero(keep)
        if found.size:
            found = found[(self._sketch[found] <= sketch(cell)).all(axis=1)]
        return found

    def around(self, cell: BitMap, k: int) -> np.ndarray:
        """Cells that may contain ``cell`` with at least ``k`` entities to spare."""
        self._merge()
        keep = (self._card >= len(cell) + k) & (self._min <= cell.min()) & (self._max >= cell.max())
        found = np.flatnonzero(keep)
        if found.size:
            found = found[(self._sketch[found] >= sketch(cell)).all(axis=1)]
        return found


def _near(cell: BitMap, sources: Sequence[HistoryIndex | list[BitMap]], k: int) -> Finding:
    size = len(cell)
    for source in sources:
        candidates = (
            (source.cells[i] for i in source.near(cell, k))
            if isinstance(source, HistoryIndex)
            else (a for a in source if abs(len(a) - size) < k)
        )
        for other in candidates:
            d = cell.symmetric_difference_cardinality(other)
            if 0 < d < k:
                return Finding.suppress(
                    Condition.INSIDE if cell.issubset(other) else Condition.NEAR, k
                )
    return PASSED


def _covered(cell: BitMap, sources: Sequence[HistoryIndex | list[BitMap]], k: int) -> Finding:
    union = BitMap()
    for source in sources:
        candidates = (
            (source.cells[i] for i in source.inside(cell))
            if isinstance(source, HistoryIndex)
            else (a for a in source if len(a) <= len(cell))
        )
        for other in candidates:
            if other.issubset(cell):
                union |= other
    rest = len(cell) - len(union)
    if union and 0 < rest < k:
        return Finding.suppress(Condition.UNION, k)
    return PASSED


def _alone(cell: BitMap, sources: Sequence[HistoryIndex | list[BitMap]], k: int) -> Finding:
    """Conditions near, inside and union for one cell."""
    found = _near(cell, sources, k)
    return found if found.verdict is DiffVerdict.SUPPRESS else _covered(cell, sources, k)


def check(cell: BitMap, history: HistoryIndex, k: int, pending: Sequence[BitMap] = ()) -> Finding:
    """The differencing verdict of one new cell against the history (and ``pending`` cells)."""
    if not cell or k <= 1:
        return PASSED
    sources: list[HistoryIndex | list[BitMap]] = [history, list(pending)]
    found = _alone(cell, sources, k)
    if found.verdict is DiffVerdict.SUPPRESS:
        return found
    supersets = [history.cells[i] for i in history.around(cell, k)]
    supersets += [a for a in pending if len(a) >= len(cell) + k]
    for outer in supersets:
        if not cell.issubset(outer):
            continue
        rest = outer - cell
        if _alone(rest, sources, k).verdict is DiffVerdict.SUPPRESS:
            return Finding.suppress(Condition.COMPLEMENT, k)
    return PASSED


def check_cells(
    cells: Sequence[BitMap | None], history: HistoryIndex, k: int
) -> list[Finding | None]:
    """Judge the cells of one output, largest first, each against the history and the
    cells of the same output already passed. ``None`` (a row not released) stays None."""
    order = sorted(
        ((i, c) for i, c in enumerate(cells) if c is not None), key=lambda ic: (-len(ic[1]), ic[0])
    )
    out: list[Finding | None] = [None] * len(cells)
    passed: list[BitMap] = []
    for i, cell in order:
        found = check(cell, history, k, passed)
        out[i] = found
        if found.verdict is DiffVerdict.PASS:
            passed.append(cell)
    return out


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DifferencedResult(CheckResult):
    """A :class:`CheckResult` after the differencing check; its summary says so."""

    k: int = 10

    def summary_text(self) -> str:
        text = super().summary_text()
        n = self.counts.get(RULE, 0)
        if not n:
            return text
        cells = "1 cell" if n == 1 else f"{n} cells"
        return (
            f"{text}\n- {cells}: together with earlier releases (of any operator) it would "
            f"single out fewer than {self.k} entities (differencing, {ARTICLE}).\n"
            "What to do next: a differencing suppression cannot be lifted by reformulating "
            "the query; ask for groups that do not nearly coincide with earlier ones, or for "
            "the agreement's differential-privacy mode."
        )


def suppress_rows(
    result: CheckResult,
    raw: pa.Table,
    spec: OutputSpec,
    rows: Mapping[int, Finding],
    k: int,
) -> DifferencedResult:
    """``result`` with every aggregate cell of ``rows`` suppressed (rule ``differencing``),
    then complementary suppression run again so no suppressed cell can be recomputed
    from the margins. The verdict and counts are recomputed; nothing is un-suppressed."""
    aggregates = [(i, c) for i, c in spec.aggregates()]
    by_cell: dict[tuple[int, str], CellReport] = {(c.row, c.column): c for c in result.cells}
    suppressed = {key for key, report in by_cell.items() if report.verdict is CellVerdict.SUPPRESS}
    added: dict[tuple[int, str], tuple[str, str]] = {}
    for row, finding in rows.items():
        for _i, col in aggregates:
            if (row, col.name) not in suppressed:
                added[(row, col.name)] = (RULE, finding.summary)
    if spec.has_margins and raw.num_rows and added:
        found = suppression.relations(raw, spec)
        for i, col in aggregates:
            hidden = [r for (r, name) in suppressed | set(added) if name == col.name]
            weights = raw.column(evidence_name("n", i)).to_pylist()
            for r in suppression.complete(found, hidden, weights):
                added[(r, col.name)] = (
                    suppression.RULE,
                    "a total next to it would otherwise reveal a suppressed cell (complementary)",
                )
    if not added:
        return DifferencedResult(**_fields(result), k=k)

    reports = dict(by_cell)
    counts = dict(result.counts)
    counts.setdefault(RULE, 0)
    for (row, name), (rule, reason) in added.items():
        before = reports.get((row, name))
        if before is not None and before.verdict is CellVerdict.REVIEW:
            counts["review"] -= 1
        rules = (*(before.rules if before else ()), rule)
        counts[rule] = counts.get(rule, 0) + 1
        counts["suppressed"] += 1
        reports[(row, name)] = CellReport(
            row,
            name,
            CellVerdict.SUPPRESS,
            rules,
            f"row {row}, column '{name}': suppressed because {reason}",
        )
    released = _null_cells(result.released, spec, added)
    if counts["cells"] == counts["suppressed"]:
        verdict = OutputVerdict.REFUSED
    elif counts["review"]:
        verdict = OutputVerdict.HELD_FOR_REVIEW
    else:
        verdict = OutputVerdict.RELEASED_WITH_SUPPRESSIONS
    cells = tuple(reports[key] for key in sorted(reports))
    return DifferencedResult(verdict, released, cells, counts, result.params, k=k)


def _fields(result: CheckResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "released": result.released,
        "cells": result.cells,
        "counts": dict(result.counts),
        "params": result.params,
    }


def _null_cells(table: pa.Table, spec: OutputSpec, cells: Collection[tuple[int, str]]) -> pa.Table:
    names = {c.name for c in spec.columns if c.role is OutputRole.AGGREGATE}
    for name in names:
        rows = {r for (r, n) in cells if n == name}
        if not rows or name not in table.column_names:
            continue
        column = table.column(name)
        values = column.to_pylist()
        for r in rows:
            values[r] = None
        position = table.column_names.index(name)
        table = table.set_column(position, name, pa.array(values, type=column.type))
    return table


def released_rows(result: CheckResult, spec: OutputSpec, rows: int) -> list[int]:
    """Rows with at least one aggregate cell that leaves (not suppressed)."""
    suppressed: dict[int, int] = {}
    for report in result.cells:
        if report.verdict is CellVerdict.SUPPRESS:
            suppressed[report.row] = suppressed.get(report.row, 0) + 1
    total = len(spec.aggregates())
    return [r for r in range(rows) if suppressed.get(r, 0) < total]
