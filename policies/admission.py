"""Static admission of an operator's SQL: only aggregate cells may leave (Art. 15).

Operators analyse raw data they never see. Before a query runs, this module
parses it (sqlglot, DuckDB dialect), resolves every column against the scope
granted to the operator, and checks each use of each column against its class
(``policies.classes``). Everything not explicitly allowed is refused: default
deny. The allow-lists (aggregates, scalar functions, syntax, generalisers) are
data, in ``policies/sql_functions.yaml``.

Each refusal is a :class:`~policies.errors.PolicyRefusal` whose ``rule`` is one
of these stable names, whose message names the column, function or clause and
the article, and which never echoes a literal value of the query:

``parse_error`` ``statement`` ``single_select`` ``table_function``
``unknown_table`` ``unknown_column`` ``column_not_granted`` ``join``
``window`` ``limit`` ``order_by`` ``aggregate_filter`` ``aggregate_context``
``row_level`` ``distinct`` ``output_name`` ``output_expression``
``member_aggregate`` ``aggregate_not_allowed`` ``aggregate_not_granted``
``aggregate_expression`` ``identifier_literal`` ``identifier_use``
``measure_outside_aggregate`` ``quasi_generalisation`` ``function_not_allowed``
``group_key_not_in_output``

Decisions worth knowing:

* SUM/AVG (and granted MIN, MAX, ...) over a dimension, quasi or public column
  are admitted: the cell gets the same evidence and output checks as any
  magnitude, so refusing would buy no protection. Only identifiers are refused
  inside aggregates other than COUNT / COUNT(DISTINCT).
* Every GROUP BY key must also be an output column (``group_key_not_in_output``):
  the evidence rewrite (``jobs.sql_evidence``) joins each visible row to its
  evidence on the group keys, and a hidden key would also split cells silently.
* An output column is a group key, or one allowed aggregate optionally wrapped
  in ``round(.., n)`` or ``CAST``; combinations of aggregates
  (``SUM(a) / SUM(b)``) are refused (``output_expression``) because their cells
  have no single evidence.
* ``SELECT DISTINCT`` over dimension or public columns is rewritten to
  ``GROUP BY`` of them, so its rows get contributor counts like any group.
* ORDER BY may only name output columns (by alias, position or the same
  expression); it is rewritten to the output names.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from .classes import Classification, ColumnClass, did_you_mean
from .errors import ConfigError, PolicyRefusal
from .outputs import EVIDENCE_PREFIX, OutputColumn, OutputRole, OutputSpec

ARTICLE = "Art. 15"
DIALECT = "duckdb"
FUNCTIONS_FILE = Path(__file__).with_name("sql_functions.yaml")

# Extra aggregate families a scope may grant (QueryScope.extra_aggregates).
GRANTABLE_FAMILIES = frozenset({"min", "max", "median", "quantile", "stddev", "variance"})


@dataclass(frozen=True)
class TableScope:
    """One table the operator may query, with its classification and granted columns."""

    name: str
    classification: Classification
    columns: frozenset[str] | None = None  # None = every classified column


@dataclass(frozen=True)
class QueryScope:
    """What one operator's query may touch and which extra aggregates it may use."""

    tables: Mapping[str, TableScope]
    extra_aggregates: frozenset[str] = frozenset()
    aggregate_expressions: bool = False


@dataclass(frozen=True)
class AdmittedQuery:
    """A query that passed admission, normalised and described."""

    sql: str
    tree: exp.Select
    spec: OutputSpec
    tables: tuple[str, ...]


class Clause(StrEnum):
    SELECT = "SELECT"
    WHERE = "WHERE"
    JOIN = "JOIN ... ON"
    GROUP_BY = "GROUP BY"
    HAVING = "HAVING"
    ORDER_BY = "ORDER BY"


@dataclass(frozen=True)
class FunctionPolicy:
    """The allow-lists of ``sql_functions.yaml``."""

    base: frozenset[str]
    grantable: Mapping[str, str]
    member_value: frozenset[str]
    other: frozenset[str]
    scalar: frozenset[str]
    syntax: frozenset[str]
    date_parts: frozenset[str]
    date_trunc_units: frozenset[str]
    min_bin_width: float
    max_prefix: int

    @property
    def aggregate_names(self) -> frozenset[str]:
        return self.base | set(self.grantable) | self.member_value | self.other


@functools.cache
def load_function_policy(path: Path = FUNCTIONS_FILE) -> FunctionPolicy:
    """Read and validate the allow-lists (cached: the file is part of the release)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        aggs, gen = data["aggregates"], data["generalisers"]
        grantable = {str(k).lower(): str(v) for k, v in aggs["grantable"].items()}
        policy = FunctionPolicy(
            base=frozenset(aggs["base"]),
            grantable=grantable,
            member_value=frozenset(aggs["member_value"]),
            other=frozenset(aggs["other"]),
            scalar=frozenset(data["scalar_functions"]),
            syntax=frozenset(data["syntax"]),
            date_parts=frozenset(gen["date_parts"]),
            date_trunc_units=frozenset(gen["date_trunc_units"]),
            min_bin_width=float(gen["min_bin_width"]),
            max_prefix=int(gen["max_prefix"]),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot read the SQL allow-lists in {path}: {exc}") from exc
    unknown = set(grantable.values()) - GRANTABLE_FAMILIES
    if unknown:
        raise ConfigError(f"unknown aggregate family in {path}: {sorted(unknown)[0]}")
    return policy


def _refuse(
    rule: str, message: str, *, subject: str | None = None, hint: str | None = None
) -> NoReturn:
    raise PolicyRefusal(rule, f"{message} ({ARTICLE})", article=ARTICLE, subject=subject, hint=hint)


def _arg(node: exp.Expression, name: str):
    """An arg of a node; sqlglot 30 spells some with a trailing underscore (``from_``)."""
    value = node.args.get(name)
    return value if value is not None else node.args.get(name + "_")


def _strip(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _key(node: exp.Expression) -> str:
    """A canonical text of an expression, to compare group keys and outputs."""
    return _strip(node).sql(dialect=DIALECT)


def function_name(node: exp.Expression) -> str:
    """The lower-case SQL name of a function node as DuckDB spells it."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    match = re.match(r"\s*([A-Za-z_][A-Za-z_0-9]*)\s*\(", node.sql(dialect=DIALECT))
    return match.group(1).lower() if match else node.key


def _number(node: exp.Expression | None) -> float | None:
    node = _strip(node) if node is not None else None
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- parsing


def _parse(sql: str) -> exp.Select:
    """Exactly one SELECT statement, or a refusal."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as exc:
        where = ""
        if exc.errors:
            first = exc.errors[0]
            where = f" at line {first.get('line')}, column {first.get('col')}"
            desc = str(first.get("description") or "syntax error").split("\n")[0]
            where = f"{where}: {desc}"
        _refuse("parse_error", f"the query could not be parsed{where}", subject="sql")
    except SqlglotError:
        _refuse("parse_error", "the query could not be parsed (unterminated string or bad token)")
    if not statements:
        _refuse("parse_error", "the query is empty", hint="write one SELECT statement")
    if len(statements) > 1:
        _refuse(
            "statement",
            f"only one SELECT statement is admitted, found {len(statements)} statements",
            subject="statement",
            hint="remove the ';' and submit one SELECT",
        )
    tree = statements[0]
    if isinstance(tree, exp.SetOperation):
        _refuse(
            "single_select",
            f"{tree.key.upper()} of several SELECTs is not admitted",
            subject=tree.key.upper(),
            hint="submit each aggregate as its own query",
        )
    if isinstance(tree, exp.Subquery):
        _refuse(
            "single_select", "a parenthesised or nested SELECT is not admitted", subject="subquery"
        )
    if not isinstance(tree, exp.Select):
        kind = str(tree.this).upper() if isinstance(tree, exp.Command) else tree.key.upper()
        _refuse(
            "statement",
            f"only SELECT statements are admitted, not {kind}",
            subject=kind,
            hint="the sandbox reads the granted tables for you; submit one aggregate SELECT",
        )
    return tree


def _check_shape(tree: exp.Select, scope: QueryScope) -> list[exp.Table]:
    """Structural rules that need no column classes. Returns the tables in FROM/JOIN order."""
    if _arg(tree, "with"):
        _refuse(
            "single_select",
            "a WITH clause (common table expression) is not admitted",
            subject="WITH",
            hint="write one SELECT over the granted tables",
        )
    for node in tree.walk():
        if node is tree:
            continue
        if isinstance(node, (exp.Select, exp.Subquery, exp.SetOperation, exp.With)):
            _refuse(
                "single_select",
                "subqueries are not admitted (in FROM, WHERE or SELECT)",
                subject="subquery",
                hint="write one SELECT over the granted tables",
            )
    for node in tree.walk():
        if isinstance(node, exp.Window):
            _refuse("window", "window functions (OVER) are not admitted", subject="OVER")
        if isinstance(node, (exp.Limit, exp.Offset, exp.Fetch)):
            _refuse(
                "limit",
                f"{node.key.upper()} is not admitted: it selects single rows",
                subject=node.key.upper(),
                hint="the whole aggregate result is returned after the output check",
            )
        if isinstance(node, exp.TableSample):
            _refuse("limit", "SAMPLE / TABLESAMPLE is not admitted", subject="SAMPLE")
        if isinstance(node, exp.Filter):
            _refuse(
                "aggregate_filter",
                "the FILTER clause on aggregates is not admitted",
                subject="FILTER",
                hint="filter rows in WHERE, or group by the filtering dimension",
            )
        if isinstance(node, (exp.Lateral, exp.Unnest, exp.Values, exp.Pivot)):
            _refuse(
                "table_function", f"{node.key.upper()} is not admitted in FROM", subject=node.key
            )
    if _arg(tree, "qualify"):
        _refuse("window", "QUALIFY is not admitted", subject="QUALIFY")
    if _arg(tree, "windows"):
        _refuse("window", "named windows are not admitted", subject="WINDOW")
    if _arg(tree, "sample"):
        _refuse("limit", "SAMPLE is not admitted", subject="SAMPLE")
    for node in tree.expressions:
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and node.is_star):
            _refuse(
                "row_level",
                "SELECT * returns rows, not aggregates",
                subject="*",
                hint="select aggregates (COUNT, SUM, AVG) and group keys",
            )
    from_ = _arg(tree, "from")
    if from_ is None:
        _refuse(
            "unknown_table", "the query reads no table", subject="FROM", hint="add FROM <table>"
        )
    tables = [from_.this]
    for join in _arg(tree, "joins") or []:
        _check_join_kind(join)
        tables.append(join.this)
    for table in tables:
        _check_table(table, scope)
    return tables


def _check_join_kind(join: exp.Join) -> None:
    side = (join.side or "").upper()
    kind = (join.kind or "").upper()
    method = (join.method or "").upper() if join.args.get("method") else ""
    label = " ".join(p for p in (method, side, kind) if p) or "comma"
    if method or side not in ("", "LEFT") or kind not in ("", "INNER", "OUTER"):
        _refuse(
            "join",
            f"{label} JOIN is not admitted",
            subject="JOIN",
            hint="use [INNER | LEFT] JOIN ... ON a.key = b.key or USING (key)",
        )
    if not join.args.get("on") and not join.args.get("using"):
        _refuse(
            "join",
            f"a {label} join without ON or USING is a cross join and is not admitted",
            subject="JOIN",
            hint="join on column equality: JOIN ... ON a.key = b.key",
        )


def _check_table(table: exp.Expression, scope: QueryScope) -> None:
    if not isinstance(table, exp.Table):
        _refuse("table_function", f"{table.key.upper()} is not admitted in FROM", subject=table.key)
    if not isinstance(table.this, exp.Identifier):
        name = function_name(table.this) if isinstance(table.this, exp.Func) else table.this.key
        _refuse(
            "table_function",
            f"table function {name} is not admitted in FROM",
            subject=name,
            hint="read the granted tables by name: " + ", ".join(sorted(scope.tables)),
        )
    name = table.name
    if any(ch in name for ch in "./\\:") and name not in scope.tables:
        _refuse(
            "table_function",
            "reading a file path in FROM is not admitted",
            subject="FROM",
            hint="read the granted tables by name: " + ", ".join(sorted(scope.tables)),
        )
    if table.args.get("db") or table.args.get("catalog") or name not in scope.tables:
        shown = name if name.isidentifier() else "the table"
        _refuse(
            "unknown_table",
            f"table '{shown}' is not in the scope granted to this job",
            subject=shown,
            hint=did_you_mean(name, scope.tables),
        )


# --------------------------------------------------------------------------- outputs


def _derived_name(node: exp.Expression, position: int) -> str:
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, exp.Count):
        inner = node.this
        if isinstance(inner, exp.Star):
            return "count"
        if isinstance(inner, exp.Distinct) and len(inner.expressions) == 1:
            col = inner.expressions[0]
            if isinstance(col, exp.Column):
                return f"count_distinct_{col.name}"
    if isinstance(node, exp.Func) and isinstance(node.this, exp.Column):
        return f"{function_name(node)}_{node.this.name}"
    return f"col{position + 1}"


def _name_outputs(tree: exp.Select) -> None:
    """Give every projection an explicit alias; refuse duplicate or reserved names."""
    seen: set[str] = set()
    for position, node in enumerate(list(tree.expressions)):
        if isinstance(node, exp.Alias):
            name = node.alias.lower() if not node.args["alias"].quoted else node.alias
            if name in seen:
                _refuse(
                    "output_name",
                    f"the output name '{name}' is used twice",
                    subject=name,
                    hint="give each output column its own name",
                )
        else:
            name = _derived_name(node, position).lower()
            if name in seen:
                name = f"{name}_{position + 1}"
            node.replace(exp.alias_(node.copy(), name, quoted=True))
        if name.startswith(EVIDENCE_PREFIX):
            _refuse(
                "output_name",
                f"output names may not start with '{EVIDENCE_PREFIX}' (reserved for evidence)",
                subject=name,
            )
        seen.add(name)


def _expand_group_by_all(tree: exp.Select) -> None:
    group = _arg(tree, "group")
    if group is None or not group.args.get("all"):
        return
    keys = [p.this.copy() for p in tree.expressions if not _has_aggregate_like(p.this)]
    tree.set("group", exp.Group(expressions=keys) if keys else None)


def _has_aggregate_like(node: exp.Expression) -> bool:
    policy = load_function_policy()
    return any(_is_aggregate(n, policy) for n in node.walk())


def _is_aggregate(node: exp.Expression, policy: FunctionPolicy) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and str(node.name).lower() in policy.aggregate_names


def unwrap_aggregate(node: exp.Expression) -> exp.Expression:
    """The aggregate call of an output column: through parentheses, round(.., n) and CAST."""
    node = _strip(node)
    while True:
        if isinstance(node, exp.Round) and (
            node.args.get("decimals") is None or _number(node.args["decimals"]) is not None
        ):
            node = _strip(node.this)
        elif isinstance(node, (exp.Cast, exp.TryCast)):
            node = _strip(node.this)
        else:
            return node


def aggregate_argument(agg: exp.Expression) -> exp.Expression | None:
    """The argument an admitted aggregate aggregates (None for COUNT(*))."""
    if isinstance(agg, exp.Count):
        inner = agg.this
        if isinstance(inner, exp.Star) or inner is None:
            return None
        if isinstance(inner, exp.Distinct):
            return inner.expressions[0]
        return inner
    return agg.this


# --------------------------------------------------------------------------- the checker


class _Checker:
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
                _refuse(
                    "unknown_column",
                    f"column '{name}' is ambiguous: it is in " + ", ".join(sorted(set(owners))),
                    subject=name,
                    hint=f"qualify it, e.g. {sorted(set(owners))[0]}.{name}",
                )
            _refuse(
                "unknown_column",
                f"column '{name}' is not a column of the tables in this query",
                subject=name,
                hint=did_you_mean(name, known),
            )
        if table.columns is not None and name not in table.columns:
            _refuse(
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
        if agg is None and clause is not Clause.WHERE and _key(node) in self.group_keys:
            return  # a group key, checked once by check_group_key
        if _is_aggregate(node, self.policy):
            if agg is not None:
                _refuse("aggregate_expression", "an aggregate inside an aggregate is not admitted")
            if clause in (Clause.WHERE, Clause.JOIN, Clause.GROUP_BY):
                _refuse(
                    "aggregate_context",
                    f"aggregates are not admitted in {clause.value}",
                    subject=clause.value,
                    hint="use aggregates in SELECT or HAVING",
                )
            self.check_aggregate(node)
            return
        if isinstance(node, exp.Column):
            self.check_column(node, clause, agg)
            return
        self.check_syntax(node)
        for child in node.iter_expressions():
            self.walk(child, clause, agg)

    def check_syntax(self, node: exp.Expression) -> None:
        # Operators first: sqlglot models some of them (AND, OR) as functions too.
        if node.key in self.policy.syntax and not isinstance(node, exp.Anonymous):
            return
        name = function_name(node) if isinstance(node, exp.Func) else node.key
        if name in self.policy.scalar:
            return
        _refuse(
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
            _refuse(
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
        _refuse(
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
        if _compared_with_literal(column):
            _refuse(
                "identifier_literal",
                f"{name} is an identifier and may not be compared with a constant (in {clause.value})",
                subject=name,
                hint="single subjects may not be singled out; group by dimensions instead",
            )
        _refuse(
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
                    _refuse("aggregate_expression", "COUNT(DISTINCT ..) takes exactly one column")
                family, arg = "count_distinct", inner.expressions[0]
            else:
                family, arg = "count", inner
            extras = list(node.expressions)
        else:
            if name in self.policy.member_value:
                _refuse(
                    "member_aggregate",
                    f"aggregate {name} returns values of single members and is not admitted",
                    subject=name,
                    hint=f"use {self.allowed_aggregates()}",
                )
            if name in self.policy.base:
                family = name
            elif name in self.policy.grantable:
                family = self.policy.grantable[name]
                if family not in self.scope.extra_aggregates:
                    _refuse(
                        "aggregate_not_granted",
                        f"aggregate {name} needs the grant '{family}', which this job does not have",
                        subject=name,
                        hint=f"ask for the '{family}' grant, or use {self.allowed_aggregates()}",
                    )
            else:
                _refuse(
                    "aggregate_not_allowed",
                    f"aggregate {name} is not on the allow list (default deny)",
                    subject=name,
                    hint=f"use {self.allowed_aggregates()}",
                )
            arg = node.this
            extras = [
                v for k, v in node.args.items() if k != "this" and isinstance(v, exp.Expression)
            ] + [v for v in node.args.get("expressions") or [] if isinstance(v, exp.Expression)]
            if isinstance(arg, exp.Distinct):
                _refuse(
                    "aggregate_not_allowed",
                    f"DISTINCT inside {name} is not admitted; DISTINCT is only allowed in COUNT",
                    subject=name,
                )
            if family == "quantile":
                if len(extras) != 1 or _number(extras[0]) is None:
                    _refuse(
                        "aggregate_expression",
                        f"{name} takes one column and one constant fraction",
                        subject=name,
                    )
                extras = []
        if extras or arg is None:
            _refuse("aggregate_expression", f"{name} takes exactly one column", subject=name)
        if isinstance(arg, exp.Column):
            if self.class_of(arg) is ColumnClass.IDENTIFIER and family not in (
                "count",
                "count_distinct",
            ):
                _refuse(
                    "identifier_use",
                    f"{arg.name} is an identifier: it may only be counted, not used in {name}",
                    subject=arg.name,
                    hint=f"use COUNT(DISTINCT {arg.name})",
                )
            return family
        # An expression: its columns first (so attacks get their own rule), then the grant.
        self.walk(arg, Clause.SELECT, agg=family)
        if not self.scope.aggregate_expressions:
            _refuse(
                "aggregate_expression",
                f"{name} over an expression is not granted; aggregates take one column",
                subject=name,
                hint="aggregate a bare column (COUNT(*) is always fine), "
                "or ask for the 'expressions' grant",
            )
        return family

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
        node = _strip(key)
        p = self.policy
        if isinstance(node, exp.Mul):
            for bin_, width in ((node.this, node.expression), (node.expression, node.this)):
                column = self._bin_column(_strip(bin_), _number(width))
                if column is not None:
                    return column
            return None
        column = self._bin_column(node, None)
        if column is not None:
            return column
        if not isinstance(node, exp.Func) or not isinstance(_strip(node.this), exp.Column):
            return None
        column, name = _strip(node.this), function_name(node)
        others = [k for k, v in node.args.items() if k != "this" and v is not None]
        if name in p.date_parts and not others:
            return column
        if name == "date_trunc":
            unit = node.args.get("unit")
            text = unit.name.lower() if isinstance(unit, (exp.Var, exp.Literal)) else ""
            return column if text in p.date_trunc_units else None
        if name == "left":
            n = _number(node.args.get("expression"))
            return column if n is not None and 1 <= n <= p.max_prefix else None
        if name in ("substring", "substr"):
            start, length = _number(node.args.get("start")), _number(node.args.get("length"))
            ok = start == 1 and length is not None and 1 <= length <= p.max_prefix
            return column if ok else None
        return None

    def _bin_column(self, node: exp.Expression, width: float | None) -> exp.Column | None:
        """``floor(x / W)`` or ``x // W`` with W >= the minimum (and equal to ``width`` if given)."""
        if isinstance(node, exp.Floor) and not node.args.get("decimals"):
            node = _strip(node.this)
            if not isinstance(node, exp.Div):
                return None
        elif not isinstance(node, exp.IntDiv):
            return None
        column, w = _strip(node.this), _number(node.expression)
        if not isinstance(column, exp.Column) or w is None or w < self.policy.min_bin_width:
            return None
        if width is not None and width != w:
            return None
        return column


def _compared_with_literal(column: exp.Column) -> bool:
    """Is the column (or an expression of it) compared with a constant?"""
    predicates = (exp.Predicate, exp.In, exp.Between, exp.Like, exp.ILike, exp.Is)
    node: exp.Expression | None = column
    while node is not None and not isinstance(node, (exp.Select, exp.AggFunc)):
        parent = node.parent
        if isinstance(parent, predicates):
            # Another operand made of constants only: a probe of one subject's value.
            others = [c for c in parent.iter_expressions() if c is not node]
            if any(o.find(exp.Column) is None for o in others):
                return True
        node = parent
    return False


# --------------------------------------------------------------------------- grouping


def _group_sets(group: exp.Group | None) -> tuple[list[exp.Expression], list[list[str]]]:
    """The distinct key expressions (GROUP BY order) and the grouping sets as key texts."""
    if group is None:
        return [], [[]]
    keys: dict[str, exp.Expression] = {}

    def add(node: exp.Expression) -> list[str]:
        node = _strip(node) if not isinstance(node, exp.Tuple) else node
        if isinstance(node, exp.Tuple):
            return [k for e in node.expressions for k in add(e)]
        text = _key(node)
        keys.setdefault(text, node)
        return [text]

    factors: list[list[list[str]]] = []
    elements = list(group.expressions)
    for arg in ("rollup", "cube", "grouping_sets"):
        value = group.args.get(arg)
        if isinstance(value, list):
            elements.extend(value)
        elif isinstance(value, exp.Expression):
            elements.append(value)
    for element in elements:
        if isinstance(element, exp.Rollup):
            parts = [add(e) for e in element.expressions]
            factors.append([sum(parts[:i], []) for i in range(len(parts), -1, -1)])
        elif isinstance(element, exp.Cube):
            parts = [add(e) for e in element.expressions]
            subsets = []
            for size in range(len(parts), -1, -1):
                for combo in itertools.combinations(parts, size):
                    subsets.append(sum(combo, []))
            factors.append(subsets)
        elif isinstance(element, exp.GroupingSets):
            factors.append([add(e) for e in element.expressions])
        else:
            factors.append([add(element)])
    sets = [[]]
    for factor in factors:
        sets = [a + b for a in sets for b in factor]
    return list(keys.values()), sets


# --------------------------------------------------------------------------- admit


def admit(sql: str, scope: QueryScope) -> AdmittedQuery:
    """Admit one aggregate SELECT over the scope, or raise :class:`PolicyRefusal`."""
    policy = load_function_policy()
    tree = _parse(sql)
    _check_shape(tree, scope)
    _name_outputs(tree)
    _expand_group_by_all(tree)
    schema = {
        ts.name: {c: "VARCHAR" for c in ts.classification.columns} for ts in scope.tables.values()
    }
    try:
        tree = qualify(
            tree,
            schema=schema,
            dialect=DIALECT,
            validate_qualify_columns=False,
            quote_identifiers=True,
        )
    except SqlglotError:
        _refuse("parse_error", "the query's columns could not be resolved", subject="sql")
    aliases: dict[str, TableScope] = {}
    table_names: list[str] = []
    for table in [_arg(tree, "from").this] + [j.this for j in _arg(tree, "joins") or []]:
        aliases[table.alias_or_name] = scope.tables[table.name]
        if table.name not in table_names:
            table_names.append(table.name)
    checker = _Checker(scope, policy, aliases)
    for column in tree.find_all(exp.Column):
        if column.find_ancestor(exp.Order) is None:  # ORDER BY may name outputs: see _check_order
            checker.resolve(column)
    _distinct_to_group_by(tree, checker)
    for join in _arg(tree, "joins") or []:
        _check_join_condition(join, checker)
    where = _arg(tree, "where")
    if where is not None:
        checker.walk(where.this, Clause.WHERE)
    keys, sets = _group_sets(_arg(tree, "group"))
    for key in keys:
        checker.check_group_key(key)
        checker.group_keys[_key(key)] = key
    columns = _check_outputs(tree, checker, keys)
    having = _arg(tree, "having")
    if having is not None:
        checker.walk(having.this, Clause.HAVING)
    _check_order(tree, checker)
    key_names = _key_names(tree, keys)
    group_keys = tuple(key_names[_key(k)] for k in keys)
    grouping_sets: list[tuple[str, ...]] = []
    for s in sets:
        names = tuple(key_names[k] for k in dict.fromkeys(s))
        ordered = tuple(n for n in group_keys if n in names)
        if ordered not in grouping_sets:
            grouping_sets.append(ordered)
    spec = OutputSpec(
        columns=tuple(columns),
        group_keys=group_keys,
        grouping_sets=tuple(grouping_sets),
        entity_tables=(table_names[0],),
    )
    return AdmittedQuery(
        sql=tree.sql(dialect=DIALECT), tree=tree, spec=spec, tables=tuple(table_names)
    )


def _distinct_to_group_by(tree: exp.Select, checker: _Checker) -> None:
    distinct = tree.args.get("distinct")
    if distinct is None:
        return
    if distinct.args.get("on") is not None or _arg(tree, "group") is not None:
        _refuse(
            "distinct",
            "DISTINCT ON, or DISTINCT with GROUP BY, is not admitted",
            subject="DISTINCT",
        )
    keys = []
    for projection in tree.expressions:
        inner = _strip(projection.this)
        if not isinstance(inner, exp.Column):
            _refuse(
                "distinct",
                "SELECT DISTINCT is admitted only over plain dimension or public columns",
                subject=projection.alias,
                hint="use GROUP BY with aggregates instead",
            )
        cls = checker.class_of(inner)
        if cls not in (ColumnClass.DIMENSION, ColumnClass.PUBLIC):
            _refuse(
                "distinct",
                f"SELECT DISTINCT over {inner.name} ({cls.value}) would list its values",
                subject=inner.name,
                hint="SELECT DISTINCT is admitted only over dimension or public columns",
            )
        keys.append(inner.copy())
    tree.set("distinct", None)
    tree.set("group", exp.Group(expressions=keys))


def _check_join_condition(join: exp.Join, checker: _Checker) -> None:
    """Equality of columns only, and at least one between identifiers (the entity link).

    A join on dimensions alone (``ON a.sex = b.sex``) multiplies rows across
    entities: every entity would appear to contribute the whole group, which
    hides dominance from the output check. So default deny.
    """
    condition = join.args.get("on")
    parts = list(condition.flatten()) if isinstance(_strip(condition), exp.And) else [condition]
    linked = False
    for part in parts:
        part = _strip(part)
        left, right = (
            (_strip(part.this), _strip(part.expression))
            if isinstance(part, exp.EQ)
            else (None, None)
        )
        if not (
            isinstance(left, exp.Column)
            and isinstance(right, exp.Column)
            and left.table != right.table
        ):
            for column in part.find_all(exp.Column):  # the sharper rules first
                cls = checker.class_of(column)
                if cls is ColumnClass.IDENTIFIER and _compared_with_literal(column):
                    checker.refuse_identifier(column, Clause.JOIN)
                if cls is ColumnClass.MEASURE:
                    checker.check_column(column, Clause.JOIN, None)
            _refuse(
                "join",
                "a join condition may only be equality between columns of two tables",
                subject="JOIN ... ON",
                hint="write JOIN ... ON a.key = b.key [AND ...]; filter in WHERE",
            )
        classes = [checker.class_of(column) for column in (left, right)]
        for column, cls in zip((left, right), classes, strict=True):
            if cls is ColumnClass.MEASURE:
                checker.check_column(column, Clause.JOIN, None)
        linked = linked or classes == [ColumnClass.IDENTIFIER, ColumnClass.IDENTIFIER]
    if not linked:
        _refuse(
            "join",
            "a join must link the tables by equality of identifier columns",
            subject="JOIN ... ON",
            hint="join on the entity keys, e.g. JOIN ... ON a.pid = b.pid; "
            "joins on dimensions alone multiply rows across subjects",
        )


def _check_outputs(
    tree: exp.Select, checker: _Checker, keys: list[exp.Expression]
) -> list[OutputColumn]:
    policy = checker.policy
    has_group = bool(keys)
    has_aggregate = any(_is_aggregate(n, policy) for p in tree.expressions for n in p.this.walk())
    if not has_group and not has_aggregate:
        _refuse(
            "row_level",
            "the query returns single rows, not aggregates",
            subject="SELECT",
            hint="select aggregates (COUNT, SUM, AVG), grouped by dimensions",
        )
    key_names = _key_names(tree, keys)
    missing = [k for k in keys if _key(k) not in key_names]
    if missing:
        _refuse(
            "group_key_not_in_output",
            "every GROUP BY key must also be an output column",
            subject=_describe(missing[0]),
            hint="add the group key to SELECT",
        )
    columns: list[OutputColumn] = []
    for projection in tree.expressions:
        name, inner = projection.alias, projection.this
        text = _key(inner)
        if text in checker.group_keys:
            columns.append(OutputColumn(name, OutputRole.GROUP, group_key=key_names[text]))
            continue
        core = unwrap_aggregate(inner)
        if _is_aggregate(core, policy):
            for node in inner.walk():  # the wrappers: round(.., n), CAST, parentheses
                if node is not core and not _inside(node, core):
                    checker.check_syntax(node)
            family = checker.check_aggregate(core)
            columns.append(OutputColumn(name, OutputRole.AGGREGATE, function=family))
            continue
        checker.walk(inner, Clause.SELECT)
        if any(_is_aggregate(n, policy) for n in inner.walk()):
            _refuse(
                "output_expression",
                f"output column '{name}' combines aggregates or columns",
                subject=name,
                hint="each output column must be one aggregate (optionally in round() or CAST) "
                "or a group key",
            )
        if not list(inner.find_all(exp.Column)):
            _refuse("output_expression", f"output column '{name}' is a constant", subject=name)
        _refuse(
            "row_level",
            f"output column '{name}' is neither an aggregate nor a group key",
            subject=name,
            hint="GROUP BY it (if it is a dimension) or aggregate it",
        )
    return columns


def _inside(node: exp.Expression, ancestor: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _describe(node: exp.Expression) -> str:
    columns = [c.name for c in node.find_all(exp.Column)]
    return columns[0] if columns else "expression"


def _key_names(tree: exp.Select, keys: list[exp.Expression]) -> dict[str, str]:
    """Group key text -> the output name of the first output column equal to it."""
    wanted = {_key(k) for k in keys}
    names: dict[str, str] = {}
    for projection in tree.expressions:
        text = _key(projection.this)
        if text in wanted and text not in names:
            names[text] = projection.alias
    return names


def _check_order(tree: exp.Select, checker: _Checker) -> None:
    order = _arg(tree, "order")
    if order is None:
        return
    outputs = [p.alias for p in tree.expressions]
    by_text = {}
    for projection in tree.expressions:
        by_text.setdefault(_key(projection.this), projection.alias)
    for ordered in order.expressions:
        target = _strip(ordered.this)
        name = None
        position = _number(target)
        if position is not None:
            if position.is_integer() and 1 <= position <= len(outputs):
                name = outputs[int(position) - 1]
        elif isinstance(target, exp.Column) and not target.table and target.name in outputs:
            name = target.name
        elif _key(target) in by_text:
            name = by_text[_key(target)]
        if name is None:
            if isinstance(target, exp.Column) and not target.table:
                hint = did_you_mean(target.name, outputs)
            else:
                checker.walk(target, Clause.ORDER_BY)
                hint = "order by output columns: " + ", ".join(outputs)
            _refuse(
                "order_by",
                "ORDER BY may only name output columns or group keys",
                subject="ORDER BY",
                hint=hint,
            )
        ordered.set("this", exp.column(name, quoted=True))
