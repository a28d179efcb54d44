"""Pass 2: name every output column, and recognise aggregates (also used by the
evidence rewrite)."""

from __future__ import annotations

from sqlglot import exp

from ..outputs import EVIDENCE_PREFIX
from .scope import (
    FunctionPolicy,
    arg_of,
    function_name,
    load_function_policy,
    number_of,
    refuse_query,
    unwrap,
)


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


def name_outputs(tree: exp.Select) -> None:
    """Give every projection an explicit alias; refuse duplicate or reserved names."""
    seen: set[str] = set()
    for position, node in enumerate(list(tree.expressions)):
        if isinstance(node, exp.Alias):
            name = node.alias.lower() if not node.args["alias"].quoted else node.alias
            if name in seen:
                refuse_query(
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
            refuse_query(
                "output_name",
                f"output names may not start with '{EVIDENCE_PREFIX}' (reserved for evidence)",
                subject=name,
            )
        seen.add(name)


def expand_group_by_all(tree: exp.Select) -> None:
    group = arg_of(tree, "group")
    if group is None or not group.args.get("all"):
        return
    keys = [p.this.copy() for p in tree.expressions if not _has_aggregate_like(p.this)]
    tree.set("group", exp.Group(expressions=keys) if keys else None)


def _has_aggregate_like(node: exp.Expression) -> bool:
    policy = load_function_policy()
    return any(is_aggregate(n, policy) for n in node.walk())


def is_aggregate(node: exp.Expr, policy: FunctionPolicy) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and str(node.name).lower() in policy.aggregate_names


def unwrap_aggregate(node: exp.Expression) -> exp.Expression:
    """The aggregate call of an output column: through parentheses, round(.., n) and CAST."""
    node = unwrap(node)
    while True:
        if isinstance(node, exp.Round) and (
            node.args.get("decimals") is None or number_of(node.args["decimals"]) is not None
        ):
            node = unwrap(node.this)
        elif isinstance(node, (exp.Cast, exp.TryCast)):
            node = unwrap(node.this)
        else:
            return node


def aggregate_argument(agg: exp.Expr) -> exp.Expression | None:
    """The argument an admitted aggregate aggregates (None for COUNT(*))."""
    if isinstance(agg, exp.Count):
        inner: exp.Expression | None = agg.this
        if isinstance(inner, exp.Star) or inner is None:
            return None
        if isinstance(inner, exp.Distinct):
            first: exp.Expression = inner.expressions[0]
            return first
        return inner
    argument: exp.Expression | None = agg.this
    return argument
