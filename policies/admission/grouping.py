"""GROUP BY, ROLLUP, CUBE and GROUPING SETS as one list of keys and grouping sets."""

from __future__ import annotations

import itertools

from sqlglot import exp

from .scope import key_text, unwrap


def group_sets(group: exp.Group | None) -> tuple[list[exp.Expression], list[list[str]]]:
    """The distinct key expressions (GROUP BY order) and the grouping sets as key texts."""
    if group is None:
        return [], [[]]
    keys: dict[str, exp.Expression] = {}

    def add(node: exp.Expression) -> list[str]:
        node = unwrap(node) if not isinstance(node, exp.Tuple) else node
        if isinstance(node, exp.Tuple):
            return [k for e in node.expressions for k in add(e)]
        text = key_text(node)
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
    sets: list[list[str]] = [[]]
    for factor in factors:
        sets = [a + b for a in sets for b in factor]
    return list(keys.values()), sets
