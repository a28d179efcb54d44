"""The one-pass evidence rewrite: the visible figures from the per-entity rows.

When every aggregate of the admitted query is COUNT(*), COUNT(x), SUM(x), AVG(x),
MIN(x), MAX(x) or COUNT(DISTINCT entity key) and every grouping set has a key, the
visible figures are derived from ``__per_entity`` (``jobs.sql_evidence``) in the same
aggregation as the evidence, and the input is scanned once instead of twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from policies.admission import DIALECT, AdmittedQuery, TableScope, aggregate_argument


def quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect=DIALECT)


@dataclass
class Derived:
    """The admitted query's projections and HAVING with every aggregate replaced by
    its equivalent over ``__per_entity`` (and every group key by its ``__g`` column)."""

    columns: list[tuple[str, str]]  # (output name, SQL over __per_entity)
    having: str | None


def derive_visible(
    query: AdmittedQuery,
    keys: list[exp.Expression],
    key_cols: list[str],
    first: exp.Table,
    table: TableScope,
    base_items: list[exp.Expr],
    per: dict[str, str],
) -> Derived | None:
    """The visible columns computed from the per-entity rows, or None when a figure
    cannot be (then ``__visible`` scans the input a second time).

    COUNT(*) is the sum of the entities' row counts, COUNT(x) and SUM(x) the sums of
    theirs, AVG(x) their SUM over their COUNT, MIN and MAX the extremes of theirs, and
    COUNT(DISTINCT entity key) the number of entities. Needs a group key in every
    grouping set (a global aggregate over no rows still has one output row, which
    per-entity rows cannot give). Adds the base and per-entity columns it uses to
    ``base_items`` and ``per``; the floating-point sums add in another order.
    """
    tree, spec = query.tree, query.spec
    if not keys or any(not s for s in spec.grouping_sets) or tree.args.get("distinct"):
        return None
    rewriter = Rewriter(query, keys, key_cols, first, table, base_items, per)
    saved_base, saved_per = list(base_items), dict(per)
    try:
        columns = []
        for projection in tree.expressions:
            value = projection.this.copy().transform(rewriter.replace)
            columns.append((projection.alias, value.sql(dialect=DIALECT)))
        having = tree.args.get("having")
        having_sql = None
        if having is not None:
            having_sql = having.this.copy().transform(rewriter.replace).sql(dialect=DIALECT)
        for _name, sql in columns:
            check_over_per_entity(sql, key_cols)
        if having_sql is not None:
            check_over_per_entity(having_sql, key_cols)
    except NotDerivable:
        base_items[:] = saved_base
        per.clear()
        per.update(saved_per)
        return None
    return Derived(columns, having_sql)


class Rewriter:
    """Replaces each aggregate of the admitted query by its equivalent over the
    per-entity rows, adding the base and per-entity columns it needs."""

    def __init__(
        self,
        query: AdmittedQuery,
        keys: list[exp.Expression],
        key_cols: list[str],
        first: exp.Table,
        table: TableScope,
        base_items: list[exp.Expr],
        per: dict[str, str],
    ) -> None:
        self.entity_key = table.classification.entity_key
        self.first = first
        self.key_sql = {k.sql(dialect=DIALECT): c for k, c in zip(keys, key_cols, strict=True)}
        self.base_items = base_items
        self.per = per
        self.arguments: dict[str, str] = {}  # argument SQL -> its base column
        for item in base_items:
            if item.alias.startswith("__a"):
                self.arguments.setdefault(item.this.sql(dialect=DIALECT), item.alias)

    def column_of(self, arg: exp.Expression) -> str:
        text = arg.sql(dialect=DIALECT)
        if text not in self.arguments:
            self.arguments[text] = f"__x{len(self.arguments)}"
            self.base_items.append(exp.alias_(arg.copy(), self.arguments[text]))
        return self.arguments[text]

    def per_entity(self, function: str, column: str) -> str:
        for name, sql in self.per.items():
            if sql == f"{function}({column})":
                return name
        name = f"__p{len(self.per)}"
        self.per[name] = f"{function}({column})"
        return name

    def replace(self, node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Filter | exp.Window | exp.WithinGroup):
            raise NotDerivable  # an aggregate over its own subset or order of the rows
        text = node.sql(dialect=DIALECT)
        if text in self.key_sql and not isinstance(node, exp.AggFunc):
            return exp.column(self.key_sql[text])
        if not isinstance(node, exp.AggFunc):
            return node
        arg = aggregate_argument(node)
        if isinstance(node, exp.Count) and arg is None:
            return _sql("CAST(SUM(__rows) AS BIGINT)")
        if arg is None or isinstance(arg, exp.Distinct):
            raise NotDerivable
        if isinstance(node.this, exp.Distinct):
            if (
                isinstance(node, exp.Count)
                and isinstance(arg, exp.Column)
                and arg.name == self.entity_key
                and arg.table == self.first.alias_or_name
            ):
                return _sql("COUNT(__e)")
            raise NotDerivable
        return self._over_entities(node, self.column_of(arg))

    def _over_entities(self, node: exp.AggFunc, column: str) -> exp.Expr:
        if isinstance(node, exp.Count):
            return _sql(f"CAST(SUM({self.per_entity('COUNT', column)}) AS BIGINT)")
        if isinstance(node, exp.Sum):
            return _sql(f"SUM({self.per_entity('SUM', column)})")
        if isinstance(node, exp.Avg):
            total, count = self.per_entity("SUM", column), self.per_entity("COUNT", column)
            return _sql(f"CAST(SUM({total}) AS DOUBLE) / NULLIF(SUM({count}), 0)")
        if isinstance(node, exp.Min | exp.Max) and node.args.get("count") is None:
            function = "MIN" if isinstance(node, exp.Min) else "MAX"
            return _sql(f"{function}({self.per_entity(function, column)})")
        raise NotDerivable


class NotDerivable(Exception):
    pass


def _sql(text: str) -> exp.Expr:
    return sqlglot.parse_one(text, read=DIALECT)


def check_over_per_entity(sql: str, key_cols: list[str]) -> None:
    """Every column a derived figure reads must be a per-entity column: a base column
    left over (an expression over a raw column outside any aggregate) cannot be."""
    allowed = {*key_cols, "__e", "__rows"}
    for column in sqlglot.parse_one(sql, read=DIALECT).find_all(exp.Column):
        if column.table or not (
            column.name in allowed or column.name.startswith(("__p", "__c", "__s"))
        ):
            raise NotDerivable


def one_pass(
    query: AdmittedQuery,
    derived: Derived,
    base_sql: str,
    per_sql: str,
    ev_items: list[str],
    ev_group: str,
    names: list[str],
    join: str,
) -> str:
    """The rewrite when the visible figures derive from ``__per_entity``: one aggregation
    over it gives each output row's visible columns and its evidence together."""
    visible = [f"{sql} AS {quoted(name)}" for name, sql in derived.columns]
    having = f" HAVING {derived.having}" if derived.having else ""
    order_sql = ""
    order = query.tree.args.get("order")
    if order is not None:
        items = []
        for ordered in order.expressions:
            item = ordered.copy()
            item.set("this", exp.column(ordered.this.name, quoted=True))
            items.append(item.sql(dialect=DIALECT))
        order_sql = " ORDER BY " + ", ".join(items)
    inner = ev_items[ev_items.index("__grouping") :]
    return (
        f"WITH __base AS ({base_sql}), "
        f"__per_entity AS ({per_sql}), "
        f"__one AS (SELECT {', '.join(visible + inner)} FROM __per_entity "
        f"GROUP BY {ev_group}{having}) "
        f"SELECT {', '.join(names)} FROM __one{join}{order_sql}"
    )
