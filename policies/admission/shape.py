"""Pass 1: parse one statement and check its shape (one SELECT, its tables and joins)."""

from __future__ import annotations

from typing import NoReturn

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.tokens import TokenType

from ..suggest import did_you_mean
from .naming import is_aggregate
from .scope import DIALECT, QueryScope, arg_of, function_name, load_function_policy, refuse_query

FILTER_HINT = (
    "filter rows in WHERE on dimension or public columns; the output check decides which "
    "cells may be shown"
)

# The deepest nesting admitted: brackets and CASE ... END count one level each, and a
# run of prefix operators (NOT NOT x, - - x) one per operator. sqlglot's parser and
# every later pass recurse once (or more) per level; far below this limit a query no
# analyst writes by hand would exhaust Python's stack instead of being refused.
MAX_NESTING = 24
_OPENERS = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
_CLOSERS = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
_PREFIX = {TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE}


def refuse_too_deep() -> NoReturn:
    refuse_query(
        "nesting",
        f"the query is nested deeper than the {MAX_NESTING} levels admitted",
        subject="sql",
        hint="flatten it: fewer brackets, CASE inside CASE or NOT in a row",
    )


def check_nesting(sql: str) -> None:
    """Refuse a query nested deeper than :data:`MAX_NESTING`, before it is parsed.

    The tokenizer is a loop, not a recursion, so this check cannot itself run out of
    stack; a parse that still does (``RecursionError``) is refused by the same rule.
    """
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except SqlglotError:
        return  # the parser names the bad token
    depth = deepest = run = 0
    for token in tokens:
        kind = token.token_type
        if kind in _PREFIX:
            run += 1
        else:
            run = 0
        if kind in _OPENERS:
            depth += 1
        elif kind in _CLOSERS:
            depth = max(0, depth - 1)
        deepest = max(deepest, depth + run)
        if deepest > MAX_NESTING:
            refuse_too_deep()


def parse_one_select(sql: str) -> exp.Select:
    """Exactly one SELECT statement, or a refusal."""
    check_nesting(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except RecursionError:
        refuse_too_deep()
    except ParseError as exc:
        where = ""
        if exc.errors:
            first = exc.errors[0]
            where = f" at line {first.get('line')}, column {first.get('col')}"
            desc = str(first.get("description") or "syntax error").split("\n")[0]
            where = f"{where}: {desc}"
        refuse_query("parse_error", f"the query could not be parsed{where}", subject="sql")
    except SqlglotError:
        refuse_query(
            "parse_error", "the query could not be parsed (unterminated string or bad token)"
        )
    if not statements:
        refuse_query("parse_error", "the query is empty", hint="write one SELECT statement")
    if len(statements) > 1:
        refuse_query(
            "statement",
            f"only one SELECT statement is admitted, found {len(statements)} statements",
            subject="statement",
            hint="remove the ';' and submit one SELECT",
        )
    tree = statements[0]
    if isinstance(tree, exp.SetOperation):
        refuse_query(
            "single_select",
            f"{tree.key.upper()} of several SELECTs is not admitted",
            subject=tree.key.upper(),
            hint="submit each aggregate as its own query",
        )
    if isinstance(tree, exp.Subquery):
        refuse_query(
            "single_select", "a parenthesised or nested SELECT is not admitted", subject="subquery"
        )
    if not isinstance(tree, exp.Select):
        kind = str(tree.this).upper() if isinstance(tree, exp.Command) else tree.key.upper()
        refuse_query(
            "statement",
            f"only SELECT statements are admitted, not {kind}",
            subject=kind,
            hint="the sandbox reads the granted tables for you; submit one aggregate SELECT",
        )
    return tree


def check_shape(tree: exp.Select, scope: QueryScope) -> list[exp.Table]:
    """Structural rules that need no column classes. Returns the tables in FROM/JOIN order."""
    _refuse_aggregate_filters(tree)
    if arg_of(tree, "with"):
        refuse_query(
            "single_select",
            "a WITH clause (common table expression) is not admitted",
            subject="WITH",
            hint="write one SELECT over the granted tables",
        )
    for node in tree.walk():
        if node is tree:
            continue
        if isinstance(node, (exp.Select, exp.Subquery, exp.SetOperation, exp.With)):
            refuse_query(
                "single_select",
                "subqueries are not admitted (in FROM, WHERE or SELECT)",
                subject="subquery",
                hint="write one SELECT over the granted tables",
            )
    for node in tree.walk():
        if isinstance(node, exp.Window):
            refuse_query("window", "window functions (OVER) are not admitted", subject="OVER")
        if isinstance(node, (exp.Limit, exp.Offset, exp.Fetch)):
            refuse_query(
                "limit",
                f"{node.key.upper()} is not admitted: it selects single rows",
                subject=node.key.upper(),
                hint="the whole aggregate result is returned after the output check",
            )
        if isinstance(node, exp.TableSample):
            refuse_query("limit", "SAMPLE / TABLESAMPLE is not admitted", subject="SAMPLE")
        if isinstance(node, exp.Filter):
            refuse_query(
                "aggregate_filter",
                "the FILTER clause on aggregates is not admitted",
                subject="FILTER",
                hint="filter rows in WHERE, or group by the filtering dimension",
            )
        if isinstance(node, (exp.Lateral, exp.Unnest, exp.Values, exp.Pivot)):
            refuse_query(
                "table_function", f"{node.key.upper()} is not admitted in FROM", subject=node.key
            )
    if arg_of(tree, "windows"):
        refuse_query("window", "named windows are not admitted", subject="WINDOW")
    if arg_of(tree, "sample"):
        refuse_query("limit", "SAMPLE is not admitted", subject="SAMPLE")
    for node in tree.expressions:
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and node.is_star):
            refuse_query(
                "row_level",
                "SELECT * returns rows, not aggregates",
                subject="*",
                hint="select aggregates (COUNT, SUM, AVG) and group keys",
            )
    from_ = arg_of(tree, "from")
    if from_ is None:
        refuse_query(
            "unknown_table", "the query reads no table", subject="FROM", hint="add FROM <table>"
        )
    tables = [from_.this]
    for join in arg_of(tree, "joins") or []:
        _check_join_kind(join)
        tables.append(join.this)
    for table in tables:
        _check_table(table, scope)
    return tables


def _aggregates_in(node: exp.Expression) -> bool:
    policy = load_function_policy()
    return any(is_aggregate(n, policy) for n in node.walk())


def _refuse_aggregate_filters(tree: exp.Select) -> None:
    """No output may exist or not depending on an aggregate's value (issue 17, "no oracle").

    HAVING, QUALIFY, a subquery or CTE that aggregates (whatever clause it stands in:
    FROM, JOIN, WHERE, IN, EXISTS, SELECT) and a window over an aggregate all let the
    operator ask "is SUM(income) above t?" and read the answer from whether a row,
    a cell or the whole output is there. With a filter that singles out one person,
    a binary search finds that person's value, whatever the output check then holds
    back. These are refused before anything runs, as one rule.
    """
    if arg_of(tree, "having") is not None:
        refuse_query(
            "aggregate_filter",
            "HAVING is not admitted: a filter on an aggregate's value makes which rows "
            "exist answer questions about the hidden values",
            subject="HAVING",
            hint=FILTER_HINT,
        )
    if arg_of(tree, "qualify") is not None:
        refuse_query(
            "aggregate_filter",
            "QUALIFY is not admitted: it filters rows on a computed (window or aggregate) value",
            subject="QUALIFY",
            hint=FILTER_HINT,
        )
    with_ = arg_of(tree, "with")
    if with_ is not None and _aggregates_in(with_):
        refuse_query(
            "aggregate_filter",
            "a WITH clause that aggregates is not admitted: the outer query could filter "
            "or join on the aggregate's value",
            subject="WITH",
            hint=FILTER_HINT,
        )
    for node in tree.walk():
        if node is tree:
            continue
        if isinstance(node, (exp.Select, exp.Subquery, exp.SetOperation)) and _aggregates_in(node):
            refuse_query(
                "aggregate_filter",
                "a subquery that aggregates is not admitted: filtering or joining on its "
                "value would make the output depend on a hidden aggregate",
                subject="subquery",
                hint=FILTER_HINT,
            )
        if isinstance(node, exp.Window):
            parts = [node.args.get("partition_by") or [], [node.args.get("order")]]
            inner = list(node.this.iter_expressions()) if node.this is not None else []
            if any(p is not None and _aggregates_in(p) for p in inner + parts[0] + parts[1]):
                refuse_query(
                    "aggregate_filter",
                    "a window over an aggregate is not admitted: it ranks or compares "
                    "hidden aggregate values",
                    subject="OVER",
                    hint=FILTER_HINT,
                )


def _check_join_kind(join: exp.Join) -> None:
    side = (join.side or "").upper()
    kind = (join.kind or "").upper()
    method = (join.method or "").upper() if join.args.get("method") else ""
    label = " ".join(p for p in (method, side, kind) if p) or "comma"
    if method or side not in ("", "LEFT") or kind not in ("", "INNER", "OUTER"):
        refuse_query(
            "join",
            f"{label} JOIN is not admitted",
            subject="JOIN",
            hint="use [INNER | LEFT] JOIN ... ON a.key = b.key or USING (key)",
        )
    if not join.args.get("on") and not join.args.get("using"):
        refuse_query(
            "join",
            f"a {label} join without ON or USING is a cross join and is not admitted",
            subject="JOIN",
            hint="join on column equality: JOIN ... ON a.key = b.key",
        )


def _check_table(table: exp.Expression, scope: QueryScope) -> None:
    if not isinstance(table, exp.Table):
        refuse_query(
            "table_function", f"{table.key.upper()} is not admitted in FROM", subject=table.key
        )
    if not isinstance(table.this, exp.Identifier):
        name = function_name(table.this) if isinstance(table.this, exp.Func) else table.this.key
        refuse_query(
            "table_function",
            f"table function {name} is not admitted in FROM",
            subject=name,
            hint="read the granted tables by name: " + ", ".join(sorted(scope.tables)),
        )
    name = table.name
    if any(ch in name for ch in "./\\:") and name not in scope.tables:
        refuse_query(
            "table_function",
            "reading a file path in FROM is not admitted",
            subject="FROM",
            hint="read the granted tables by name: " + ", ".join(sorted(scope.tables)),
        )
    if table.args.get("db") or table.args.get("catalog") or name not in scope.tables:
        shown = name if name.isidentifier() else "the table"
        refuse_query(
            "unknown_table",
            f"table '{shown}' is not in the scope granted to this job",
            subject=shown,
            hint=did_you_mean(name, scope.tables),
        )
