"""Rewrite an admitted aggregate query so that every output row carries its evidence.

The output check (``policies.disclosure``) decides cell by cell what may leave;
it needs, for each cell, how many entities contribute and how much the largest
ones contribute (the evidence columns of ``policies.outputs``). Those numbers
are computed by the same engine run as the visible result, in one SQL statement:

``__base``
    the original FROM / JOIN / WHERE, projecting each group key expression
    (``__g0`` ...), the entity key of the first table in FROM (``__e``) and each
    output aggregate's argument (``__a0`` ...).
``__per_entity``
    one row per (grouping set, group, entity): each grouping set S of the
    original becomes S + (__e); GROUPING() over the keys tells a rolled-up key
    from a real NULL. It holds each entity's own row count, non-null count and,
    for SUM / AVG, its own sum.
``__evidence``
    one row per (group, grouping): distinct entities, per-cell contributors,
    totals, the two largest per-entity sums, negatives and NULLs.
``__visible``
    the admitted query unchanged (HAVING included: it filters visible rows
    only) plus ``GROUPING(keys) AS __grouping``.

The result is ``__visible`` LEFT JOIN ``__evidence`` on every group key
(``IS NOT DISTINCT FROM``, so NULL keys match) and ``__grouping``, ordered by
the admitted ORDER BY. Aggregates such as COUNT(DISTINCT x) stay computed by
the original query; only their evidence comes from the rewrite.

One pass, when it can: if every aggregate of the projections and HAVING is
COUNT(*), COUNT(x), SUM(x), AVG(x), MIN(x), MAX(x) or COUNT(DISTINCT entity
key), and every grouping set has a key, the visible figures are derived from
``__per_entity`` (sums of per-entity counts and sums, extremes of per-entity
extremes, the number of entities) in the same aggregation as the evidence
(``__one``), and the input is scanned once instead of twice
(:mod:`jobs.evidence_one_pass`). Same columns, same types; floating-point sums add
in another order (last bits only).

With joins, each output row also carries ``__joined``: the fewest distinct entities
of any other joined table that reaches the row (its entity key, counted per
grouping set over ``__base``), so a table of persons joined to enterprises cannot
release a cell of one enterprise behind its many employees (issue 17); the
threshold rule reads it beside ``__n``.

When the platform asks (``entities=True``, for the differencing defence),
each output row also carries ``__entities``: the numbers of its distinct
entities, from the table ``__numbers`` (entity key as text, number) that the
platform hands the engine beside the data (``sandbox.guard.numbering``); the
local worker folds each list into a roaring bitmap before it answers, so raw
keys never leave it. When it asks for ``clamp`` (the DP mode), each SUM / AVG over a
bounded plain column also carries ``__clamped_{i}``: the sum of the per-entity
sums clamped to the declared bounds. Both are evidence columns: the output
check drops them before release.

Known shortcut: rows whose entity key is NULL count as one entity together.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from policies.admission import (
    DIALECT,
    AdmittedQuery,
    QueryScope,
    TableScope,
    aggregate_argument,
    unwrap_aggregate,
)
from policies.errors import PolicyRefusal
from policies.outputs import OutputSpec, evidence_name

from .evidence_one_pass import Derived, derive_visible, one_pass

ENTITIES = evidence_name("entities")
JOINED = evidence_name("joined")  # the fewest entities of any other joined table in the row
MAGNITUDE = frozenset({"sum", "avg"})
# The entity numbering the worker reads (``sandbox.guard.numbering``): entity key as text,
# number. NULL keys count as one entity together, under NULL_KEY.
NUMBERS_TABLE = "__numbers"
NULL_KEY = "\x00null"
# Each row's entity number, in the row order of the first table's snapshot (DuckDB).
ROW_NUMBERS_TABLE = "__rownumbers"
ROW_NUMBER = "__en"


def key_text_sql(column_sql: str) -> str:
    """The entity key's text as the numbering holds it (NULL keys as :data:`NULL_KEY`)."""
    return f"COALESCE(CAST({column_sql} AS VARCHAR), chr(0) || 'null')"


def _q(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect=DIALECT)


def first_table_alias(tree: exp.Select) -> exp.Table:
    """The first table of the query's FROM, whose entity key counts contributors."""
    from_ = tree.args.get("from_") or tree.args.get("from")
    assert from_ is not None  # admission refuses a query without FROM
    first: exp.Table = from_.this
    return first


# The old private name, still imported by sandbox/run/execution.py until it takes the new one.


def evidence_columns(query: AdmittedQuery) -> list[str]:
    """The names of the evidence columns :func:`with_evidence` adds, in order."""
    names = [evidence_name("grouping"), evidence_name("n")]
    if query.tree.args.get("joins"):
        names.append(JOINED)
    for i, _ in query.spec.aggregates():
        names += [evidence_name(kind, i) for kind in ("n", "total", "top1", "top2", "neg", "null")]
    return names


def argument_columns(query: AdmittedQuery) -> dict[int, str | None]:
    """Each aggregate's argument as a plain column name, or None for an expression."""
    projections = {p.alias: p.this for p in query.tree.expressions}
    out: dict[int, str | None] = {}
    for i, column in query.spec.aggregates():
        arg = aggregate_argument(unwrap_aggregate(projections[column.name]))
        out[i] = arg.name if isinstance(arg, exp.Column) else None
    return out


def with_evidence(
    query: AdmittedQuery,
    scope: QueryScope,
    *,
    entities: bool = False,
    clamp: dict[str, tuple[float, float]] | None = None,
    positional: bool = True,
) -> str:
    """DuckDB SQL yielding the admitted query's columns plus their evidence columns.

    ``entities`` adds ``__entities`` per row; ``clamp`` ({column: (lower, upper)})
    adds ``__clamped_{i}`` for SUM / AVG over those plain columns. With ``entities``,
    each row of the first table gets its entity's number from :data:`ROW_NUMBERS_TABLE`
    by a positional join (``positional``: DuckDB), and the cells are grouped by that
    number; otherwise (Spark) each (cell, entity) row looks its number up in
    :data:`NUMBERS_TABLE` by the key's text.
    """
    parts = _base(query, scope)
    if entities and positional:
        _number_rows(parts)
    # Per entity, per grouping set: output name -> SQL.
    per: dict[str, str] = {}
    for i, family, arg_col in parts.aggregates:
        if arg_col is not None:
            per[f"__c{i}"] = f"COUNT({arg_col})"
            if family in MAGNITUDE:
                per[f"__s{i}"] = f"SUM({arg_col})"
    derived = derive_visible(
        query, parts.keys, parts.key_cols, parts.first, parts.table, parts.base_items, per
    )
    base = parts.base
    base.set("expressions", parts.base_items)
    base_sql = base.sql(dialect=DIALECT)
    per_sql = _per_entity_sql(query.spec, parts.key_cols, per)
    if entities and not positional:  # each entity's number, once per (cell, entity) row
        per_sql = (
            f"SELECT __pe.*, __nb.number AS __en FROM ({per_sql}) AS __pe "
            f"LEFT JOIN {NUMBERS_TABLE} AS __nb ON {key_text_sql('__pe.__e')} = __nb.entity_key"
        )
    ev_items, extra = _evidence_items(query, parts, entities, clamp)
    if entities and positional:  # __e is the entity's number already
        ev_items = [item.replace("list(__en)", "list(__e)") for item in ev_items]
    ev_group = ", ".join([*parts.key_cols, "__grouping"])
    if derived is not None:
        return _one_pass(query, derived, base_sql, per_sql, ev_items, ev_group, extra, parts)
    ev_sql = f"SELECT {', '.join(ev_items)} FROM __per_entity GROUP BY {ev_group}"
    return _two_pass(query, parts, base_sql, per_sql, ev_sql, extra)


@dataclass
class _Base:
    """The admitted query's rows before grouping: each group key, the entity key and
    each aggregate's argument as columns of ``__base``."""

    first: exp.Table
    table: TableScope  # the first table's
    keys: list[exp.Expression]  # group key expressions
    key_cols: list[str]  # their __g columns
    aggregates: list[tuple[int, str | None, str | None]]  # (output index, family, argument column)
    base_items: list[exp.Expr]
    base: exp.Select
    others: list[str]  # the __o columns: entity keys of the other joined tables


def _base(query: AdmittedQuery, scope: QueryScope) -> _Base:
    tree = query.tree
    spec = query.spec
    projections = {p.alias: p.this for p in tree.expressions}
    first = first_table_alias(tree)
    table = scope.tables.get(first.name)
    if table is None:
        raise PolicyRefusal(
            "unknown_table", f"table '{first.name}' is not in the scope of this job (Art. 15)"
        )
    entity = exp.column(table.classification.entity_key, table=first.alias_or_name, quoted=True)
    keys = [projections[name] for name in spec.group_keys]
    key_cols = [f"__g{k}" for k in range(len(keys))]
    aggregates = []
    base_items = [exp.alias_(k.copy(), c) for k, c in zip(keys, key_cols, strict=True)]
    base_items.append(exp.alias_(entity, "__e"))
    for i, column in spec.aggregates():
        arg = aggregate_argument(unwrap_aggregate(projections[column.name]))
        arg_col = None
        if arg is not None and column.function != "count_star":
            arg_col = f"__a{i}"
            base_items.append(exp.alias_(arg.copy(), arg_col))
        aggregates.append((i, column.function, arg_col))
    others = []
    for j, join in enumerate(tree.args.get("joins") or []):
        joined = join.this
        key = scope.tables[joined.name].classification.entity_key
        others.append(f"__o{j}")
        base_items.append(
            exp.alias_(exp.column(key, table=joined.alias_or_name, quoted=True), others[-1])
        )
    base = tree.copy()
    for clause in ("group", "having", "order", "distinct"):
        base.set(clause, None)
    return _Base(first, table, keys, key_cols, aggregates, base_items, base, others)


def _others_sql(spec: OutputSpec, parts: _Base) -> str:
    """Per output row, the fewest distinct entities of any other joined table (issue 17:
    a join of persons with enterprises must not count only persons: one firm's capital
    over its forty employees is still one firm's)."""
    key_cols = parts.key_cols
    grouping = f"GROUPING({', '.join(key_cols)})" if key_cols else "0"
    # a table none of whose entities reaches the row (a LEFT JOIN's NULLs) is left out
    counts = [f"NULLIF(COUNT(DISTINCT {o}), 0)" for o in parts.others]
    fewest = counts[0] if len(counts) == 1 else f"LEAST({', '.join(counts)})"
    sets = ", ".join(
        "(" + ", ".join(key_cols[spec.group_keys.index(name)] for name in grouping_set) + ")"
        for grouping_set in spec.grouping_sets
    )
    return (
        f"SELECT {', '.join([*key_cols, f'{grouping} AS __grouping'])}, "
        f"{fewest} AS __n_others FROM __base GROUP BY GROUPING SETS ({sets})"
    )


def _joined(query: AdmittedQuery, parts: _Base, row: str) -> tuple[str, str]:
    """The column :data:`JOINED` (the fewest entities of any other joined table that
    reaches the row) and the join that brings it to the rows read as ``row``."""
    on = [
        f"{row}.{_q(name)} IS NOT DISTINCT FROM __ot.{col}"
        for name, col in zip(query.spec.group_keys, parts.key_cols, strict=True)
    ]
    on.append(f"{row}.__grouping = __ot.__grouping")
    join = f" LEFT JOIN ({_others_sql(query.spec, parts)}) AS __ot ON {' AND '.join(on)}"
    return f"__ot.__n_others AS {JOINED}", join


def _number_rows(parts: _Base) -> None:
    """Read the first table beside its rows' entity numbers (a positional join: the row
    file is in the snapshot's row order) and count entities by their number."""
    alias = parts.first.alias_or_name
    numbered = sqlglot.parse_one(
        f"SELECT * FROM {_q(parts.first.name)} POSITIONAL JOIN {ROW_NUMBERS_TABLE}", read=DIALECT
    )
    for table in parts.base.find_all(exp.Table):
        if table.alias_or_name == alias and table.name == parts.first.name:
            table.replace(
                exp.Subquery(
                    this=numbered, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))
                )
            )
            break
    for n, item in enumerate(parts.base_items):
        if item.alias == "__e":
            parts.base_items[n] = exp.alias_(
                exp.column(ROW_NUMBER, table=alias, quoted=True), "__e"
            )


def _per_entity_sql(spec: OutputSpec, key_cols: list[str], per: dict[str, str]) -> str:
    """One row per entity and grouping set: its row count and per-aggregate figures."""
    grouping = f"GROUPING({', '.join(key_cols)})" if key_cols else "0"
    per_items = [*key_cols, "__e", f"{grouping} AS __grouping", "COUNT(*) AS __rows"]
    per_items += [f"{sql} AS {name}" for name, sql in per.items()]
    sets = []
    for grouping_set in spec.grouping_sets:
        cols = [key_cols[spec.group_keys.index(name)] for name in grouping_set] + ["__e"]
        sets.append(f"({', '.join(cols)})")
    return f"SELECT {', '.join(per_items)} FROM __base GROUP BY GROUPING SETS ({', '.join(sets)})"


def _evidence_items(
    query: AdmittedQuery,
    parts: _Base,
    entities: bool,
    clamp: dict[str, tuple[float, float]] | None,
) -> tuple[list[str], list[str]]:
    """The evidence of each output row (from ``__per_entity``), and the extra columns
    (entity lists, clamped sums) that follow the evidence."""
    ev_items = [*parts.key_cols, "__grouping", f"COUNT(*) AS {evidence_name('n')}"]
    extra = []
    if entities:
        ev_items.append(f"list(__en) AS {ENTITIES}")
        extra.append(ENTITIES)
    arguments = argument_columns(query) if clamp else {}
    for i, family, arg_col in parts.aggregates:
        ev_items += _cell_evidence(i, family, arg_col)
        bounds = (clamp or {}).get(arguments.get(i) or "")
        if family in MAGNITUDE and arg_col is not None and bounds is not None:
            lo, hi = (float(b) for b in bounds)
            ev_items.append(
                f"CAST(SUM(LEAST(GREATEST(__s{i}, {lo!r}), {hi!r})) AS DOUBLE) "
                f"AS {evidence_name('clamped', i)}"
            )
            extra.append(evidence_name("clamped", i))
    return ev_items, extra


def _two_pass(
    query: AdmittedQuery, parts: _Base, base_sql: str, per_sql: str, ev_sql: str, extra: list[str]
) -> str:
    """The admitted query as the operator wrote it, joined to its evidence by group keys
    and grouping: for the shapes the one-pass rewrite does not derive."""
    tree, spec = query.tree, query.spec
    visible = tree.copy()
    visible.set("order", None)
    visible_grouping = (
        exp.Anonymous(this="GROUPING", expressions=[k.copy() for k in parts.keys])
        if parts.keys
        else exp.Literal.number(0)
    )
    visible.set("expressions", [*visible.expressions, exp.alias_(visible_grouping, "__grouping")])
    out_cols = [f"__v.{_q(c.name)}" for c in spec.columns]
    out_cols.append("__v.__grouping")
    # A visible row no base row contributes to (an empty input's total) has no
    # evidence row: its counts are 0, not unknown.
    counted = {evidence_name("n")}
    for i, family, _arg_col in parts.aggregates:
        counted |= {evidence_name("n", i), evidence_name("null", i)}
        if family in MAGNITUDE:
            counted.add(evidence_name("neg", i))
    joined, join = _joined(query, parts, "__v") if parts.others else ("", "")
    for name in evidence_columns(query)[1:]:
        column = f"__ev.{name}"
        if name == JOINED:
            out_cols.append(joined)
            continue
        out_cols.append(f"COALESCE({column}, 0) AS {name}" if name in counted else column)
    out_cols += [f"__ev.{name}" for name in extra]
    on = [
        f"__v.{_q(name)} IS NOT DISTINCT FROM __ev.{col}"
        for name, col in zip(spec.group_keys, parts.key_cols, strict=True)
    ]
    on.append("__v.__grouping = __ev.__grouping")
    order = tree.args.get("order")
    order_sql = ""
    if order is not None:
        items = []
        for ordered in order.expressions:
            item = ordered.copy()
            item.set("this", exp.column(ordered.this.name, table="__v", quoted=True))
            items.append(item.sql(dialect=DIALECT))
        order_sql = " ORDER BY " + ", ".join(items)
    return (
        f"WITH __base AS ({base_sql}), "
        f"__per_entity AS ({per_sql}), "
        f"__evidence AS ({ev_sql}), "
        f"__visible AS ({visible.sql(dialect=DIALECT)}) "
        f"SELECT {', '.join(out_cols)} FROM __visible AS __v "
        f"LEFT JOIN __evidence AS __ev ON {' AND '.join(on)}{join}{order_sql}"
    )


def _one_pass(
    query: AdmittedQuery,
    derived: Derived,
    base_sql: str,
    per_sql: str,
    ev_items: list[str],
    ev_group: str,
    extra: list[str],
    parts: _Base,
) -> str:
    """The rewrite when the visible figures derive from ``__per_entity``: one aggregation
    over it gives each output row's visible columns and its evidence together."""
    names = [_q(c.name) for c in query.spec.columns] + ["__grouping"]
    names += evidence_columns(query)[1:] + extra
    join = ""
    if parts.others:  # the fewest entities of any other joined table
        joined, join = _joined(query, parts, "__one")
        names = [joined if name == JOINED else f"__one.{name}" for name in names]
    return one_pass(query, derived, base_sql, per_sql, ev_items, ev_group, names, join)


def _cell_evidence(i: int, family: str | None, arg_col: str | None) -> list[str]:
    """The evidence expressions of output column ``i`` over ``__per_entity``."""
    n, total, top1, top2, neg, null = (
        evidence_name(kind, i) for kind in ("n", "total", "top1", "top2", "neg", "null")
    )
    if arg_col is None:  # COUNT(*): every entity of the row contributes
        return [
            f"COUNT(*) AS {n}",
            f"CAST(NULL AS DOUBLE) AS {total}",
            f"CAST(NULL AS DOUBLE) AS {top1}",
            f"CAST(NULL AS DOUBLE) AS {top2}",
            f"CAST(NULL AS BIGINT) AS {neg}",
            f"CAST(0 AS BIGINT) AS {null}",
        ]
    nulls = f"CAST(SUM(__rows - __c{i}) AS BIGINT) AS {null}"
    if family not in MAGNITUDE:
        return [
            f"COUNT(*) FILTER (WHERE __c{i} > 0) AS {n}",
            f"CAST(NULL AS DOUBLE) AS {total}",
            f"CAST(NULL AS DOUBLE) AS {top1}",
            f"CAST(NULL AS DOUBLE) AS {top2}",
            f"CAST(NULL AS BIGINT) AS {neg}",
            nulls,
        ]
    s = f"__s{i}"
    contributors = (
        f"COUNT(*) FILTER (WHERE {s} IS NOT NULL AND {s} <> 0)"
        if family == "sum"
        else f"COUNT(*) FILTER (WHERE __c{i} > 0)"
    )
    return [
        f"{contributors} AS {n}",
        f"CAST(SUM({s}) AS DOUBLE) AS {total}",
        f"CAST((max({s}, 2))[1] AS DOUBLE) AS {top1}",
        f"CAST((max({s}, 2))[2] AS DOUBLE) AS {top2}",
        f"COUNT(*) FILTER (WHERE {s} < 0) AS {neg}",
        nulls,
    ]
