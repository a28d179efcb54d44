"""The interval audit of a lineage's hypercube (policies/audit.py) and its secondary pattern.

The audit is checked against a reference written independently here: one linear
program over every cell of the hypercube with every one-dimension relation as an
equation (the textbook formulation), while the module works on interior cells only.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from policies.audit import (
    TOTAL,
    AuditParams,
    Cell,
    Hypercube,
    audit,
    cost_key,
    secondary_pattern,
)


def table(hc: Hypercube, interior: dict[Cell, float]) -> dict[Cell, float]:
    """Every cell of the hypercube, margins as sums of the interior."""
    values: dict[Cell, float] = {}
    for cell in itertools.product(*[(*cs, TOTAL) for cs in hc.codes]):
        values[cell] = sum(
            v
            for inner, v in interior.items()
            if all(c is TOTAL or c == i for c, i in zip(cell, inner, strict=True))
        )
    return values


def cube(*sizes: int) -> Hypercube:
    names = tuple("abcdefg"[: len(sizes)])
    return Hypercube(
        names, tuple(tuple(f"{n}{i}" for i in range(s)) for n, s in zip(names, sizes, strict=True))
    )


def interior_of(hc: Hypercube, numbers: list[float]) -> dict[Cell, float]:
    cells = list(itertools.product(*hc.codes))
    return {c: float(numbers[i % len(numbers)]) for i, c in enumerate(cells)}


def reference(hc: Hypercube, values, released, cell, lower=0.0) -> tuple[float, float]:
    """Min and max of ``cell`` over all cells as variables and every relation."""
    cells = list(values)
    at = {c: i for i, c in enumerate(cells)}
    rows, rhs = [], []
    for c in cells:
        for i, code in enumerate(c):
            if code is TOTAL:
                row = np.zeros(len(cells))
                row[at[c]] = 1
                for child in hc.relations(c)[i][1]:
                    row[at[child]] -= 1
                rows.append(row)
                rhs.append(0.0)
    for c in released:
        row = np.zeros(len(cells))
        row[at[c]] = 1
        rows.append(row)
        rhs.append(values[c])
    found = []
    for sense in (1, -1):
        objective = np.zeros(len(cells))
        objective[at[cell]] = sense
        result = linprog(objective, A_eq=np.array(rows), b_eq=rhs, bounds=(lower, None))
        found.append(sense * result.fun if result.status == 0 else -sense * np.inf)
    return found[0], found[1]


def test_two_by_two_with_one_suppressed_cell_is_recovered_exactly():
    hc = cube(2, 2)
    values = table(hc, interior_of(hc, [5, 10, 10, 5]))
    secret = ("a0", "b0")
    result = audit(hc, [c for c in values if c != secret], [secret], values)
    assert not result.passed
    assert result.narrowed == (secret,)
    assert (result.cells[secret].low, result.cells[secret].high) == (5.0, 5.0)


def test_two_by_two_rectangle_passes():
    hc = cube(2, 2)
    values = table(hc, interior_of(hc, [5, 10, 10, 5]))
    inner = set(itertools.product(*hc.codes))
    secret = ("a0", "b0")
    result = audit(hc, [c for c in values if c not in inner], [secret], values)
    assert result.passed
    assert (result.cells[secret].low, result.cells[secret].high) == (0.0, 15.0)


def test_rectangle_in_a_larger_table_passes_and_matches_the_reference():
    hc = cube(3, 4)
    values = table(hc, interior_of(hc, [12, 30, 7, 25, 40, 18, 9, 33, 21, 14, 50, 8]))
    hidden = {("a0", "b0"), ("a0", "b2"), ("a2", "b0"), ("a2", "b2")}
    released = [c for c in values if c not in hidden]
    result = audit(hc, released, [("a0", "b0")], values)
    assert result.passed
    got = result.cells[("a0", "b0")]
    assert (got.low, got.high) == pytest.approx(reference(hc, values, released, ("a0", "b0")))


def test_three_way_table_two_keys_apart_is_caught():
    """The red-team case: the grouping sets (a, b, c) and (a) are two keys apart, so the
    old rule (policies/suppression.py) saw no relation and left one hidden cell alone;
    the total of a gives it back. The hypercube's relations chain through the
    unreleased (a, b) totals, so the audit finds it, and the pattern fixes it."""
    hc = cube(2, 2, 2)
    values = table(hc, interior_of(hc, [3, 20, 15, 12, 18, 25, 11, 14]))
    secret = ("a0", "b0", "c0")
    released = {c for c in hc.grouping_set("abc") if c != secret} | set(hc.grouping_set("a"))
    result = audit(hc, released, [secret], values)
    assert result.narrowed == (secret,)
    assert result.cells[secret].low == result.cells[secret].high == 3.0
    pattern = secondary_pattern(hc, released, {secret}, values)
    assert pattern.audit.passed
    got = pattern.audit.cells[secret]
    final = released - pattern.suppressed
    assert (got.low, got.high) == pytest.approx(reference(hc, values, final, secret))


def test_three_way_all_margins_one_cell_two_keys_apart():
    """All margins of a 3-way table released, and a 2x2 'rectangle' hidden in the
    (a, b) plane for c0: the (a, c) and (b, c) margins still give the cells back."""
    hc = cube(3, 3, 2)
    values = table(hc, interior_of(hc, [4, 17, 22, 13, 26, 9, 31, 12, 16, 8, 27, 19, 14]))
    secret = ("a0", "b0", "c0")
    hidden = {secret, ("a0", "b1", "c0"), ("a1", "b0", "c0"), ("a1", "b1", "c0")}
    released = [c for c in values if c not in hidden]
    result = audit(hc, released, [secret], values)
    assert result.narrowed == (secret,)
    got = result.cells[secret]
    assert got.low == got.high == 4.0


def test_zero_cells_need_protection():
    hc = cube(2, 3)
    values = table(hc, interior_of(hc, [0, 0, 0, 6, 8, 3]))
    secret = ("a0", "b0")
    # row a0 sums to 0: a released zero margin gives every cell under it away
    hidden = {secret, ("a0", "b1"), ("a1", "b0"), ("a1", "b1")}
    result = audit(hc, [c for c in values if c not in hidden], [secret], values)
    assert result.narrowed == (secret,)
    assert result.cells[secret].need_high == 1.0
    # with the row total hidden too, the zero can be as much as its column allows
    hidden |= {("a0", TOTAL), ("a1", TOTAL), (TOTAL, TOTAL)}
    result = audit(hc, [c for c in values if c not in hidden], [secret], values)
    assert result.passed
    assert result.cells[secret].low == 0.0 and result.cells[secret].high == 6.0


def test_negative_contributions_declared():
    hc = cube(2, 2)
    values = table(hc, interior_of(hc, [5, -3, 10, 4]))
    inner = set(itertools.product(*hc.codes))
    released = [c for c in values if c not in inner]
    secret = ("a0", "b1")
    bounded = audit(hc, released, [secret], values)  # as if it were a count
    assert (bounded.cells[secret].low, bounded.cells[secret].high) == (0.0, 1.0)
    result = audit(hc, released, [secret], values, AuditParams(lower_bound=None))
    assert (result.cells[secret].low, result.cells[secret].high) == (-np.inf, np.inf)
    assert result.passed


def test_protected_margin():
    hc = cube(2, 3)
    values = table(hc, interior_of(hc, [5, 8, 2, 10, 4, 7]))
    margin = ("a0", TOTAL)
    with pytest.raises(ValueError, match="both"):
        audit(hc, list(values), [margin], values)
    # every cell under it released: the hidden total is their sum
    released = [c for c in values if c[1] is not TOTAL]
    result = audit(hc, released, [margin], values)
    assert result.narrowed == (margin,) and result.cells[margin].low == 15.0
    # two cells under it hidden, their column totals hidden too: it is free upwards
    hidden = {("a0", "b0"), ("a0", "b1"), (TOTAL, "b0"), (TOTAL, "b1")}
    released = [c for c in released if c not in hidden]
    result = audit(hc, released, [margin, ("a0", "b0")], values)
    assert result.passed
    assert (result.cells[margin].low, result.cells[margin].high) == (2.0, np.inf)


def test_inconsistent_release_is_refused():
    hc = cube(2, 2)
    values = table(hc, interior_of(hc, [5, 10, 10, 5]))
    values[(TOTAL, TOTAL)] = 31
    with pytest.raises(ValueError, match="not the sum"):
        audit(hc, list(values), [], values)
    with pytest.raises(ValueError, match="no solution"):
        audit(hc, [c for c in values if c != ("a0", "b0")], [("a0", "b0")], values)


@st.composite
def lineages(draw):
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    hc = cube(*sizes)
    cells = list(itertools.product(*[(*cs, TOTAL) for cs in hc.codes]))
    interior = list(itertools.product(*hc.codes))
    numbers = draw(st.lists(st.integers(0, 20), min_size=len(interior), max_size=len(interior)))
    values = table(hc, dict(zip(interior, map(float, numbers), strict=True)))
    status = draw(st.lists(st.sampled_from("rrrpu"), min_size=len(cells), max_size=len(cells)))
    released = {c for c, s in zip(cells, status, strict=True) if s == "r"}
    protected = {c for c, s in zip(cells, status, strict=True) if s == "p"}
    later = draw(st.lists(st.sampled_from("rrpu-"), min_size=len(cells), max_size=len(cells)))
    return hc, values, released, protected, later


@settings(max_examples=60, deadline=None)
@given(lineages())
def test_incremental_equals_full(case):
    hc, values, released, protected, later = case
    first = audit(hc, released, protected, values)
    cells = list(values)
    # a later release adds cells (r), protects unreleased ones (p), or leaves them (u, -)
    released2, protected2 = set(released), set(protected)
    for cell, step in zip(cells, later, strict=True):
        if cell in released or cell in protected:
            continue
        if step == "r":
            released2.add(cell)
        elif step == "p":
            protected2.add(cell)
    full = audit(hc, released2, protected2, values)
    again = audit(hc, released2, protected2, values, previous=first)
    assert full.cells.keys() == again.cells.keys()
    for cell, want in full.cells.items():
        got = again.cells[cell]
        assert (got.low, got.high, got.narrowed) == pytest.approx(
            (want.low, want.high, want.narrowed)
        )
    # and taken back again (as secondary_pattern does), still the same
    back = audit(hc, released, protected, values, previous=again)
    assert back.cells == first.cells
    # the intervals are those of the textbook formulation
    for cell, got in full.cells.items():
        assert (got.low, got.high) == pytest.approx(reference(hc, values, released2, cell))


def test_incremental_solves_only_what_the_new_cells_reach():
    hc = cube(4, 4, 3)
    values = table(hc, interior_of(hc, [12, 30, 7, 25, 40, 18, 9, 33, 21, 14, 50]))
    history = set(hc.grouping_set("abc"))
    protected = {("a0", "b0", "c0"), ("a3", "b3", "c2")}
    pattern = secondary_pattern(hc, history - protected, protected, values)
    assert pattern.audit.passed
    released = history - protected - pattern.suppressed
    first = pattern.audit
    # a new release: the (a, b) totals for a0 only, where the first secret lives
    new = {c for c in hc.grouping_set("ab") if c[0] == "a0"}
    later = audit(hc, released | new, protected, values, previous=first)
    assert later.reused == 1 and later.solved <= 2
    assert later.cells == audit(hc, released | new, protected, values).cells


def test_secondary_pattern_makes_a_failing_pattern_pass_and_only_grows():
    hc = cube(3, 4, 2)
    values = table(hc, interior_of(hc, [12, 30, 7, 25, 40, 18, 9, 33, 21, 14, 50, 8, 3]))
    protected = {("a0", "b0", "c0"), ("a1", "b2", TOTAL)}
    released = {c for c in values if c not in protected}
    assert not audit(hc, released, protected, values).passed
    fixed = set(hc.grouping_set("a"))
    pattern = secondary_pattern(hc, released, protected, values, fixed=fixed)
    assert pattern.audit.passed and not pattern.unresolved
    assert pattern.suppressed <= released and not pattern.suppressed & fixed
    assert set(pattern.audit.cells) == protected
    final = released - pattern.suppressed
    assert audit(hc, final, protected, values).passed
    # growing it again from the pattern found leaves it as it is
    again = secondary_pattern(hc, final, protected, values, fixed=fixed)
    assert again.suppressed == frozenset()


def test_secondary_pattern_reports_what_it_cannot_fix():
    hc = cube(2, 2)
    values = table(hc, interior_of(hc, [5, 10, 10, 5]))
    secret = ("a0", "b0")
    released = {c for c in values if c != secret}
    pattern = secondary_pattern(hc, released, {secret}, values, fixed=released)
    assert pattern.unresolved == (secret,) and not pattern.suppressed


def test_pattern_does_not_depend_on_values():
    hc = cube(4, 3, 2)
    protected = {("a0", "b0", "c0"), ("a2", "b1", "c1"), ("a3", TOTAL, "c0")}
    patterns = []
    for numbers in ([40, 55, 31, 62, 47, 38], [120, 95, 230, 180, 310, 150, 99]):
        values = table(hc, interior_of(hc, numbers))
        released = {c for c in values if c not in protected}
        found = secondary_pattern(hc, released, protected, values)
        assert found.audit.passed
        patterns.append(found.suppressed)
    assert patterns[0] == patterns[1]
    # chosen finest first: most suppressed cells are interior ones
    assert sum(1 for c in patterns[0] if TOTAL not in c) >= len(patterns[0]) // 2


def test_cost_key_orders_finest_level_then_declared_order():
    hc = cube(2, 2)
    cells = [("a1", TOTAL), ("a0", "b1"), (TOTAL, TOTAL), ("a0", "b0")]
    ordered = sorted(cells, key=lambda c: cost_key(hc, c))
    assert ordered == [("a0", "b0"), ("a0", "b1"), ("a1", TOTAL), (TOTAL, TOTAL)]
