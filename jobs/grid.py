"""The declared grid of an output: every combination of its keys' declared codes (issue 17).

``GROUP BY`` emits only the groups the data has, so the presence of a row says that
someone is in it, and a zero count never appears for the zero rule to judge. When
every group key of an admitted query is a plain column whose provider declared a
code list (:mod:`policies.domains`), the output lists every combination of the
declared codes, per grouping set, whatever the data holds: the rows the data lacks
are added after the run as empty cells (no entity: the threshold rule suppresses
them, like small ones), so the released table has the same rows for any data.

The grid is also the declared hypercube of the output check: with margins, the
secondary suppression is chosen on it and must pass the interval audit
(``policies.disclosure.tables``; ``SqlAggregate.check`` passes the codes on).

A key computed from a column (``upper(county)``), or over a column without a code
list, leaves the output as the data gives it (the rows present are then an answer
of the data; docs/disclosure.md says so).

:func:`lineage_keys` names what the audit across releases (issue 17, item 3, "one
hypercube per lineage") joins an output to: its dataset, each group key's column, each
additive measure as its aggregate and normalised argument, and the normalised WHERE.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlglot import exp

from policies.admission import (
    DIALECT,
    AdmittedQuery,
    QueryScope,
    aggregate_argument,
    unwrap_aggregate,
)
from policies.disclosure import COUNTS
from policies.domains import Codes, canonical, declared_values
from policies.limits import key_columns
from policies.outputs import EVIDENCE_PREFIX, OutputRole, grouping_mask


@dataclass(frozen=True)
class DeclaredGrid:
    """The declared codes of each group key (by output name)."""

    values: Mapping[str, tuple[Any, ...]]


def declared_grid(query: AdmittedQuery, scope: QueryScope) -> DeclaredGrid | None:
    """The grid of ``query``'s keys, or None unless every key is a plain column with a
    declared code list."""
    projections = {p.alias: p.this for p in query.tree.expressions}
    read = key_columns(query)  # the (dataset, column) each key reads, as the cap's bound
    values: dict[str, tuple[Any, ...]] = {}
    for name in query.spec.group_keys:
        if not isinstance(projections[name], exp.Column) or len(read[name]) != 1:
            return None
        [(dataset, column)] = read[name]
        table = scope.tables.get(dataset)
        domain = None if table is None else table.classification.domains.get(column)
        if not isinstance(domain, Codes):
            return None
        values[name] = tuple(declared_values(domain))
    return DeclaredGrid(values) if values else None


def complete_grid(raw: pa.Table, query: AdmittedQuery, grid: DeclaredGrid) -> pa.Table:
    """``raw`` with a row for every declared combination it lacks, per grouping set (and
    sorted again by the query's ORDER BY)."""
    spec = query.spec
    present = {
        (tuple(canonical(v) for v in key), mask)
        for *key, mask in zip(
            *(raw.column(k).to_pylist() for k in spec.group_keys),
            raw.column("__grouping").to_pylist()
            if "__grouping" in raw.column_names
            else [0] * raw.num_rows,
            strict=True,
        )
    }
    missing: list[tuple[list[Any], int]] = []
    for grouping_set in spec.grouping_sets:
        mask = grouping_mask(spec, grouping_set)
        choices = [grid.values[k] if k in grouping_set else (None,) for k in spec.group_keys]
        for combo in itertools.product(*choices):
            if (tuple(canonical(v) for v in combo), mask) not in present:
                missing.append((list(combo), mask))
    if not missing:
        return raw
    added = pa.table(
        [_column(raw, name, missing, query) for name in raw.column_names], names=raw.column_names
    )
    out = pa.concat_tables([raw, added])
    return _ordered(out, query)


def _column(
    raw: pa.Table, name: str, missing: list[tuple[list[Any], int]], query: AdmittedQuery
) -> pa.Array:
    spec = query.spec
    kind = raw.schema.field(name).type
    if name in spec.group_keys:
        at = spec.group_keys.index(name)
        values = [combo[at] for combo, _mask in missing]
        if all(v is None or isinstance(v, str) for v in values) and not pa.types.is_string(kind):
            return pa.array(values, type=pa.string()).cast(kind)
        return pa.array(values).cast(kind)
    if name == "__grouping":
        return pa.array([mask for _combo, mask in missing]).cast(kind)
    return pa.array([_empty(name, query)] * len(missing)).cast(kind)


def _empty(name: str, query: AdmittedQuery) -> Any:
    """An empty cell's value: 0 for counts and entity counts, NULL for the rest."""
    if name.startswith(EVIDENCE_PREFIX):
        kind = name[len(EVIDENCE_PREFIX) :].rsplit("_", 1)[0]
        return 0 if kind in ("n", "null") else None
    column = next(c for c in query.spec.columns if c.name == name)
    if column.role is OutputRole.AGGREGATE and column.function in COUNTS:
        return 0
    return None


def _ordered(table: pa.Table, query: AdmittedQuery) -> pa.Table:
    order = query.tree.args.get("order")
    if order is None:
        return table
    keys = [
        (ordered.this.name, "descending" if ordered.args.get("desc") else "ascending", "at_end")
        for ordered in order.expressions
    ]
    return table.sort_by(keys)  # NULLS LAST, as DuckDB orders by default


# The measures whose cells are sums of their children, the only ones an interval audit
# across releases can hold (an AVG, COUNT DISTINCT or other statistic is not).
LINEAGE_FUNCTIONS = frozenset({"count", "count_star", "sum"})


@dataclass(frozen=True)
class LineageKeys:
    """What joins an output to earlier ones in the audit across releases."""

    dataset: str
    dimensions: Mapping[str, str]  # group key (output name) -> the column it reads
    measures: Mapping[int, str]  # aggregate position -> measure key, e.g. ``sum(capital)``
    where: str  # the normalised WHERE text, '' without one


def lineage_keys(query: AdmittedQuery, grid: DeclaredGrid | None) -> LineageKeys | None:
    """The lineage keys of an output over one table whose group keys all have a declared
    grid (or that has none: a grand total); None otherwise (joins, subqueries, a key
    without a code list, a column grouped twice)."""
    tree = query.tree
    from_ = tree.args.get("from_") or tree.args.get("from")
    if (
        from_ is None
        or not isinstance(from_.this, exp.Table)
        or tree.args.get("joins")
        or tree.args.get("with")
        or len(query.tables) != 1
        or (query.spec.group_keys and grid is None)
    ):
        return None
    read = key_columns(query)
    dimensions = {k: next(iter(read[k]))[1] for k in query.spec.group_keys if len(read[k]) == 1}
    if len(dimensions) != len(query.spec.group_keys) or len(set(dimensions.values())) != len(
        dimensions
    ):
        return None
    projections = {p.alias: p.this for p in tree.expressions}
    measures: dict[int, str] = {}
    for i, column in query.spec.aggregates():
        if column.function not in LINEAGE_FUNCTIONS:
            continue
        argument = aggregate_argument(unwrap_aggregate(projections[column.name]))
        measures[i] = f"{column.function}({'*' if argument is None else _normal(argument)})"
    where = tree.args.get("where")
    return LineageKeys(
        from_.this.name, dimensions, measures, "" if where is None else _normal(where.this)
    )


def _normal(node: exp.Expression) -> str:
    """An expression's text without table qualifiers, identifiers normalised."""
    copy = node.copy()
    for column in copy.find_all(exp.Column):
        column.set("table", None)
    return copy.sql(dialect=DIALECT, normalize=True, comments=False)
