"""A secondary suppression pattern that passes the interval audit (:mod:`.interval`).

:func:`secondary_pattern` grows the suppressed cells from the protected ones, cheapest
first (:func:`~.interval.cost_key`), auditing after each round until no protected cell
can be narrowed below its protection interval; :func:`structural_pattern` is the quick
structural pass it starts from.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection
from dataclasses import dataclass

from .interval import (
    TOTAL,
    AuditParams,
    AuditResult,
    Cell,
    Hypercube,
    Levels,
    Values,
    audit,
    cost_key,
)


@dataclass(frozen=True)
class Pattern:
    """The cells :func:`secondary_pattern` took out of the release, and the final audit."""

    suppressed: frozenset[Cell]
    audit: AuditResult
    rounds: int  # audits after the first

    @property
    def unresolved(self) -> tuple[Cell, ...]:  # still narrowed: the release cannot leave
        return self.audit.narrowed


def secondary_pattern(
    hypercube: Hypercube,
    released: Collection[Cell],
    protected: Collection[Cell],
    true_values: Values,
    params: AuditParams | None = None,
    *,
    fixed: Collection[Cell] = (),
    levels: Levels | None = None,
    previous: AuditResult | None = None,
    max_rounds: int = 100,
) -> Pattern:
    """Cells to take out of ``released`` (never ``fixed`` ones, already out) so the audit
    passes; protected cells stay: the pattern only grows. Each cell costs the same: the
    finest level first, then the declared order (:func:`cost_key`). (1) Value-free:
    while a relation holds a suppressed cell as its only unknown, take out its cheapest
    released member. (2) For each narrowed cell, take out the cheapest released cell of
    the relations nearest to it through unknowns, first those under the released total
    over it with the fewest unknowns (the equation that pins it), unless a pick of this
    round already left one of its relations whose total is released; audit again
    (incrementally). Not
    guaranteed: the fewest cells (greedy); one pattern for any values (step 2 follows
    the narrowed cells, which values decide); success (see :attr:`Pattern.unresolved`).
    """
    open_ = set(released)
    kept, guard = set(fixed), set(protected)
    taken = _structural(hypercube, open_, guard, kept)
    result = audit(hypercube, open_, guard, true_values, params, levels=levels, previous=previous)
    rounds = 0
    while not result.passed and rounds < max_rounds:
        picks: set[Cell] = set()
        for cell in result.narrowed:
            tight = [(p, cs) for p, cs in hypercube.relations(cell) if p in open_]
            if any(m in picks for p, cs in tight for m in (p, *cs)):
                continue  # a pick of this round already loosens one of its equations
            pick = _complement(hypercube, cell, open_ - picks, kept, result)
            if pick is not None:
                picks.add(pick)
        if not picks:
            break
        open_ -= picks
        taken |= picks | _structural(hypercube, open_, picks, kept)  # only theirs can be new
        rounds += 1
        result = audit(hypercube, open_, guard, true_values, params, levels=levels, previous=result)
    return Pattern(frozenset(taken), result, rounds)


def structural_pattern(
    hypercube: Hypercube,
    released: Collection[Cell],
    protected: Collection[Cell],
    *,
    fixed: Collection[Cell] = (),
) -> frozenset[Cell]:
    """Step 1 of :func:`secondary_pattern` alone (no values): the cells to take out of
    ``released`` until no relation holds a protected or taken cell as its only unknown.
    For measures that are not sums of their children (COUNT DISTINCT, MIN, MAX,
    quantiles), whose margins give inequalities only, so no interval audit applies."""
    open_ = set(released)
    return frozenset(_structural(hypercube, open_, set(protected), set(fixed)))


def _structural(hc: Hypercube, open_: set[Cell], guard: set[Cell], kept: set[Cell]) -> set[Cell]:
    """Step 1 of :func:`secondary_pattern`: takes cells out of ``open_``; returns them."""
    taken: set[Cell] = set()
    while True:
        before = len(taken)
        for cell in sorted(guard | taken, key=lambda c: cost_key(hc, c)):
            for parent, children in hc.relations(cell):
                others = [m for m in (parent, *children) if m != cell]
                choices = [m for m in others if m not in kept]
                if all(m in open_ for m in others) and choices:
                    taken.add(min(choices, key=lambda c: cost_key(hc, c)))
                    open_ -= taken
        if len(taken) == before:
            return taken


def _complement(
    hc: Hypercube, cell: Cell, open_: set[Cell], kept: set[Cell], state: AuditResult
) -> Cell | None:
    """The cheapest released cell in the relations nearest ``cell`` through unknowns;
    among those, first the cells under the released total over ``cell`` with the fewest
    unknown cells in ``state`` (the equation that pins it down), the finer first."""
    inner = [i for i, code in enumerate(cell) if code is not TOTAL]
    totals = []
    for k in range(1, len(inner) + 1):
        for rolled in itertools.combinations(inner, k):
            above = tuple(TOTAL if i in rolled else code for i, code in enumerate(cell))
            flat = hc.index(above)
            if not math.isnan(state._values[flat]):
                totals.append((float(state._unknown[flat]), k, above))

    def nearness(other: Cell) -> tuple[float, int]:
        under = (
            (unknown, k)
            for unknown, k, above in totals
            if all(a is TOTAL or a == o for a, o in zip(above, other, strict=True))
        )
        return min(under, default=(math.inf, len(cell) + 1))

    seen, frontier = {cell}, [cell]
    while frontier:
        near = {m for c in frontier for p, cs in hc.relations(c) for m in (p, *cs)} - seen
        choices = (near & open_) - kept
        if choices:
            return min(choices, key=lambda c: (nearness(c), cost_key(hc, c)))
        frontier = list(near - open_)
        seen |= near
    return None
