"""Pass 3: check each use of each column and function against its class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

from sqlglot import exp

from ..classes import ColumnClass
from ..suggest import did_you_mean
from .naming import is_aggregate
from .scope import (
    Clause,
    FunctionPolicy,
    QueryScope,
    TableScope,
    function_name,
    key_text,
    number_of,
    refuse_query,
    unwrap,
)
from .table_mode import is_declared_derived, refuse_aggregate, refuse_expression


class Checker:
    """Checks each use of each column and function of a qualified SELECT."""

    def __init__(
        self, scope: QueryScope, policy: FunctionPolicy, aliases: Mapping[str, TableScope]
    ):
        self.scope = scope
        self.policy = policy
        self.aliases = aliases
        self.group_keys: dict[str, exp.Expression] = {}  # key text -> expression

    # -- columns
    def resolve(self, column: exp.Column) -> tuple[TableScope, str]:
        table = self.aliases.get(column.table) if column.table else None
        name = column.name
        if table is None or name not in table.classification.columns:
            known: set[str] = set()
            owners = []
            for ts in self.aliases.values():
                known.update(self._granted(ts))
                if name in ts.classification.columns:
                    owners.append(ts.name)
            if table is None and len(set(owners)) > 1:
                refuse_query(
                    "unknown_column",
                    f"column '{name}' is ambiguous: it is in " + ", ".join(sorted(set(owners))),
                    subject=name,
                    hint=f"qualify it, e.g. {sorted(set(owners))[0]}.{name}",
                )
            refuse_query(
                "unknown_column",
                f"column '{name}' is not a column of the tables in this query",
                subject=name,
                hint=did_you_mean(name, known),
            )
        if table.columns is not None and name not in table.columns:
            refuse_query(
                "column_not_granted",
                f"column '{name}' of {table.name} is not granted to this job",
                subject=name,
                hint="ask the provider to grant it, or use one of: "
                + ", ".join(sorted(table.columns)),
            )
        return table, name

    @staticmethod
    def _granted(ts: TableScope) -> set[str]:
        return set(ts.columns) if ts.columns is not None else set(ts.classification.columns)

    def class_of(self, column: exp.Column) -> ColumnClass:
        table, name = self.resolve(column)
        return table.classification.class_of(name)

    def allowed_aggregates(self) -> str:
        names = ["SUM", "AVG", "COUNT"] + sorted(f.upper() for f in self.scope.extra_aggregates)
        return ", ".join(names)

    # -- expressions
    def walk(self, node: exp.Expression, clause: Clause, agg: str | None = None) -> None:
        """Check one expression of a clause; ``agg`` is the family when inside an aggregate."""
        if agg is None and clause is not Clause.WHERE and key_text(node) in self.group_keys:
            return  # a group key, checked once by check_group_key
        if is_aggregate(node, self.policy):
            if agg is not None:
                refuse_query(
                    "aggregate_expression", "an aggregate inside an aggregate is not admitted"
                )
            if clause in (Clause.WHERE, Clause.JOIN, Clause.GROUP_BY):
                refuse_query(
                    "aggregate_context",
                    f"aggregates are not admitted in {clause.value}",
                    subject=clause.value,
                    hint="use aggregates only as output columns in SELECT",
                )
            self.check_aggregate(node)
            return
        if isinstance(node, exp.Column):
            self.check_column(node, clause, agg)
            return
        self.check_syntax(node)
        for child in node.iter_expressions():
            self.walk(child, clause, agg)

    def check_syntax(self, node: exp.Expr) -> None:
        # Operators first: sqlglot models some of them (AND, OR) as functions too.
        if node.key in self.policy.syntax and not isinstance(node, exp.Anonymous):
            return
        name = function_name(node) if isinstance(node, exp.Func) else node.key
        if name in self.policy.scalar:
            return
        refuse_query(
            "function_not_allowed",
            f"function or operator '{name}' is not on the allow list (default deny)",
            subject=name,
            hint="allowed functions: " + ", ".join(sorted(self.policy.scalar)),
        )

    def check_column(self, column: exp.Column, clause: Clause, agg: str | None) -> None:
        cls = self.class_of(column)
        name = column.name
        if cls is ColumnClass.IDENTIFIER:
            self.refuse_identifier(column, clause)
        if cls is ColumnClass.MEASURE and agg is None:
            refuse_query(
                "measure_outside_aggregate",
                f"{name} may only be used inside {self.allowed_aggregates()}; "
                f"it may not appear in {clause.value} outside an aggregate",
                subject=name,
                hint=f"aggregate it, e.g. SUM({name})",
            )
        if cls is ColumnClass.QUASI and agg is None and clause is not Clause.WHERE:
            self.refuse_quasi(name, clause)

    def refuse_quasi(self, name: str, clause: Clause) -> NoReturn:
        width = int(self.policy.min_bin_width)
        refuse_query(
            "quasi_generalisation",
            f"{name} is a quasi-identifier: in {clause.value} it may only appear through a "
            "generalising function",
            subject=name,
            hint=f"use e.g. floor({name} / {width}) * {width} (width at least {width}), "
            f"year({name}), date_trunc('month', {name}) or left({name}, {self.policy.max_prefix}); "
            "it may be used as is in WHERE",
        )

    def refuse_identifier(self, column: exp.Column, clause: Clause) -> NoReturn:
        name = column.name
        if compared_with_literal(column):
            refuse_query(
                "identifier_literal",
                f"{name} is an identifier and may not be compared with a constant (in {clause.value})",
                subject=name,
                hint="single subjects may not be singled out; group by dimensions instead",
            )
        refuse_query(
            "identifier_use",
            f"{name} is an identifier: it may not be used in {clause.value} or inside an expression",
            subject=name,
            hint=f"an identifier may only be a join key (JOIN ... ON a.{name} = b.{name}) "
            f"or counted: COUNT(DISTINCT {name})",
        )

    def check_aggregate(self, node: exp.Expression) -> str:
        """Check one aggregate call and its argument; returns its family."""
        name = function_name(node)
        arg: exp.Expression | None
        if isinstance(node, exp.Count):
            inner = node.this
            if isinstance(inner, exp.Star):
                return "count_star"
            if isinstance(inner, exp.Distinct):
                if len(inner.expressions) != 1:
                    refuse_query(
                        "aggregate_expression", "COUNT(DISTINCT ..) takes exactly one column"
                    )
                family, arg = "count_distinct", inner.expressions[0]
            else:
                family, arg = "count", inner
            extras = list(node.expressions)
        else:
            family = self._family(name)
            arg, extras = self._argument(node, name, family)
        if extras or arg is None:
            refuse_query("aggregate_expression", f"{name} takes exactly one column", subject=name)
        if isinstance(arg, exp.Column):
            if self.class_of(arg) is ColumnClass.IDENTIFIER and family not in (
                "count",
                "count_distinct",
            ):
                refuse_query(
                    "identifier_use",
                    f"{arg.name} is an identifier: it may only be counted, not used in {name}",
                    subject=arg.name,
                    hint=f"use COUNT(DISTINCT {arg.name})",
                )
            return family
        # An expression: its columns first (so attacks get their own rule), then the grant.
        self.walk(arg, Clause.SELECT, agg=family)
        if self.scope.mode == "table":
            if not is_declared_derived(arg, self):
                refuse_expression(name, name)
            return family
        if not self.scope.aggregate_expressions:
            refuse_query(
                "aggregate_expression",
                f"{name} over an expression is not granted; aggregates take one column",
                subject=name,
                hint="aggregate a bare column (COUNT(*) is always fine), "
                "or ask for the 'expressions' grant",
            )
        return family

    def _family(self, name: str) -> str:
        """The family of an aggregate other than COUNT: base, granted, or refused."""
        if name in self.policy.member_value:
            refuse_query(
                "member_aggregate",
                f"aggregate {name} returns values of single members and is not admitted",
                subject=name,
                hint=f"use {self.allowed_aggregates()}",
            )
        if name in self.policy.base:
            return name
        if name in self.policy.grantable and self.scope.mode == "table":
            refuse_aggregate(name, name)
        if name in self.policy.grantable:
            family = self.policy.grantable[name]
            if family not in self.scope.extra_aggregates:
                refuse_query(
                    "aggregate_not_granted",
                    f"aggregate {name} needs the grant '{family}', which this job does not have",
                    subject=name,
                    hint=f"ask for the '{family}' grant, or use {self.allowed_aggregates()}",
                )
            return family
        refuse_query(
            "aggregate_not_allowed",
            f"aggregate {name} is not on the allow list (default deny)",
            subject=name,
            hint=f"use {self.allowed_aggregates()}",
        )

    @staticmethod
    def _argument(
        node: exp.Expression, name: str, family: str
    ) -> tuple[exp.Expression | None, list[exp.Expression]]:
        """The aggregate's argument and any further arguments (a quantile's constant
        fraction is allowed and dropped); DISTINCT outside COUNT is refused."""
        arg = node.this
        extras = [
            v for k, v in node.args.items() if k != "this" and isinstance(v, exp.Expression)
        ] + [v for v in node.args.get("expressions") or [] if isinstance(v, exp.Expression)]
        if isinstance(arg, exp.Distinct):
            refuse_query(
                "aggregate_not_allowed",
                f"DISTINCT inside {name} is not admitted; DISTINCT is only allowed in COUNT",
                subject=name,
            )
        if family == "quantile":
            if len(extras) != 1 or number_of(extras[0]) is None:
                refuse_query(
                    "aggregate_expression",
                    f"{name} takes one column and one constant fraction",
                    subject=name,
                )
            extras = []
        return arg, extras

    # -- group keys
    def check_group_key(self, key: exp.Expression) -> None:
        column = self.generalised_column(key)
        if column is not None:
            cls = self.class_of(column)
            if cls is ColumnClass.IDENTIFIER:
                self.refuse_identifier(column, Clause.GROUP_BY)
            if cls is ColumnClass.MEASURE:
                self.check_column(column, Clause.GROUP_BY, None)
            for node in key.walk():
                if not isinstance(node, exp.Column):
                    self.check_syntax(node)
            return
        self.walk(key, Clause.GROUP_BY)

    def generalised_column(self, key: exp.Expression) -> exp.Column | None:
        """The column a generalising function reduces, or None when ``key`` is not one."""
        node = unwrap(key)
        p = self.policy
        if isinstance(node, exp.Mul):
            for bin_, width in ((node.this, node.expression), (node.expression, node.this)):
                column = self._bin_column(unwrap(bin_), number_of(width))
                if column is not None:
                    return column
            return None
        column = self._bin_column(node, None)
        if column is not None:
            return column
        if not isinstance(node, exp.Func):
            return None
        target = unwrap(node.this)
        if not isinstance(target, exp.Column):
            return None
        column, name = target, function_name(node)
        others = [k for k, v in node.args.items() if k != "this" and v is not None]
        if name in p.date_parts and not others:
            return column
        if name == "date_trunc":
            unit = node.args.get("unit")
            text = unit.name.lower() if isinstance(unit, (exp.Var, exp.Literal)) else ""
            return column if text in p.date_trunc_units else None
        if name == "left":
            n = number_of(node.args.get("expression"))
            return column if n is not None and 1 <= n <= p.max_prefix else None
        if name in ("substring", "substr"):
            start, length = number_of(node.args.get("start")), number_of(node.args.get("length"))
            ok = start == 1 and length is not None and 1 <= length <= p.max_prefix
            return column if ok else None
        return None

    def _bin_column(self, node: exp.Expression, width: float | None) -> exp.Column | None:
        """``floor(x / W)`` or ``x // W`` with W >= the minimum (and equal to ``width`` if given)."""
        if isinstance(node, exp.Floor) and not node.args.get("decimals"):
            node = unwrap(node.this)
            if not isinstance(node, exp.Div):
                return None
        elif not isinstance(node, exp.IntDiv):
            return None
        column, w = unwrap(node.this), number_of(node.expression)
        if not isinstance(column, exp.Column) or w is None or w < self.policy.min_bin_width:
            return None
        if width is not None and width != w:
            return None
        return column


def compared_with_literal(column: exp.Column) -> bool:
    """Is the column (or an expression of it) compared with a constant?"""
    predicates = (exp.Predicate, exp.In, exp.Between, exp.Like, exp.ILike, exp.Is)
    node: exp.Expr | None = column
    while node is not None and not isinstance(node, (exp.Select, exp.AggFunc)):
        parent = node.parent
        if isinstance(parent, predicates):
            # Another operand made of constants only: a probe of one subject's value.
            others = [c for c in parent.iter_expressions() if c is not node]
            if any(o.find(exp.Column) is None for o in others):
                return True
        node = parent
    return False
