"""The shape of an admitted aggregate query's output, and the names of its evidence.

This is the contract between three parts:

* the admission checker (``policies.admission``) describes what each output
  column of an admitted query is (:class:`OutputSpec`);
* the evidence rewrite (``jobs.sql_evidence``) makes the query compute, for
  every output row and aggregate column, the evidence columns named here;
* the output check (``policies.disclosure``) reads the visible columns and the
  evidence columns and decides, cell by cell, what may leave.

Evidence columns start with ``__`` and never leave the sandbox: the release
step drops every column whose name starts with :data:`EVIDENCE_PREFIX`.

Per output row (one group, or one margin of a ROLLUP / GROUPING SETS):

``__grouping``
    GROUPING() bitmask over :attr:`OutputSpec.group_keys` (bit set = key rolled
    up, the most significant bit is the first key, as DuckDB's GROUPING()); 0
    when the query has one plain grouping.
``__n``
    distinct entities (the entity key of the first table in FROM) in the row.

Per aggregate output column ``i`` (its position in :attr:`OutputSpec.columns`):

``__n_{i}``
    distinct entities that contribute to that cell: for COUNT(*) every entity
    of the row; for COUNT(x), MIN, MAX, MEDIAN, quantiles, STDDEV and AVG the
    entities with a non-null argument; for SUM the entities whose own sum is
    non-null and not zero.
``__total_{i}``, ``__top1_{i}``, ``__top2_{i}``
    for SUM and AVG only (NULL otherwise): the sum of the per-entity sums, and
    the largest and second-largest per-entity sum (NULL when fewer entities).
``__neg_{i}``
    for SUM and AVG: entities whose own sum is negative (NULL otherwise).
``__null_{i}``
    rows of the row's group whose argument is NULL (0 for COUNT(*)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

EVIDENCE_PREFIX = "__"


class OutputRole(StrEnum):
    GROUP = "group"
    AGGREGATE = "aggregate"


# Aggregate families the checker may admit. Anything else is refused.
ADDITIVE = frozenset({"count", "count_distinct", "sum"})
MAGNITUDE = frozenset({"sum", "avg"})


@dataclass(frozen=True)
class OutputColumn:
    """One column of the admitted query's final projection."""

    name: str  # the output name, unique within the query
    role: OutputRole
    # For aggregates: a normalised function family: count, count_star,
    # count_distinct, sum, avg, min, max, median, quantile, stddev, variance.
    function: str | None = None
    # For group keys: the group key's name in OutputSpec.group_keys.
    group_key: str | None = None


@dataclass(frozen=True)
class OutputSpec:
    """What the admitted query yields: its columns and its groupings."""

    columns: tuple[OutputColumn, ...]
    # Names of the group keys (the output names of the GROUP BY expressions),
    # in GROUP BY order. Empty for a global aggregate.
    group_keys: tuple[str, ...] = ()
    # Each grouping set as a tuple of group-key names; one set equal to
    # group_keys for a plain GROUP BY; several for ROLLUP / CUBE / GROUPING SETS.
    grouping_sets: tuple[tuple[str, ...], ...] = ((),)
    entity_tables: tuple[str, ...] = field(default=())

    @property
    def has_margins(self) -> bool:
        return len(self.grouping_sets) > 1

    def aggregates(self) -> list[tuple[int, OutputColumn]]:
        return [(i, c) for i, c in enumerate(self.columns) if c.role is OutputRole.AGGREGATE]


def evidence_name(kind: str, index: int | None = None) -> str:
    """``evidence_name('n', 2) == '__n_2'``; ``evidence_name('n') == '__n'``."""
    return f"{EVIDENCE_PREFIX}{kind}" if index is None else f"{EVIDENCE_PREFIX}{kind}_{index}"


def grouping_mask(spec: OutputSpec, grouping_set: tuple[str, ...]) -> int:
    """The ``__grouping`` value of rows of one grouping set (DuckDB's GROUPING())."""
    mask = 0
    n = len(spec.group_keys)
    for position, key in enumerate(spec.group_keys):
        if key not in grouping_set:
            mask |= 1 << (n - 1 - position)
    return mask
