"""The admission of a verification rule: where each key may stand, what the rule may
read, and the columns it reads (see :mod:`policies.verification`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from policies.admission import GRANTABLE_FAMILIES, QueryScope, admit, load_function_policy
from policies.admission.shape import parse_one_select
from policies.classes import ColumnClass
from policies.suggest import did_you_mean
from policies.verification.common import DIALECT, refuse
from policies.verification.definition import Definition


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


def unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    node = unparen(node)
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    return [node]


def _is_aggregate(node: exp.Expr) -> bool:
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
        refuse(
            "parameter_position",
            f"parameter ${name} may only be compared (=, <>) with its key column",
            subject=name,
            hint=f"write {name} = ${name}",
        )
    other = parent.expression if parent.this is node else parent.this
    other = unparen(other)
    if not isinstance(other, exp.Column) or other.name != name:
        refuse(
            "parameter_position",
            f"parameter ${name} must be compared with the column '{name}' itself",
            subject=name,
            hint=f"write {name} = ${name}",
        )
    return parent, other


def _table_of(column: exp.Column, aliases: Mapping[str, str], scope: QueryScope) -> str:
    if column.table:
        if column.table not in aliases:
            refuse("unknown_table", f"unknown table or alias in {column.sql()}", column.name)
        return aliases[column.table]
    owners = sorted(
        {t for t in aliases.values() if column.name in scope.tables[t].classification.columns}
    )
    if len(owners) != 1:
        refuse(
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
        refuse(
            "rule_output",
            "the rule's CASE needs an ELSE branch, so that every subject gets a code",
            subject="ELSE",
        )
    for value in branches + [default]:
        value = unparen(value)
        if not (isinstance(value, exp.Literal) and value.is_string):
            refuse(
                "rule_output",
                "every THEN and ELSE of the rule must be a quoted code, never a value",
                subject="CASE",
                hint="declared codes: " + ", ".join(definition.codes),
            )
        if value.this not in definition.codes:
            refuse(
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
            refuse(
                "row_level",
                f"column '{node.name}' stands outside an aggregate in the rule",
                subject=node.name,
                hint="the rule decides on aggregates of the subject's rows, e.g. COUNT(*)",
            )
        if isinstance(node, exp.Placeholder):
            refuse(
                "parameter_position",
                f"parameter ${node.name} stands outside an aggregate in the rule's CASE",
                subject=node.name,
            )
        allowed = node.key in policy.syntax or node.key in policy.scalar
        if not allowed and isinstance(node, exp.Func):
            allowed = node.sql(dialect=DIALECT).split("(")[0].strip().lower() in policy.scalar
        if not allowed:
            refuse(
                "function_not_allowed",
                f"'{node.key}' is not on the allow list (default deny)",
                subject=node.key,
            )
        stack.extend(node.iter_expressions())


def admit_rule(definition: Definition, scope: QueryScope) -> AdmittedRule:
    """Admit a verification rule over the scope, or raise :class:`PolicyRefusal`."""
    if definition.dataset not in scope.tables:
        refuse(
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
        refuse(
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
            refuse(
                "rule_shape",
                f"the rule answers one subject: {arg.upper()} is not admitted",
                subject=arg.upper(),
            )
    if len(tree.expressions) != 1:
        refuse("rule_output", "the rule has exactly one output: the code", subject="SELECT")
    output = tree.expressions[0]
    case = unparen(output.this if isinstance(output, exp.Alias) else output)
    if not isinstance(case, exp.Case):
        refuse(
            "rule_output",
            "the rule's output must be CASE WHEN <aggregates> THEN 'code' ... ELSE 'code' END",
            subject="SELECT",
        )
    _check_case(case, definition)
    return case


def _rule_tables(
    tree: exp.Select, definition: Definition, scope: QueryScope
) -> tuple[exp.Table, list[exp.Expr], dict[str, str]]:
    """The product's dataset first in FROM, every table in scope; returns the first
    table, all tables and their aliases."""
    from_ = tree.args.get("from") or tree.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table):
        refuse("rule_shape", "the rule reads its dataset in FROM", subject="FROM")
    first = from_.this
    if first.name != definition.dataset:
        refuse(
            "rule_shape",
            f"the rule's first table must be the product's dataset '{definition.dataset}'",
            subject=first.name,
        )
    tables = [first] + [j.this for j in tree.args.get("joins") or []]
    aliases = {t.alias_or_name: t.name for t in tables if isinstance(t, exp.Table)}
    for t in tables:
        if isinstance(t, exp.Table) and t.name not in scope.tables:
            refuse("unknown_table", f"table '{t.name}' is not in scope", subject=t.name)
    return first, tables, aliases


def _rule_parameters(tree: exp.Select, definition: Definition) -> dict[str, list[exp.Placeholder]]:
    """Every ``$key`` names a declared key, and every declared key is used."""
    used: dict[str, list[exp.Placeholder]] = {}
    for ph in tree.find_all(exp.Placeholder):
        if not ph.name:
            refuse("parameter", "unnamed parameters (?) are not admitted", hint="write $key")
        if ph.name not in definition.keys:
            refuse(
                "parameter",
                f"parameter ${ph.name} is not a declared key",
                subject=ph.name,
                hint=did_you_mean(ph.name, definition.keys),
            )
        used.setdefault(ph.name, []).append(ph)
    for key in definition.keys:
        if key not in used:
            refuse("parameter", f"key '{key}' is declared but the rule never uses it", key)
    return used


def _subject_keys(
    tree: exp.Select, first: exp.Table, aliases: Mapping[str, str], scope: QueryScope
) -> tuple[dict[str, KeyUse], list[exp.Expression]]:
    """The keys that pick the subject's rows: ``WHERE key = $key`` on the first table."""
    where = tree.args.get("where")
    subject: dict[str, KeyUse] = {}
    nodes: list[exp.Expression] = []
    for part in conjuncts(where.this if where is not None else None):
        if not isinstance(part, exp.EQ):
            continue
        sides = [unparen(part.this), unparen(part.expression)]
        ph = next((s for s in sides if isinstance(s, exp.Placeholder)), None)
        col = next((s for s in sides if isinstance(s, exp.Column)), None)
        if ph is None or col is None or col.name != ph.name:
            continue
        table = _table_of(col, aliases, scope)
        if table != first.name or (col.table and col.table != first.alias_or_name):
            refuse(
                "parameter_position",
                f"subject key ${ph.name} must pick rows of the first table",
                subject=ph.name,
            )
        if ph.name in subject:
            refuse("parameter", f"${ph.name} restricts WHERE twice", subject=ph.name)
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
                    refuse(
                        "parameter_position",
                        f"subject key ${name} may only stand in WHERE {name} = ${name}",
                        subject=name,
                    )
                continue
            if not _inside_aggregate(ph, case) or ph.find_ancestor(exp.Case) is None:
                refuse(
                    "parameter_position",
                    f"check key ${name} may only be compared inside the rule's aggregates",
                    subject=name,
                    hint=f"e.g. SUM(CASE WHEN {name} = ${name} THEN 1 ELSE 0 END) > 0",
                )
            table = _table_of(col, aliases, scope)
            text = col.sql(dialect=DIALECT)
            if name in checks and checks[name].column_sql != text:
                refuse("parameter", f"${name} is compared with two columns", subject=name)
            checks[name] = KeyUse(name, text, table)
    return checks


def _require_identifiers(key_tables: Mapping[str, str], scope: QueryScope) -> None:
    for name, table in key_tables.items():
        cls = scope.tables[table].classification.columns.get(name)
        if cls is not ColumnClass.IDENTIFIER:
            refuse(
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
        mode="verification",  # not an exact table: the rule's own checks apply, not table mode's
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
            # admission put every parameter inside a comparison (_comparison_of)
            assert comparison is not None
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
        for c in conjuncts(where.this if where is not None else None)
        if c not in subject_nodes
    ]
    if residual:
        query = query.where(exp.and_(*residual))
    return query.sql(dialect=DIALECT)
