"""The pipeline: parse, check the shape, name outputs, check every use, describe the
outputs; and the checks of joins, outputs and ORDER BY that need the whole query."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify

from ..classes import ColumnClass
from ..outputs import OutputColumn, OutputRole, OutputSpec
from ..suggest import did_you_mean
from .checker import Checker, compared_with_literal
from .grouping import group_sets
from .naming import expand_group_by_all, is_aggregate, name_outputs, unwrap_aggregate
from .scope import (
    DIALECT,
    AdmittedQuery,
    Clause,
    FunctionPolicy,
    QueryScope,
    TableScope,
    arg_of,
    key_text,
    load_function_policy,
    number_of,
    refuse_query,
    unwrap,
)
from .shape import check_shape, parse_one_select, refuse_too_deep
from .table_mode import check_table_mode


def admit(sql: str, scope: QueryScope) -> AdmittedQuery:
    """Admit one aggregate SELECT over the scope, or raise :class:`PolicyRefusal`.

    A query too deep for the checker's recursion is refused by rule ``nesting``
    (:func:`.shape.check_nesting` catches it before parsing; this is the backstop).
    """
    try:
        return _admit(sql, scope)
    except RecursionError:
        refuse_too_deep()


def _admit(sql: str, scope: QueryScope) -> AdmittedQuery:
    policy = load_function_policy()
    tree = parse_one_select(sql)
    check_shape(tree, scope)
    name_outputs(tree)
    expand_group_by_all(tree)
    schema: dict[str, object] = {
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
        refuse_query("parse_error", "the query's columns could not be resolved", subject="sql")
    aliases: dict[str, TableScope] = {}
    table_names: list[str] = []
    for table in [arg_of(tree, "from").this] + [j.this for j in arg_of(tree, "joins") or []]:
        aliases[table.alias_or_name] = scope.tables[table.name]
        if table.name not in table_names:
            table_names.append(table.name)
    checker = Checker(scope, policy, aliases)
    for column in tree.find_all(exp.Column):
        if column.find_ancestor(exp.Order) is None:  # ORDER BY may name outputs: see _check_order
            checker.resolve(column)
    _distinct_to_group_by(tree, checker)
    for join in arg_of(tree, "joins") or []:
        _check_join_condition(join, checker)
    where = arg_of(tree, "where")
    if where is not None:
        checker.walk(where.this, Clause.WHERE)
    keys, sets = group_sets(arg_of(tree, "group"))
    for key in keys:
        checker.check_group_key(key)
        checker.group_keys[key_text(key)] = key
    columns = _check_outputs(tree, checker, keys)
    _check_order(tree, checker, columns)
    undeclared: tuple[str, ...] = ()
    if scope.mode == "table":
        undeclared = check_table_mode(tree, checker, keys, columns).undeclared
    key_names = _key_names(tree, keys)
    group_keys = tuple(key_names[key_text(k)] for k in keys)
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
    # What can fail on a value runs so that it cannot (issue 17): after the keys are
    # named by their text, group keys first (they are matched by the text as written).
    _keys_never_fail(tree, checker, keys)
    _casts_never_fail(tree)
    _errors_are_null(tree, policy)
    return AdmittedQuery(
        sql=tree.sql(dialect=DIALECT),
        tree=tree,
        spec=spec,
        tables=tuple(table_names),
        undeclared=undeclared,
    )


def _distinct_to_group_by(tree: exp.Select, checker: Checker) -> None:
    distinct = tree.args.get("distinct")
    if distinct is None:
        return
    if distinct.args.get("on") is not None or arg_of(tree, "group") is not None:
        refuse_query(
            "distinct",
            "DISTINCT ON, or DISTINCT with GROUP BY, is not admitted",
            subject="DISTINCT",
        )
    keys = []
    for projection in tree.expressions:
        inner = unwrap(projection.this)
        if not isinstance(inner, exp.Column):
            refuse_query(
                "distinct",
                "SELECT DISTINCT is admitted only over plain dimension or public columns",
                subject=projection.alias,
                hint="use GROUP BY with aggregates instead",
            )
        cls = checker.class_of(inner)
        if cls not in (ColumnClass.DIMENSION, ColumnClass.PUBLIC):
            refuse_query(
                "distinct",
                f"SELECT DISTINCT over {inner.name} ({cls.value}) would list its values",
                subject=inner.name,
                hint="SELECT DISTINCT is admitted only over dimension or public columns",
            )
        keys.append(inner.copy())
    tree.set("distinct", None)
    tree.set("group", exp.Group(expressions=keys))


def _check_join_condition(join: exp.Join, checker: Checker) -> None:
    """Equality of columns only, and at least one between identifiers (the entity link).

    A join on dimensions alone (``ON a.sex = b.sex``) multiplies rows across
    entities: every entity would appear to contribute the whole group, which
    hides dominance from the output check. So default deny.
    """
    condition = join.args.get("on")
    # qualify() has rewritten USING as ON, and a join with neither was refused (shape)
    assert condition is not None
    parts = list(condition.flatten()) if isinstance(unwrap(condition), exp.And) else [condition]
    linked = False
    for part in parts:
        part = unwrap(part)
        left, right = (
            (unwrap(part.this), unwrap(part.expression))
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
                if cls is ColumnClass.IDENTIFIER and compared_with_literal(column):
                    checker.refuse_identifier(column, Clause.JOIN)
                if cls is ColumnClass.MEASURE:
                    checker.check_column(column, Clause.JOIN, None)
            refuse_query(
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
        refuse_query(
            "join",
            "a join must link the tables by equality of identifier columns",
            subject="JOIN ... ON",
            hint="join on the entity keys, e.g. JOIN ... ON a.pid = b.pid; "
            "joins on dimensions alone multiply rows across subjects",
        )


def _check_outputs(
    tree: exp.Select, checker: Checker, keys: list[exp.Expression]
) -> list[OutputColumn]:
    policy = checker.policy
    has_group = bool(keys)
    has_aggregate = any(is_aggregate(n, policy) for p in tree.expressions for n in p.this.walk())
    if not has_group and not has_aggregate:
        refuse_query(
            "row_level",
            "the query returns single rows, not aggregates",
            subject="SELECT",
            hint="select aggregates (COUNT, SUM, AVG), grouped by dimensions",
        )
    key_names = _key_names(tree, keys)
    missing = [k for k in keys if key_text(k) not in key_names]
    if missing:
        refuse_query(
            "group_key_not_in_output",
            "every GROUP BY key must also be an output column",
            subject=_describe(missing[0]),
            hint="add the group key to SELECT",
        )
    columns: list[OutputColumn] = []
    for projection in tree.expressions:
        name, inner = projection.alias, projection.this
        text = key_text(inner)
        if text in checker.group_keys:
            columns.append(OutputColumn(name, OutputRole.GROUP, group_key=key_names[text]))
            continue
        core = unwrap_aggregate(inner)
        if is_aggregate(core, policy):
            for node in inner.walk():  # the wrappers: round(.., n), CAST, parentheses
                if node is not core and not _inside(node, core):
                    checker.check_syntax(node)
            family = checker.check_aggregate(core)
            columns.append(OutputColumn(name, OutputRole.AGGREGATE, function=family))
            continue
        checker.walk(inner, Clause.SELECT)
        if any(is_aggregate(n, policy) for n in inner.walk()):
            refuse_query(
                "output_expression",
                f"output column '{name}' combines aggregates or columns",
                subject=name,
                hint="each output column must be one aggregate (optionally in round() or CAST) "
                "or a group key",
            )
        if not list(inner.find_all(exp.Column)):
            refuse_query("output_expression", f"output column '{name}' is a constant", subject=name)
        refuse_query(
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
    wanted = {key_text(k) for k in keys}
    names: dict[str, str] = {}
    for projection in tree.expressions:
        text = key_text(projection.this)
        if text in wanted and text not in names:
            names[text] = projection.alias
    return names


def _casts_never_fail(tree: exp.Select) -> None:
    """Every CAST becomes TRY_CAST: a value that does not fit gives NULL, not a failed job.

    Otherwise ``CAST(SUM(income) AS TINYINT)`` over one person's row fails exactly when
    the income is above 127, and whether the job failed answers the question however
    the output check treats the cell (issue 17, "no oracle").
    """
    for node in list(tree.find_all(exp.Cast)):
        if type(node) is exp.Cast:
            node.replace(exp.TryCast(this=node.this.copy(), to=node.args["to"].copy()))


# Operators and functions of the allow-lists that DuckDB can make fail on a value
# (division or modulo by zero, integer overflow).
_MAY_FAIL = (exp.Div, exp.IntDiv, exp.Mod, exp.Mul, exp.Add, exp.Sub, exp.Neg, exp.Abs)


def _errors_are_null(tree: exp.Select, policy: FunctionPolicy) -> None:
    """A row whose WHERE condition, or an aggregate's argument, cannot be computed gives
    NULL (DuckDB's TRY), so the job does not fail on one subject's value.

    ``WHERE 1 // (age - 37) = 0`` would otherwise fail exactly when someone of the
    filtered group is 37, and ``SUM(income * 92233720368547)`` (with the expressions
    grant) exactly when one income is above 100,000: a failed job would answer what the
    output check holds back. With TRY the row drops out of the filter, or adds NULL.
    Engines without TRY (Spark) return NULL for these unless run in ANSI mode.
    """
    where = arg_of(tree, "where")
    if where is not None and any(isinstance(n, _MAY_FAIL) for n in where.this.walk()):
        where.set("this", exp.Try(this=where.this.copy()))
    for projection in tree.expressions:
        core = unwrap_aggregate(projection.this)
        if not is_aggregate(core, policy):
            continue
        argument = core.this
        if isinstance(argument, exp.Distinct) or argument is None:
            continue
        if any(isinstance(n, _MAY_FAIL) for n in argument.walk()):
            argument.replace(exp.Try(this=argument.copy()))


def _keys_never_fail(tree: exp.Select, checker: Checker, keys: list[exp.Expression]) -> None:
    """A group key that can fail on a value (``GROUP BY 1 // (sex = 'F')::INT`` under a
    filter on one person) is computed inside TRY, in GROUP BY and in its output column
    alike. The generalisations of quasi-identifiers (``floor(age / 10) * 10``, ``x // 5 * 5``)
    divide by a constant and cannot fail; they are left as written."""
    failing = {
        key_text(k)
        for k in keys
        if checker.generalised_column(k) is None and any(isinstance(n, _MAY_FAIL) for n in k.walk())
    }
    if not failing:
        return
    group = arg_of(tree, "group")
    targets = [
        n for n in group.walk() if key_text(n) in failing and not isinstance(n.parent, exp.Try)
    ]
    for projection in tree.expressions:
        if key_text(projection.this) in failing:
            targets.append(projection.this)
    for node in targets:
        node.replace(exp.Try(this=node.copy()))


def _check_order(tree: exp.Select, checker: Checker, columns: list[OutputColumn]) -> None:
    order = arg_of(tree, "order")
    if order is None:
        return
    aggregates = {c.name for c in columns if c.role is OutputRole.AGGREGATE}
    outputs = [p.alias for p in tree.expressions]
    by_text: dict[str, str] = {}
    for projection in tree.expressions:
        by_text.setdefault(key_text(projection.this), projection.alias)
    for ordered in order.expressions:
        target = unwrap(ordered.this)
        name = None
        position = number_of(target)
        if position is not None:
            if position.is_integer() and 1 <= position <= len(outputs):
                name = outputs[int(position) - 1]
        elif isinstance(target, exp.Column) and not target.table and target.name in outputs:
            name = target.name
        elif key_text(target) in by_text:
            name = by_text[key_text(target)]
        if name is None:
            if isinstance(target, exp.Column) and not target.table:
                hint = did_you_mean(target.name, outputs)
            else:
                checker.walk(target, Clause.ORDER_BY)
                hint = "order by output columns: " + ", ".join(outputs)
            refuse_query(
                "order_by",
                "ORDER BY may only name output columns or group keys",
                subject="ORDER BY",
                hint=hint,
            )
        if name in aggregates:
            refuse_query(
                "order_by",
                f"ORDER BY the aggregate '{name}' is not admitted: the rows' order would place "
                "a suppressed cell by its hidden value",
                subject="ORDER BY",
                hint="order by group keys only: "
                + ", ".join(c.name for c in columns if c.role is OutputRole.GROUP),
            )
        ordered.set("this", exp.column(name, quoted=True))
