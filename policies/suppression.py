"""Complementary (secondary) suppression for outputs with margins.

A ROLLUP, CUBE or GROUPING SETS query yields totals next to the cells they sum.
Hiding one small cell is then useless: its value is the parent total minus the
released siblings. This module finds those *relations* and suppresses extra
cells until no relation can be used that way.

A relation is one parent row (grouping set P) and its children: the rows of
grouping set C = P plus exactly one more key whose values on P's keys equal the
parent's. The children partition the parent's group (a NULL key value is a group
of its own, told apart from a rolled-up key by ``__grouping``), so for additive
aggregates parent = sum(children), and for the others the parent still bounds
or combines them.

The rule, per aggregate column: in every relation the number of suppressed
members is 0 or at least 2. It is enforced by suppressing, while some relation
has exactly one suppressed member, the released child with the smallest
contributor count (the cheapest loss), or the parent when no child is left;
this runs to a fixpoint, and ends because every step suppresses one more cell.

Known shortcut: for one hierarchy (a ROLLUP) the rule leaves every suppressed
cell undetermined even by exact linear algebra over all relations (the
relations form a tree). For crossed margins (CUBE, several GROUPING SETS) it
stops the simple subtraction attack, but grouping sets two keys apart are not
linked at all. So this module serves only outputs without a declared grid: when
every key has a declared code list (``jobs.grid``), ``policies.disclosure.tables``
chooses the pattern on the declared hypercube and runs the interval audit of
:mod:`policies.audit` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .errors import PolicyRefusal
from .outputs import OutputRole, OutputSpec, evidence_name, grouping_mask

RULE = "complementary"


@dataclass(frozen=True)
class Relation:
    """One parent row and the child rows that split it by one more key."""

    parent: int
    children: tuple[int, ...]
    key: str  # the group key whose values tell the children apart

    def members(self) -> tuple[int, ...]:
        return (self.parent, *self.children)


def key_values(table: pa.Table, spec: OutputSpec) -> dict[str, list[Any]]:
    """Values of every group key (per row), read from the visible column that carries it."""
    return _key_columns(spec, table)


def _key_columns(spec: OutputSpec, table: pa.Table) -> dict[str, list[Any]]:
    """Values of every group key, read from the visible column that carries it."""
    by_key = {c.group_key: c.name for c in spec.columns if c.role is OutputRole.GROUP}
    values: dict[str, list[Any]] = {}
    for key in spec.group_keys:
        name = by_key.get(key, key)
        if name not in table.column_names:
            raise PolicyRefusal(
                "evidence_missing",
                f"group key '{key}' is not in the output, so its margins cannot be checked",
                subject=key,
                hint="select every GROUP BY key when using ROLLUP, CUBE or GROUPING SETS",
            )
        values[key] = table.column(name).to_pylist()
    return values


def relations(table: pa.Table, spec: OutputSpec) -> list[Relation]:
    """Every parent/children relation among the rows of an output with margins."""
    if evidence_name("grouping") not in table.column_names:
        raise PolicyRefusal(
            "evidence_missing",
            "the output lacks the evidence column '__grouping', so its margins cannot be checked",
            subject=evidence_name("grouping"),
            hint="this is a platform fault; report it with the job id",
        )
    masks = table.column(evidence_name("grouping")).to_pylist()
    keys = _key_columns(spec, table)
    sets = list(dict.fromkeys(frozenset(s) for s in spec.grouping_sets))
    mask_of = {s: grouping_mask(spec, tuple(s)) for s in sets}
    known = set(mask_of.values())
    for row, mask in enumerate(masks):
        if mask not in known:
            raise PolicyRefusal(
                "evidence_mismatch",
                f"output row {row} belongs to no declared grouping set",
                subject=evidence_name("grouping"),
                hint="this is a platform fault; report it with the job id",
            )
    rows_of = {s: [r for r, m in enumerate(masks) if m == mask_of[s]] for s in sets}

    def label(row: int, keyset: Iterable[str]) -> tuple[Any, ...]:
        return tuple(keys[k][row] for k in spec.group_keys if k in keyset)

    found: list[Relation] = []
    for parent_set in sets:
        for child_set in sets:
            extra = child_set - parent_set
            if len(extra) != 1 or not parent_set < child_set:
                continue
            children_by_label: dict[tuple[Any, ...], list[int]] = {}
            for row in rows_of[child_set]:
                children_by_label.setdefault(label(row, parent_set), []).append(row)
            for row in rows_of[parent_set]:
                children = children_by_label.get(label(row, parent_set), [])
                if children:
                    found.append(Relation(row, tuple(children), next(iter(extra))))
    return found


def complete(
    found: Sequence[Relation],
    suppressed: Iterable[int],
    weights: Sequence[int | None],
) -> set[int]:
    """The rows to suppress in addition to ``suppressed`` (one aggregate column).

    ``weights`` are the cells' contributor counts: the cheapest released child
    is taken first, ties broken by row order so the result is reproducible.
    """
    hidden = set(suppressed)
    added: set[int] = set()
    changed = True
    while changed:
        changed = False
        for relation in found:
            members = relation.members()
            if sum(1 for m in members if m in hidden) != 1:
                continue
            open_children = [c for c in relation.children if c not in hidden]
            if open_children:
                pick = min(open_children, key=lambda r: (weights[r] or 0, r))
            else:
                pick = relation.parent
            hidden.add(pick)
            added.add(pick)
            changed = True
    return added
