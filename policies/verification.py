"""Verification products (核验, Art. 4, 19): their definition, its admission, and the plan
of the index that answers calls.

A verification product answers one question about one subject with a code from a
declared set (``match``/``mismatch``/``not_found``; ``yes``/``no``/``not_found``), never a
value. Its definition names a dataset, the key columns a caller supplies, the codes,
and a rule: one SELECT whose only output is a ``CASE`` of aggregates over the subject's
rows, each branch a declared code::

    SELECT CASE WHEN COUNT(*) = 0 THEN 'not_found'
                WHEN SUM(CASE WHEN name = $name THEN 1 ELSE 0 END) > 0 THEN 'match'
                ELSE 'mismatch' END
    FROM persons WHERE pid = $pid

Keys are the caller's bound parameters (``$pid`` or ``:pid``), named like the key
columns. Two kinds, told apart by where they stand:

* **subject keys** (``pid``): ``column = $key`` AND-ed into WHERE on the first table;
  they pick the subject's rows. The rule reads nothing else.
* **check keys** (``name``): compared (``=``, ``<>``) with a column only inside the
  aggregates of the CASE.

Identifiers may be compared with parameters only, never with literals: everything
else of the rule is admitted by the SQL checker (:func:`policies.admission.admit`) as
an aggregate query over the same FROM and WHERE, so the column classes, the function
allow-lists, the join rules and the ``identifier_literal`` rule are the jobs' own.
The difference from a job: the rule may read one subject's rows, and its only output
is a code (the authority approves the code set before publication).

Why parameters only in those two places: then the answer depends on a check value
only through "equals one of the subject's values, or none of them", so the platform
can precompute every answer (:func:`index_plan`): one code per subject and per value
its rows hold, one code per subject for "none of them" (:data:`NO_MATCH` stands for
it), and one code for an unknown subject (the rule over no rows). Calls then look
up a keyed hash, never scan.

Refusal rules of this module (``PolicyRefusal.rule``): ``rule_shape``,
``rule_output``, ``undeclared_code``, ``parameter``, ``parameter_position``,
``key_column``, ``no_subject_key``, ``definition``; and every rule of
:mod:`policies.admission`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlglot import exp

from .admission import GRANTABLE_FAMILIES, QueryScope, admit, load_function_policy
from .admission.shape import parse_one_select
from .classes import ColumnClass, did_you_mean
from .errors import InputError, PolicyRefusal

ARTICLE = "Art. 15"
DIALECT = "duckdb"
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DEFAULT_MISS_CODES = ("mismatch", "not_found")
MAX_KEYS = 4
NORMALISE_FN = "vnorm"  # the DuckDB UDF the platform registers (sandbox.verification.keys)


class ProductState(StrEnum):
    """``defined -> published | rejected``; ``published -> withdrawn -> published``."""

    DEFINED = "defined"
    PUBLISHED = "published"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


TRANSITIONS: Mapping[ProductState, frozenset[ProductState]] = {
    ProductState.DEFINED: frozenset({ProductState.PUBLISHED, ProductState.REJECTED}),
    ProductState.PUBLISHED: frozenset({ProductState.WITHDRAWN, ProductState.PUBLISHED}),
    ProductState.WITHDRAWN: frozenset({ProductState.PUBLISHED}),
    ProductState.REJECTED: frozenset(),
}


def may_move(old: ProductState, new: ProductState) -> bool:
    return new in TRANSITIONS[old]


class Standing(StrEnum):
    """A consumer's standing under the enumeration defence."""

    OK = "ok"
    THROTTLED = "throttled"
    BLOCKED = "blocked"


def _refuse(rule: str, message: str, subject: str | None = None, hint: str | None = None):
    raise PolicyRefusal(rule, f"{message} ({ARTICLE})", article=ARTICLE, subject=subject, hint=hint)


# --------------------------------------------------------------------------- definition


@dataclass(frozen=True)
class Definition:
    """What an operator files: the question, as data."""

    name: str
    dataset: str
    keys: tuple[str, ...]
    codes: tuple[str, ...]
    rule: str
    miss_codes: tuple[str, ...] = ()
    person_level: bool | None = None  # None: decided from the key columns' formats
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping) -> Definition:
        known = {
            "name",
            "dataset",
            "keys",
            "codes",
            "rule",
            "miss_codes",
            "person_level",
            "description",
        }
        if not isinstance(data, Mapping):
            raise InputError("a verification definition is a mapping: " + ", ".join(sorted(known)))
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown field '{unknown[0]}' in the definition; "
                + did_you_mean(unknown[0], known)
            )
        for needed in ("name", "dataset", "keys", "codes", "rule"):
            if not data.get(needed):
                raise InputError(f"the definition needs '{needed}'")
        name = str(data["name"])
        if not NAME_PATTERN.match(name):
            raise InputError(
                f"product name '{name[:64]}': lower-case letters, digits and '_', "
                "starting with a letter"
            )
        keys = tuple(str(k) for k in data["keys"])
        codes = tuple(str(c) for c in data["codes"])
        if not 1 <= len(keys) <= MAX_KEYS or len(set(keys)) != len(keys):
            raise InputError(f"the definition needs 1 to {MAX_KEYS} distinct key columns")
        if len(codes) < 2 or len(set(codes)) != len(codes):
            raise InputError("the definition needs at least two distinct codes")
        for code in codes:
            if not CODE_PATTERN.match(code):
                raise InputError(
                    f"code '{code[:40]}': lower-case letters, digits and '_' (a code, not a value)"
                )
        miss = data.get("miss_codes")
        miss_codes = (
            tuple(str(c) for c in miss)
            if miss is not None
            else tuple(c for c in DEFAULT_MISS_CODES if c in codes)
        )
        for code in miss_codes:
            if code not in codes:
                raise InputError(f"miss code '{code}' is not a declared code")
        person = data.get("person_level")
        return cls(
            name=name,
            dataset=str(data["dataset"]),
            keys=keys,
            codes=codes,
            rule=str(data["rule"]),
            miss_codes=miss_codes,
            person_level=None if person is None else bool(person),
            description=str(data.get("description") or ""),
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "keys": list(self.keys),
            "codes": list(self.codes),
            "rule": self.rule,
            "miss_codes": list(self.miss_codes),
            "person_level": self.person_level,
            "description": self.description,
        }


# --------------------------------------------------------------------------- admission


@dataclass(frozen=True)
class KeyUse:
    """One key parameter and the column it is compared with (SQL text, as written)."""

    name: str
    column_sql: str
    table: str


@dataclass(frozen=True)
class AdmittedRule:
    """A rule that passed admission, taken apart for the index plan."""

    definition: Definition
    tree: exp.Select
    subject_keys: tuple[KeyUse, ...]
    check_keys: tuple[KeyUse, ...]
    tables: tuple[str, ...]
    columns: Mapping[str, frozenset[str]] = field(default_factory=dict)
    person_level: bool = False

    @property
    def key_order(self) -> tuple[str, ...]:
        """Subject keys first, then check keys: the order of values in every hash."""
        return tuple(k.name for k in self.subject_keys + self.check_keys)


_COMPARISONS = (exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ)


def _strip(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    node = _strip(node)
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _is_aggregate(node: exp.Expression) -> bool:
    policy = load_function_policy()
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and str(node.name).lower() in policy.aggregate_names


def _inside_aggregate(node: exp.Expression, top: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None and parent is not top:
        if _is_aggregate(parent):
            return True
        parent = parent.parent
    return False


def _comparison_of(placeholder: exp.Placeholder) -> tuple[exp.Expression, exp.Column]:
    """The comparison a parameter stands in, and the column it is compared with."""
    node: exp.Expression = placeholder
    while isinstance(node.parent, exp.Paren):
        node = node.parent
    parent = node.parent
    name = placeholder.name
    if not isinstance(parent, _COMPARISONS):
        _refuse(
            "parameter_position",
            f"parameter ${name} may only be compared (=, <>) with its key column",
            subject=name,
            hint=f"write {name} = ${name}",
        )
    other = parent.expression if parent.this is node else parent.this
    other = _strip(other)
    if not isinstance(other, exp.Column) or other.name != name:
        _refuse(
            "parameter_position",
            f"parameter ${name} must be compared with the column '{name}' itself",
            subject=name,
            hint=f"write {name} = ${name}",
        )
    return parent, other


def _table_of(column: exp.Column, aliases: Mapping[str, str], scope: QueryScope) -> str:
    if column.table:
        if column.table not in aliases:
            _refuse("unknown_table", f"unknown table or alias in {column.sql()}", column.name)
        return aliases[column.table]
    owners = sorted(
        {t for t in aliases.values() if column.name in scope.tables[t].classification.columns}
    )
    if len(owners) != 1:
        _refuse(
            "unknown_column",
            f"column '{column.name}' is in none or several of the rule's tables",
            column.name,
            hint="qualify it with its table",
        )
    return owners[0]


def _check_case(case: exp.Case, definition: Definition) -> None:
    """The CASE's branches are declared codes; outside aggregates only allow-listed syntax."""
    policy = load_function_policy()
    branches = [i.args.get("true") for i in case.args.get("ifs") or []]
    default = case.args.get("default")
    if default is None:
        _refuse(
            "rule_output",
            "the rule's CASE needs an ELSE branch, so that every subject gets a code",
            subject="ELSE",
        )
    for value in branches + [default]:
        value = _strip(value)
        if not (isinstance(value, exp.Literal) and value.is_string):
            _refuse(
                "rule_output",
                "every THEN and ELSE of the rule must be a quoted code, never a value",
                subject="CASE",
                hint="declared codes: " + ", ".join(definition.codes),
            )
        if value.this not in definition.codes:
            _refuse(
                "undeclared_code",
                "the rule yields a code that the definition does not declare",
                subject="CASE",
                hint="declared codes: " + ", ".join(definition.codes),
            )
    stack: list[exp.Expression] = [case]
    while stack:
        node = stack.pop()
        if _is_aggregate(node):
            continue
        if isinstance(node, exp.Column):
            _refuse(
                "row_level",
                f"column '{node.name}' stands outside an aggregate in the rule",
                subject=node.name,
                hint="the rule decides on aggregates of the subject's rows, e.g. COUNT(*)",
            )
        if isinstance(node, exp.Placeholder):
            _refuse(
                "parameter_position",
                f"parameter ${node.name} stands outside an aggregate in the rule's CASE",
                subject=node.name,
            )
        allowed = node.key in policy.syntax or node.key in policy.scalar
        if not allowed and isinstance(node, exp.Func):
            allowed = node.sql(dialect=DIALECT).split("(")[0].strip().lower() in policy.scalar
        if not allowed:
            _refuse(
                "function_not_allowed",
                f"'{node.key}' is not on the allow list (default deny)",
                subject=node.key,
            )
        stack.extend(node.iter_expressions())


def admit_rule(definition: Definition, scope: QueryScope) -> AdmittedRule:
    """Admit a verification rule over the scope, or raise :class:`PolicyRefusal`."""
    if definition.dataset not in scope.tables:
        _refuse(
            "unknown_table",
            f"dataset '{definition.dataset}' is not in the scope granted for verification",
            subject=definition.dataset,
        )
    tree = parse_one_select(definition.rule)
    case = _rule_output(tree, definition)
    first, tables, aliases = _rule_tables(tree, definition, scope)
    used = _rule_parameters(tree, definition)
    subject, subject_nodes = _subject_keys(tree, first, aliases, scope)
    checks = _check_keys(used, subject, subject_nodes, case, aliases, scope)
    if not subject:
        _refuse(
            "no_subject_key",
            "the rule must pick the subject's rows: WHERE <key> = $<key> on the first table",
            subject="WHERE",
        )
    key_tables = {k.name: k.table for k in list(subject.values()) + list(checks.values())}
    _require_identifiers(key_tables, scope)
    columns = _columns_read(_synthetic_query(tree, case, subject_nodes), scope)
    for name, table in key_tables.items():
        columns.setdefault(table, set()).add(name)
    formats = scope.tables[definition.dataset].classification.formats
    person = definition.person_level
    if person is None:
        person = any(formats.get(k.name) == "cn_resident_id" for k in subject.values())
    return AdmittedRule(
        definition=definition,
        tree=tree,
        subject_keys=tuple(subject[k] for k in definition.keys if k in subject),
        check_keys=tuple(checks[k] for k in definition.keys if k in checks),
        tables=tuple(dict.fromkeys(t.name for t in tables)),
        columns={t: frozenset(c) for t, c in columns.items()},
        person_level=bool(person),
    )


def _rule_output(tree: exp.Select, definition: Definition) -> exp.Case:
    """One subject, one output: the CASE that maps aggregates to the product's codes."""
    for arg in ("group", "having", "order", "distinct", "limit", "qualify"):
        if tree.args.get(arg) is not None:
            _refuse(
                "rule_shape",
                f"the rule answers one subject: {arg.upper()} is not admitted",
                subject=arg.upper(),
            )
    if len(tree.expressions) != 1:
        _refuse("rule_output", "the rule has exactly one output: the code", subject="SELECT")
    output = tree.expressions[0]
    case = _strip(output.this if isinstance(output, exp.Alias) else output)
    if not isinstance(case, exp.Case):
        _refuse(
            "rule_output",
            "the rule's output must be CASE WHEN <aggregates> THEN 'code' ... ELSE 'code' END",
            subject="SELECT",
        )
    _check_case(case, definition)
    return case


def _rule_tables(
    tree: exp.Select, definition: Definition, scope: QueryScope
) -> tuple[exp.Table, list, dict[str, str]]:
    """The product's dataset first in FROM, every table in scope; returns the first
    table, all tables and their aliases."""
    from_ = tree.args.get("from") or tree.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table):
        _refuse("rule_shape", "the rule reads its dataset in FROM", subject="FROM")
    first = from_.this
    if first.name != definition.dataset:
        _refuse(
            "rule_shape",
            f"the rule's first table must be the product's dataset '{definition.dataset}'",
            subject=first.name,
        )
    tables = [first] + [j.this for j in tree.args.get("joins") or []]
    aliases = {t.alias_or_name: t.name for t in tables if isinstance(t, exp.Table)}
    for t in tables:
        if isinstance(t, exp.Table) and t.name not in scope.tables:
            _refuse("unknown_table", f"table '{t.name}' is not in scope", subject=t.name)
    return first, tables, aliases


def _rule_parameters(tree: exp.Select, definition: Definition) -> dict[str, list[exp.Placeholder]]:
    """Every ``$key`` names a declared key, and every declared key is used."""
    used: dict[str, list[exp.Placeholder]] = {}
    for ph in tree.find_all(exp.Placeholder):
        if not ph.name:
            _refuse("parameter", "unnamed parameters (?) are not admitted", hint="write $key")
        if ph.name not in definition.keys:
            _refuse(
                "parameter",
                f"parameter ${ph.name} is not a declared key",
                subject=ph.name,
                hint=did_you_mean(ph.name, definition.keys),
            )
        used.setdefault(ph.name, []).append(ph)
    for key in definition.keys:
        if key not in used:
            _refuse("parameter", f"key '{key}' is declared but the rule never uses it", key)
    return used


def _subject_keys(
    tree: exp.Select, first: exp.Table, aliases: Mapping[str, str], scope: QueryScope
) -> tuple[dict[str, KeyUse], list[exp.Expression]]:
    """The keys that pick the subject's rows: ``WHERE key = $key`` on the first table."""
    where = tree.args.get("where")
    subject: dict[str, KeyUse] = {}
    nodes: list[exp.Expression] = []
    for part in _conjuncts(where.this if where is not None else None):
        if not isinstance(part, exp.EQ):
            continue
        sides = [_strip(part.this), _strip(part.expression)]
        ph = next((s for s in sides if isinstance(s, exp.Placeholder)), None)
        col = next((s for s in sides if isinstance(s, exp.Column)), None)
        if ph is None or col is None or col.name != ph.name:
            continue
        table = _table_of(col, aliases, scope)
        if table != first.name or (col.table and col.table != first.alias_or_name):
            _refuse(
                "parameter_position",
                f"subject key ${ph.name} must pick rows of the first table",
                subject=ph.name,
            )
        if ph.name in subject:
            _refuse("parameter", f"${ph.name} restricts WHERE twice", subject=ph.name)
        subject[ph.name] = KeyUse(ph.name, col.sql(dialect=DIALECT), table)
        nodes.append(part)
    return subject, nodes


def _check_keys(
    used: Mapping[str, list[exp.Placeholder]],
    subject: Mapping[str, KeyUse],
    subject_nodes: list[exp.Expression],
    case: exp.Case,
    aliases: Mapping[str, str],
    scope: QueryScope,
) -> dict[str, KeyUse]:
    """The other keys, each compared with one column inside the rule's aggregates only."""
    checks: dict[str, KeyUse] = {}
    for name, nodes in used.items():
        for ph in nodes:
            comparison, col = _comparison_of(ph)
            if name in subject:
                if comparison not in subject_nodes:
                    _refuse(
                        "parameter_position",
                        f"subject key ${name} may only stand in WHERE {name} = ${name}",
                        subject=name,
                    )
                continue
            if not _inside_aggregate(ph, case) or ph.find_ancestor(exp.Case) is None:
                _refuse(
                    "parameter_position",
                    f"check key ${name} may only be compared inside the rule's aggregates",
                    subject=name,
                    hint=f"e.g. SUM(CASE WHEN {name} = ${name} THEN 1 ELSE 0 END) > 0",
                )
            table = _table_of(col, aliases, scope)
            text = col.sql(dialect=DIALECT)
            if name in checks and checks[name].column_sql != text:
                _refuse("parameter", f"${name} is compared with two columns", subject=name)
            checks[name] = KeyUse(name, text, table)
    return checks


def _require_identifiers(key_tables: Mapping[str, str], scope: QueryScope) -> None:
    for name, table in key_tables.items():
        cls = scope.tables[table].classification.columns.get(name)
        if cls is not ColumnClass.IDENTIFIER:
            _refuse(
                "key_column",
                f"key column '{name}' of {table} is {cls.value if cls else 'unknown'}; "
                "verification keys must be identifiers",
                subject=name,
            )


def _columns_read(synthetic: str, scope: QueryScope) -> dict[str, set[str]]:
    """The columns per table the rule reads, from its aggregate twin admitted with every
    aggregate family allowed (so a rule is held to the same column rules as a job)."""
    relaxed = QueryScope(
        tables=scope.tables,
        extra_aggregates=frozenset(GRANTABLE_FAMILIES),
        aggregate_expressions=True,
    )
    admitted = admit(synthetic, relaxed)
    columns: dict[str, set[str]] = {}
    qualified = {t.alias_or_name: t.name for t in admitted.tree.find_all(exp.Table) if t.name}
    for column in admitted.tree.find_all(exp.Column):
        table = qualified.get(column.table)
        if table is not None:
            columns.setdefault(table, set()).add(column.name)
    return columns


def _synthetic_query(
    tree: exp.Select, case: exp.Case, subject_nodes: Sequence[exp.Expression]
) -> str:
    """The rule as an aggregate query the SQL checker knows: each aggregate an output,
    the subject restriction dropped, each check comparison replaced by TRUE."""
    aggregates: list[exp.Expression] = []
    stack: list[exp.Expression] = [case]
    while stack:
        node = stack.pop()
        if _is_aggregate(node):
            aggregates.append(node)
            continue
        stack.extend(node.iter_expressions())
    outputs = []
    for i, agg in enumerate(aggregates):
        copy = agg.copy()
        for ph in list(copy.find_all(exp.Placeholder)):
            comparison = ph.parent
            while isinstance(comparison, exp.Paren):
                comparison = comparison.parent
            comparison.replace(exp.true())
        outputs.append(exp.alias_(copy, f"a{i + 1}"))
    if not outputs:
        outputs.append(exp.alias_(exp.Count(this=exp.Star()), "a1"))
    query = exp.select(*outputs)
    from_key = "from_" if tree.args.get("from_") is not None else "from"
    query.set(from_key, tree.args[from_key].copy())
    if tree.args.get("joins"):
        query.set("joins", [j.copy() for j in tree.args["joins"]])
    where = tree.args.get("where")
    residual = [
        c.copy()
        for c in _conjuncts(where.this if where is not None else None)
        if c not in subject_nodes
    ]
    if residual:
        query = query.where(exp.and_(*residual))
    return query.sql(dialect=DIALECT)


# --------------------------------------------------------------------------- the index plan


@dataclass(frozen=True)
class IndexPlan:
    """Two DuckDB queries: every present pattern's code, and the unknown subject's code.

    ``patterns`` yields ``s0.. (subject values), c0.. (check values or NO_MATCH), code``.
    """

    patterns: str
    default: str
    subject_columns: tuple[str, ...]
    check_columns: tuple[str, ...]


def _norm(sql: str) -> exp.Expression:
    return exp.func(NORMALISE_FN, exp.cast(exp.maybe_parse(sql, dialect=DIALECT), "VARCHAR"))


def index_plan(rule: AdmittedRule, no_match: str) -> IndexPlan:
    """The queries that precompute every answer of the rule (see the module docstring)."""
    tree = rule.tree
    output = tree.expressions[0]
    case = _strip(output.this if isinstance(output, exp.Alias) else output)
    from_sql = (tree.args.get("from_") or tree.args.get("from")).sql(dialect=DIALECT)
    joins_sql = " ".join(j.sql(dialect=DIALECT) for j in tree.args.get("joins") or [])
    where = tree.args.get("where")
    subject_names = {k.name for k in rule.subject_keys}
    residual = []
    for part in _conjuncts(where.this if where is not None else None):
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
        column = comparison.this if _strip(comparison.this) is not ph else comparison.expression
        column = _strip(column)
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


# --------------------------------------------------------------------------- consent


@dataclass(frozen=True)
class Consent:
    """The data subject's consent (Art. 19): who consented, for what purpose, when, and the
    consumer's reference to its record. ``who`` names the consenting party (``subject``,
    ``guardian``, an id in the consumer's records), never a key value."""

    reference: str
    who: str
    purpose: str
    given_at: str

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Consent:
        if not isinstance(data, Mapping):
            raise PolicyRefusal(
                "consent_required",
                "a person-level verification needs the subject's consent: "
                "reference, who, purpose, given_at",
                article="Art. 19",
                subject="consent",
            )
        values = {}
        for name in ("reference", "who", "purpose", "given_at"):
            value = data.get(name)
            if not isinstance(value, str) or not value.strip() or len(value) > 500:
                raise PolicyRefusal(
                    "consent_required",
                    f"the consent needs '{name}' (text, at most 500 characters)",
                    article="Art. 19",
                    subject=f"consent.{name}",
                )
            values[name] = value.strip()
        return cls(**values)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "who": self.who,
            "purpose": self.purpose,
            "given_at": self.given_at,
        }


# --------------------------------------------------------------------------- the defence


@dataclass(frozen=True)
class Thresholds:
    """When guessing shows: settings ``verify.*`` (docs/settings.md)."""

    guess_ids_throttle: int = 3
    guess_ids_block: int = 5
    miss_min_calls: int = 50
    miss_share_throttle: float = 0.6
    miss_share_block: float = 0.9


@dataclass(frozen=True)
class Signals:
    """One consumer's signals today, including the call being decided."""

    missed_ids_for_one_name: int  # the most distinct subjects missed for one check value
    calls: int
    misses: int


def assess(signals: Signals, limits: Thresholds) -> tuple[Standing, str]:
    """The standing the signals call for, and why (no key values in the words)."""
    ids = signals.missed_ids_for_one_name
    share = signals.misses / signals.calls if signals.calls else 0.0
    enough = signals.calls >= limits.miss_min_calls
    if ids >= limits.guess_ids_block:
        return Standing.BLOCKED, f"{ids} different subjects tried without a match for one name"
    if enough and share >= limits.miss_share_block:
        return Standing.BLOCKED, f"{share:.0%} of {signals.calls} answers today were misses"
    if ids >= limits.guess_ids_throttle:
        return Standing.THROTTLED, f"{ids} different subjects tried without a match for one name"
    if enough and share >= limits.miss_share_throttle:
        return Standing.THROTTLED, f"{share:.0%} of {signals.calls} answers today were misses"
    return Standing.OK, ""


def worse(a: Standing, b: Standing) -> Standing:
    order = [Standing.OK, Standing.THROTTLED, Standing.BLOCKED]
    return max(a, b, key=order.index)
