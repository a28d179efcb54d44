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
``||A| - |B|| < k``; ``A inside B`` needs ``|A| <= |B|``, ``min A`` in B and
eight pivot entities of A (spread over its ranks) all in B; ``B inside A``
needs ``|A| >= |B| + k`` and A's range to cover B's. Group keys are not a sound
filter (an attacker moves a key from GROUP BY into WHERE), so they are not used
to skip cells.

What it cannot stop (see docs/disclosure.md): linear reconstruction from many
overlapping cells none of which is near another, and general trackers built
from cells that each differ by at least k. Those need the DP mode.
"""

from __future__ import annotations

import hashlib
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
COARSE = 8  # the first filter's buckets (sums of BUCKETS / COARSE neighbours)


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


def _members(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``members`` (sorted: a bitmap's own order)."""
    if not members.size:
        return np.zeros(values.shape, dtype=bool)
    at = np.minimum(np.searchsorted(members, values), members.size - 1)
    found: np.ndarray = members[at] == values
    return found


def _digest(cell: BitMap) -> bytes:
    return hashlib.blake2b(cell.serialize(), digest_size=16).digest()


def coarse(sketched: np.ndarray) -> np.ndarray:
    """The sketch summed over groups of buckets: a cheaper first filter, as sound."""
    out: np.ndarray = sketched.reshape(COARSE, BUCKETS // COARSE).sum(axis=1)
    return out


def pivots(cell: BitMap) -> np.ndarray:
    """PIVOTS entities of ``cell`` spread over its ranks (repeats when it is smaller)."""
    n = len(cell)
    ranks = np.linspace(0, n - 1, PIVOTS).round().astype(np.int64)
    return np.array([cell[int(r)] for r in ranks], dtype=np.int64)


class HistoryIndex:
    """The released cells of one dataset lineage, in memory, ready to be checked against.

    ``add`` appends to arrays that grow by doubling, so adding n cells costs O(n) and
    every filter sees every cell at once (the cells of one output being judged are an
    index too: :func:`check_cells`).
    """

    def __init__(self) -> None:
        self.cells: list[BitMap] = []
        self._seen: set[bytes] = set()  # digests of the cells held: a repeat adds nothing
        self._n = 0
        self._card_a = np.empty(0, np.int64)
        self._min_a = np.empty(0, np.int64)
        self._max_a = np.empty(0, np.int64)
        self._piv_a = np.empty((0, PIVOTS), np.int64)
        self._sketch_a = np.empty((0, BUCKETS), np.int32)
        self._coarse_a = np.empty((0, COARSE), np.int32)

    def __len__(self) -> int:
        return len(self.cells)

    def add(self, cell: BitMap, sketched: np.ndarray | None = None) -> None:
        """Hold ``cell`` (an empty cell, or one equal to a cell held, changes nothing)."""
        if not cell:
            return
        digest = _digest(cell)
        if digest in self._seen:
            return
        self._seen.add(digest)
        if self._n == len(self._card_a):
            self._grow(max(64, 2 * self._n))
        n = self._n
        self._card_a[n], self._min_a[n], self._max_a[n] = len(cell), cell.min(), cell.max()
        self._piv_a[n] = pivots(cell)
        self._sketch_a[n] = sketch(cell) if sketched is None else sketched
        self._coarse_a[n] = coarse(self._sketch_a[n])
        self.cells.append(cell)
        self._n = n + 1

    def holds(self, cell: BitMap) -> bool:
        """Whether a cell equal to ``cell`` is held (its release adds no new set)."""
        return _digest(cell) in self._seen

    def _grow(self, size: int) -> None:
        def grown(a: np.ndarray) -> np.ndarray:
            out = np.zeros((size, *a.shape[1:]), a.dtype)
            out[: self._n] = a[: self._n]
            return out

        self._card_a, self._min_a, self._max_a = (
            grown(self._card_a),
            grown(self._min_a),
            grown(self._max_a),
        )
        self._piv_a, self._sketch_a = grown(self._piv_a), grown(self._sketch_a)
        self._coarse_a = grown(self._coarse_a)

    @property
    def _card(self) -> np.ndarray:
        return self._card_a[: self._n]

    @property
    def _min(self) -> np.ndarray:
        return self._min_a[: self._n]

    @property
    def _max(self) -> np.ndarray:
        return self._max_a[: self._n]

    @property
    def _piv(self) -> np.ndarray:
        return self._piv_a[: self._n]

    @property
    def _sketch(self) -> np.ndarray:
        return self._sketch_a[: self._n]

    def _dominated(self, found: np.ndarray, own: np.ndarray, *, below: bool) -> np.ndarray:
        """Of ``found``, the cells whose sketch is <= (``below``) or >= ``own`` in every
        bucket: the coarse sketch first (a sum of buckets keeps the order), then the fine."""
        for table, mine in ((self._coarse_a, coarse(own)), (self._sketch_a, own)):
            if not found.size:
                break
            rows = table[found]
            found = found[((rows <= mine) if below else (rows >= mine)).all(axis=1)]
        return found

    # --- candidate filters (never drop a true match) -------------------------------

    def near(self, cell: BitMap, k: int, sketched: np.ndarray | None = None) -> np.ndarray:
        """Cells that may differ from ``cell`` by fewer than ``k`` entities."""
        band = np.flatnonzero(np.abs(self._card - len(cell)) < k)
        if not band.size:
            return band
        own = sketch(cell) if sketched is None else sketched
        band = band[np.abs(self._coarse_a[band] - coarse(own)).sum(axis=1) < k]
        distance = np.abs(self._sketch_a[band] - own).sum(axis=1)
        close: np.ndarray = band[distance < k]
        return close

    def inside(self, cell: BitMap, sketched: np.ndarray | None = None) -> np.ndarray:
        """Cells that may lie inside ``cell``: their smallest entity is one of its own."""
        if not self._n:
            return np.empty(0, np.int64)
        members = np.frombuffer(cell.to_array(), dtype=np.uint32)
        found = np.flatnonzero(self._card <= len(cell))
        if found.size:
            found = found[_members(self._min[found], members)]
        if found.size:
            own = sketch(cell) if sketched is None else sketched
            found = self._dominated(found, own, below=True)
        if found.size:
            found = found[_members(self._piv[found], members).all(axis=1)]
        return found

    def around(self, cell: BitMap, k: int, sketched: np.ndarray | None = None) -> np.ndarray:
        """Cells that may contain ``cell`` with at least ``k`` entities to spare."""
        keep = (self._card >= len(cell) + k) & (self._min <= cell.min()) & (self._max >= cell.max())
        found = np.flatnonzero(keep)
        if found.size:
            own = sketch(cell) if sketched is None else sketched
            found = self._dominated(found, own, below=False)
        return found


def _near(cell: BitMap, sources: Sequence[HistoryIndex], k: int, sk: np.ndarray) -> Finding:
    for source in sources:
        for i in source.near(cell, k, sk):
            d = cell.symmetric_difference_cardinality(source.cells[i])
            if 0 < d < k:
                return Finding.suppress(
                    Condition.INSIDE if cell.issubset(source.cells[i]) else Condition.NEAR, k
                )
    return PASSED


def _covered(cell: BitMap, sources: Sequence[HistoryIndex], k: int, sk: np.ndarray) -> Finding:
    union = BitMap()
    for source in sources:
        for i in source.inside(cell, sk):
            other = source.cells[i]
            if other.issubset(cell):
                union |= other
    rest = len(cell) - len(union)
    if union and 0 < rest < k:
        return Finding.suppress(Condition.UNION, k)
    return PASSED


def _alone(
    cell: BitMap, sources: Sequence[HistoryIndex], k: int, sk: np.ndarray | None = None
) -> Finding:
    """Conditions near, inside and union for one cell."""
    own = sketch(cell) if sk is None else sk
    found = _near(cell, sources, k, own)
    return found if found.verdict is DiffVerdict.SUPPRESS else _covered(cell, sources, k, own)


def _as_index(pending: HistoryIndex | Sequence[BitMap]) -> HistoryIndex:
    if isinstance(pending, HistoryIndex):
        return pending
    index = HistoryIndex()
    for cell in pending:
        index.add(cell)
    return index


def check(
    cell: BitMap,
    history: HistoryIndex,
    k: int,
    pending: HistoryIndex | Sequence[BitMap] = (),
    sk: np.ndarray | None = None,
) -> Finding:
    """The differencing verdict of one new cell against the history (and ``pending`` cells:
    those of the same output already passed)."""
    if not cell or k <= 1:
        return PASSED
    sources = [history, _as_index(pending)]
    if any(source.holds(cell) for source in sources):
        return PASSED  # a repeat of a released set releases no new set
    own = sketch(cell) if sk is None else sk
    found = _alone(cell, sources, k, own)
    if found.verdict is DiffVerdict.SUPPRESS:
        return found
    for source in sources:
        for i in source.around(cell, k, own):
            outer = source.cells[i]
            if not cell.issubset(outer):
                continue
            if _alone(outer - cell, sources, k).verdict is DiffVerdict.SUPPRESS:
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
    passed = HistoryIndex()
    for i, cell in order:
        sk = sketch(cell) if cell else None
        found = check(cell, history, k, passed, sk)
        out[i] = found
        if found.verdict is DiffVerdict.PASS:
            passed.add(cell, sk)
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
