"""The plan of the index that answers calls: every answer precomputed per subject."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from policies.verification.common import DIALECT, NORMALISE_FN
from policies.verification.rules import AdmittedRule, conjuncts, unparen


@dataclass(frozen=True)
class IndexPlan:
    """Two DuckDB queries: every present pattern's code, and the unknown subject's code.

    ``patterns`` yields ``s0.. (subject values), c0.. (check values or NO_MATCH), code``.
    """

    patterns: str
    default: str
    subject_columns: tuple[str, ...]
    check_columns: tuple[str, ...]


def _norm(sql: str) -> exp.Func:
    return exp.func(NORMALISE_FN, exp.cast(exp.maybe_parse(sql, dialect=DIALECT), "VARCHAR"))


def index_plan(rule: AdmittedRule, no_match: str) -> IndexPlan:
    """The queries that precompute every answer of the rule (see the module docstring)."""
    tree = rule.tree
    output = tree.expressions[0]
    case = unparen(output.this if isinstance(output, exp.Alias) else output)
    from_ = tree.args.get("from_") or tree.args.get("from")
    assert from_ is not None  # admission refuses a rule without FROM (_rule_tables)
    from_sql = from_.sql(dialect=DIALECT)
    joins_sql = " ".join(j.sql(dialect=DIALECT) for j in tree.args.get("joins") or [])
    where = tree.args.get("where")
    subject_names = {k.name for k in rule.subject_keys}
    residual = []
    for part in conjuncts(where.this if where is not None else None):
        if any(ph.name in subject_names for ph in part.find_all(exp.Placeholder)):
            continue
        residual.append(part.sql(dialect=DIALECT))
    s_cols = tuple(f"s{i}" for i in range(len(rule.subject_keys)))
    c_cols = tuple(f"c{i}" for i in range(len(rule.check_keys)))
    s_exprs = [_norm(k.column_sql).sql(dialect=DIALECT) for k in rule.subject_keys]
    not_null = [f"{e} IS NOT NULL" for e in s_exprs]
    base_where = " AND ".join(f"({w})" for w in residual + not_null)
    source = f"{from_sql} {joins_sql}".strip()

    # The default: the rule over no rows; check parameters stand for "no value".
    default_case = case.copy()
    for ph in list(default_case.find_all(exp.Placeholder)):
        ph.replace(exp.Literal.string(no_match))
    default = f"SELECT {default_case.sql(dialect=DIALECT)} AS code {source} WHERE FALSE"

    check_index = {k.name: i for i, k in enumerate(rule.check_keys)}
    pattern_case = case.copy()
    for ph in list(pattern_case.find_all(exp.Placeholder)):
        comparison = ph.parent
        while isinstance(comparison, exp.Paren):
            comparison = comparison.parent
        # admission put every parameter inside a comparison (rules._comparison_of)
        assert comparison is not None
        column = comparison.this if unparen(comparison.this) is not ph else comparison.expression
        column = unparen(column)
        column.replace(_norm(column.sql(dialect=DIALECT)))
        ph.replace(exp.column(f"c{check_index[ph.name]}", table="__cand"))
    s_select = ", ".join(f"{e} AS {c}" for e, c in zip(s_exprs, s_cols, strict=True))
    if not rule.check_keys:
        patterns = (
            f"SELECT {s_select}, {pattern_case.sql(dialect=DIALECT)} AS code "
            f"{source} WHERE {base_where} GROUP BY ALL"
        )
        return IndexPlan(patterns, default, s_cols, c_cols)
    ctes = []
    literal = exp.Literal.string(no_match).sql(dialect=DIALECT)
    for i, key in enumerate(rule.check_keys):
        value = _norm(key.column_sql).sql(dialect=DIALECT)
        ctes.append(
            f"__k{i} AS (SELECT DISTINCT {s_select}, {value} AS v {source} "
            f"WHERE {base_where} AND {value} IS NOT NULL "
            f"UNION SELECT DISTINCT {s_select}, {literal} AS v {source} WHERE {base_where})"
        )
    using = ", ".join(s_cols)
    cand_select = (
        ", ".join(f"__k0.{c}" for c in s_cols)
        + ", "
        + ", ".join(f"__k{i}.v AS c{i}" for i in range(len(c_cols)))
    )
    cand_from = "__k0" + "".join(f" JOIN __k{i} USING ({using})" for i in range(1, len(c_cols)))
    ctes.append(f"__cand AS (SELECT {cand_select} FROM {cand_from})")
    on = " AND ".join(f"{e} = __cand.{c}" for e, c in zip(s_exprs, s_cols, strict=True))
    keys_out = ", ".join(f"__cand.{c}" for c in s_cols + c_cols)
    patterns = (
        f"WITH {', '.join(ctes)} SELECT {keys_out}, {pattern_case.sql(dialect=DIALECT)} AS code "
        f"{source} JOIN __cand ON {on} WHERE {base_where} GROUP BY {keys_out}"
    )
    return IndexPlan(patterns, default, s_cols, c_cols)


def lookup_patterns(n_checks: int) -> list[tuple[bool, ...]]:
    """Which check values to keep, most first: the first pattern the index holds is the
    answer (a kept value is in the index only if the subject's rows hold it)."""
    masks = [tuple(bool(m >> i & 1) for i in range(n_checks)) for m in range(2**n_checks)]
    return sorted(masks, key=lambda m: -sum(m))
