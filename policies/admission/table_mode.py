"""Pass 4 of admission: table mode, the rules for exact outputs (issue 17, item 1).

An exact output is safe only when the questions it answers are the ones a table
builder of a statistical office answers: counts and sums over cells that the
providers declared, never a predicate the operator invents. So, unless the
agreement puts the job in the differential-privacy mode, an admitted query:

* aggregates with COUNT(*), COUNT(column), COUNT(DISTINCT identifier), SUM or
  AVG (AVG is released from its audited COUNT and SUM evidence) over a bare
  column, or over an expression the provider declared as a derived measure in
  the classification (``derived: {monthly_income: income / 12}`` admits
  ``SUM(income / 12)``). CASE, arithmetic and functions inside an aggregate are
  refused (rule ``table_mode_expression``): ``SUM(CASE WHEN <filter> THEN income
  ELSE 0 END)`` is a predicate of the operator's own making;
* never uses MIN, MAX, MEDIAN, quantiles, STDDEV or VARIANCE (rule
  ``table_mode_aggregate``): each can return one member's value or is derived
  from one; counts over declared bins answer the same question;
* groups a column with a declared domain only in its declared form: the plain
  column for a code list (or a range of a dimension), ``year(d)`` for a range of
  years on a quasi column, ``floor(x / w) * w`` for bands of width ``w`` (rule
  ``table_mode_key``);
* filters in WHERE only on such declared forms, compared with declared values
  (=, <>, IN, NOT IN, BETWEEN, <, <=, >, >=, IS [NOT] NULL), combined with AND,
  OR and NOT (rule ``table_mode_filter``): ``birth_date = '1980-05-03'`` singles
  out a day the provider did not declare; ``year(birth_date) = 1980`` is a cell.

A column without a declared domain keeps working: its values in the data are
not a declared domain, so a query grouping or filtering on it is admitted and
its output goes to the output review (:attr:`TableModeReport.undeclared`).
Every refusal says the question belongs to the DP mode, which answers free
questions with noise (docs/disclosure.md, "Table mode").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn, Protocol

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from ..classes import ColumnClass
from ..domains import Bands, Codes, Domain, Range, canonical, declared_values
from ..outputs import OutputColumn, OutputRole
from .naming import aggregate_argument, unwrap_aggregate
from .scope import DIALECT, Clause, TableScope, function_name, number_of, refuse_query, unwrap


class Checker(Protocol):
    """What this module reads of :class:`.checker._Checker` (which calls its rules, so it
    is not imported here)."""

    def resolve(self, column: exp.Column) -> tuple[TableScope, str]: ...
    def class_of(self, column: exp.Column) -> ColumnClass: ...
    def generalised_column(self, key: exp.Expression) -> exp.Column | None: ...


# The aggregate families table mode releases exactly.
TABLE_FAMILIES = frozenset({"count_star", "count", "count_distinct", "sum", "avg"})

DP_MODE = "free questions like this are answered in the DP mode, with noise"
_ORDERING = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


@dataclass(frozen=True)
class TableModeReport:
    """What table mode found about an admitted query."""

    undeclared: tuple[str, ...]  # "dataset.column" grouped or filtered without a domain


def check_table_mode(
    tree: exp.Select,
    checker: Checker,
    keys: list[exp.Expression],
    columns: list[OutputColumn],
) -> TableModeReport:
    """Apply table mode's rules to an admitted, qualified query (see the module)."""
    undeclared: list[str] = []
    _check_aggregates(tree, checker, columns)
    for key in keys:
        _check_key(key, checker, undeclared)
    where = tree.args.get("where")
    if where is not None:
        _check_filter(where.this, checker, undeclared)
    return TableModeReport(tuple(dict.fromkeys(undeclared)))


# --- aggregates ----------------------------------------------------------------------------------


def refuse_aggregate(name: str, subject: str) -> NoReturn:
    """MIN, MAX, MEDIAN, quantiles, STDDEV, VARIANCE: not released exactly."""
    refuse_query(
        "table_mode_aggregate",
        f"{name.upper()} is not released exactly; table mode releases COUNT and SUM (and "
        "AVG from them) only",
        subject=subject,
        hint=f"count over declared bins instead (GROUP BY floor(x / w) * w); {DP_MODE}",
    )


def refuse_expression(name: str, subject: str) -> NoReturn:
    """CASE, arithmetic or a function inside an aggregate, not a declared derived measure."""
    refuse_query(
        "table_mode_expression",
        f"{name.upper()} over an expression (CASE, arithmetic or a function) asks a question "
        "of the query's own making; table mode aggregates bare columns or the derived "
        "measures the provider declared",
        subject=subject,
        hint=f"aggregate a bare measure, or ask the provider to declare it as derived; {DP_MODE}",
    )


def _check_aggregates(tree: exp.Select, checker: Checker, columns: list[OutputColumn]) -> None:
    for projection, column in zip(tree.expressions, columns, strict=True):
        if column.role is not OutputRole.AGGREGATE:
            continue
        family = column.function or ""
        core = unwrap_aggregate(projection.this)
        name = function_name(core).upper() if isinstance(core, exp.Func) else family.upper()
        if family not in TABLE_FAMILIES:
            refuse_aggregate(name, column.name)
        argument = aggregate_argument(core)
        if argument is None:
            continue
        argument = unwrap(argument)
        if isinstance(argument, exp.Column):
            if (
                family == "count_distinct"
                and checker.class_of(argument) is not ColumnClass.IDENTIFIER
            ):
                refuse_query(
                    "table_mode_aggregate",
                    f"column '{column.name}': COUNT(DISTINCT {argument.name}) counts the "
                    "values the data holds; table mode counts entities: COUNT(DISTINCT) of "
                    "an identifier",
                    subject=column.name,
                    hint=f"GROUP BY {argument.name} and COUNT(*) instead; {DP_MODE}",
                )
            continue
        if family in ("sum", "avg", "count") and is_declared_derived(argument, checker):
            continue
        refuse_expression(name, column.name)


def _unqualified(node: exp.Expr) -> str:
    copy = node.copy()
    for column in copy.find_all(exp.Column):
        column.replace(exp.column(column.name))
    return copy.sql(dialect=DIALECT, normalize=True, identify=False).lower()


def is_declared_derived(argument: exp.Expression, checker: Checker) -> bool:
    """Is ``argument`` one of the derived measures declared by the table its columns read?"""
    owners = {}
    for column in argument.find_all(exp.Column):
        table, _name = checker.resolve(column)
        owners[table.name] = table
    if len(owners) != 1:
        return False
    [table] = owners.values()
    text = _unqualified(argument)
    for declared in table.classification.derived.values():
        try:
            parsed = sqlglot.parse_one(declared, read=DIALECT)
        except SqlglotError:
            continue
        if _unqualified(parsed) == text:
            return True
    return False


# --- keys and filters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Form:
    """A key or filter operand in a declared form: the column, its domain, the form."""

    table: TableScope
    column: str
    domain: Domain | None
    declared: bool  # the expression is the domain's declared form


def _form(node: exp.Expression, checker: Checker) -> _Form | None:
    """The declared-form reading of ``node``, or None when it reads no single column."""
    node = unwrap(node)
    columns = list(node.find_all(exp.Column))
    if len(columns) != 1:
        return None
    [column] = columns
    table, name = checker.resolve(column)
    domain = table.classification.domains.get(name)
    cls = checker.class_of(column)
    declared = False
    if isinstance(domain, Codes) or (isinstance(domain, Range) and cls is not ColumnClass.QUASI):
        declared = isinstance(node, exp.Column)
    elif isinstance(domain, Range):
        declared = isinstance(node, exp.Year) and unwrap(node.this) == column
    elif isinstance(domain, Bands):
        width = domain.width
        bin_column = checker.generalised_column(node)
        declared = (
            width is not None
            and domain.edges[0] % width == 0
            and bin_column is not None
            and isinstance(node, exp.Mul)
            and _bin_width(node) == width
        )
    return _Form(table, name, domain, declared)


def _bin_width(node: exp.Mul) -> float | None:
    for side in (node.this, node.expression):
        value = number_of(unwrap(side))
        if value is not None:
            return value
    return None


def _describe_form(domain: Domain, name: str) -> str:
    if isinstance(domain, Codes):
        return f"the plain column {name} (a declared code list)"
    if isinstance(domain, Range):
        return f"year({name}) (a declared range of years; the plain column if it holds integers)"
    width = domain.width
    if width is None:
        return f"no SQL form: the bands of {name} are of unequal widths"
    return f"floor({name} / {width}) * {width} (declared bands of width {width})"


def _check_key(key: exp.Expression, checker: Checker, undeclared: list[str]) -> None:
    form = _form(key, checker)
    if form is None:
        refuse_query(
            "table_mode_key",
            "a group key of table mode reads exactly one column",
            subject=key.sql(dialect=DIALECT),
            hint=DP_MODE,
        )
    if form.domain is None:
        undeclared.append(f"{form.table.name}.{form.column}")
        return
    if not form.declared:
        refuse_query(
            "table_mode_key",
            f"group key {key.sql(dialect=DIALECT)} is not the declared form of "
            f"{form.column}: {_describe_form(form.domain, form.column)}",
            subject=form.column,
            hint=f"group by the declared form; {DP_MODE}",
        )


def _check_filter(node: exp.Expression, checker: Checker, undeclared: list[str]) -> None:
    node = unwrap(node)
    if isinstance(node, (exp.And, exp.Or)):
        _check_filter(node.this, checker, undeclared)
        _check_filter(node.expression, checker, undeclared)
        return
    if isinstance(node, exp.Not):
        _check_filter(node.this, checker, undeclared)
        return
    if isinstance(node, exp.Is):
        operand, literals = node.this, [node.expression]
        if not isinstance(unwrap(node.expression), exp.Null):
            _refuse_filter(node, "IS compares with NULL only")
        literals = []
    elif isinstance(node, _ORDERING):
        operand, literals = node.this, [node.expression]
        if _constant(operand) and not _constant(node.expression):
            operand, literals = node.expression, [node.this]
    elif isinstance(node, exp.In):
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            _refuse_filter(node, "IN takes a list of constants")
        operand, literals = node.this, list(node.expressions)
    elif isinstance(node, exp.Between):
        operand, literals = node.this, [node.args["low"], node.args["high"]]
    else:
        _refuse_filter(node, f"{node.key.upper()} is not a comparison with declared values")
    if not all(_constant(v) for v in literals):
        _refuse_filter(node, "a filter compares a declared column with constants only")
    form = _form(operand, checker)
    if form is None:
        _refuse_filter(node, "a filter reads exactly one column")
    if form.domain is None:
        undeclared.append(f"{form.table.name}.{form.column}")
        return
    if not form.declared:
        refuse_query(
            "table_mode_filter",
            f"the filter {node.sql(dialect=DIALECT)} reads {form.column} in a form that is "
            f"not declared: {_describe_form(form.domain, form.column)}",
            subject=form.column,
            hint=f"filter on the declared form with declared values; {DP_MODE}",
        )
    allowed = {canonical(v) for v in declared_values(form.domain)}
    for literal in literals:
        text = _literal_text(literal)
        if text not in allowed:
            refuse_query(
                "table_mode_filter",
                f"the filter {node.sql(dialect=DIALECT)} compares {form.column} with {text}, "
                f"which is not one of its declared values",
                subject=form.column,
                hint=f"compare with declared values only; {DP_MODE}",
            )


def _refuse_filter(node: exp.Expression, why: str) -> NoReturn:
    refuse_query(
        "table_mode_filter",
        f"the filter {node.sql(dialect=DIALECT)} is not admitted in table mode: {why}",
        subject=Clause.WHERE.value,
        hint="filter with =, IN, BETWEEN or a comparison of a declared column (or its "
        f"declared form) with declared values; {DP_MODE}",
    )


def _constant(node: exp.Expression) -> bool:
    node = unwrap(node)
    while isinstance(node, (exp.Cast, exp.TryCast)):
        node = unwrap(node.this)
    if isinstance(node, exp.Neg):
        node = unwrap(node.this)
    return isinstance(node, (exp.Literal, exp.Boolean))


def _literal_text(node: exp.Expression) -> str:
    node = unwrap(node)
    while isinstance(node, (exp.Cast, exp.TryCast)):
        node = unwrap(node.this)
    negative = isinstance(node, exp.Neg)
    if negative:
        node = unwrap(node.this)
    if isinstance(node, exp.Boolean):
        return canonical(bool(node.this))
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return str(node.this)
    number = float(node.this)
    return canonical(-number if negative else number)
