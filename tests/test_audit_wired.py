"""The interval audit in the job path (issue 17, item 3, for one job's table).

When every group key has a declared code list, the secondary suppression of a table
with margins is chosen on the declared hypercube (``policies.audit.secondary_pattern``)
and the table leaves only if the interval audit passes. Each test runs a real job and
attacks the released product from the outside: a linear program over the finest cells
(``scipy.optimize.linprog``, written here, not the module's) gives the least and
greatest value each suppressed cell can take given every released cell.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy.optimize import linprog

from policies.audit import TOTAL, AuditParams, Hypercube, audit, secondary_pattern
from policies.classes import Classification
from policies.disclosure import hypercube
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.run.views import withheld_report

KEYS = ("region", "sector", "size")
CODES = {
    "region": ["r0", "r1", "r2", "r3"],
    "sector": ["s0", "s1", "s2"],
    "size": ["z0", "z1", "z2"],
}
SMALL = ("r0", "s0", "z0")  # 3 firms: below the threshold of 10
BIG = ("r2", "s1", "z1")  # one firm holds most of the staff: dominance suppresses its SUM
INTERIOR = list(itertools.product(*(CODES[k] for k in KEYS)))


def firms_in(cell: tuple[str, ...]) -> int:
    if cell == SMALL:
        return 3
    a, b, c = (CODES[k].index(v) for k, v in zip(KEYS, cell, strict=True))
    return 12 + (5 * a + 3 * b + 7 * c) % 17


def _firms() -> list[dict]:
    rows = []
    for cell in INTERIOR:
        for i in range(firms_in(cell)):
            staff = 5000 if cell == BIG and i == 0 else 2 + len(rows) % 9
            rows.append(
                {"fid": f"F{len(rows):05d}", **dict(zip(KEYS, cell, strict=True)), "staff": staff}
            )
    return rows


def _classification(declared: bool) -> Classification:
    return Classification.from_dict(
        {
            "entity_key": "fid",
            "entity_kind": "organisation",
            "columns": {
                "fid": "identifier",
                **dict.fromkeys(KEYS, "dimension"),
                "staff": "measure",
            },
            **({"domains": {k: {"codes": v} for k, v in CODES.items()}} if declared else {}),
        }
    )


def _submit(platform, provider, make_principal, tmp_path, sql, *, declared=True, firms=None):
    path = tmp_path / "firms.csv"
    pacsv.write_csv(pa.Table.from_pylist(_firms() if firms is None else firms), path)
    vault.register(platform, provider, "firms", str(path), _classification(declared))
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        with platform.store.read() as conn:
            bank = by_name(conn, "bank")
        seen = service.submit(bank, {"sql": sql})
        whole = service.outcome(authority, seen.job_id)
    finally:
        service.close()
    return seen, whole


def _released(platform, provider, make_principal, tmp_path, sql, *, declared=True):
    """The released rows, and the cells the primary rules suppressed (column -> keys),
    read from the report the auditors see."""
    seen, whole = _submit(platform, provider, make_principal, tmp_path, sql, declared=declared)
    assert seen.state is JobState.RELEASED, (seen.state, whole.report)
    table = pq.read_table(platform.home / "products" / seen.product_id / "output.parquet")
    rows = table.to_pylist()
    primary: dict[str, set[tuple]] = {}
    for cell in whole.report["cells"]:
        if cell["verdict"] == "suppress" and set(cell["rules"]) - {"complementary"}:
            row = rows[cell["row"]]
            primary.setdefault(cell["column"], set()).add(tuple(row[k] for k in KEYS))
    return rows, primary


def assert_protected(rows: list[dict], primary: dict[str, set[tuple]]) -> None:
    """No cell a primary rule suppressed can be worked out from the released cells: its
    range is at least one unit wide (secondary cells passed every rule: they may be).
    Sums only: an average's cells are not sums of their children."""
    for column, cells in primary.items():
        if column not in ("n", "staff"):
            continue
        ranges = attacker_ranges(rows, column)
        for keys in cells:
            low, high = ranges[keys]
            assert high - low >= 1, (column, keys, low, high)


def attacker_ranges(rows: list[dict], column: str) -> dict[tuple, tuple[float, float]]:
    """Per suppressed row (keys, None for a total): its least and greatest value given
    every released row of ``column`` and that every finest cell is at least 0."""

    def members(row: dict) -> np.ndarray:
        return np.array(
            [
                all(row[k] is None or row[k] == v for k, v in zip(KEYS, c, strict=True))
                for c in INTERIOR
            ],
            dtype=float,
        )

    known = [r for r in rows if r[column] is not None]
    a_eq = np.array([members(r) for r in known])
    b_eq = np.array([float(r[column]) for r in known])
    found = {}
    for row in rows:
        if row[column] is not None:
            continue
        objective = members(row)
        low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0 and high.status in (0, 3)
        found[tuple(row[k] for k in KEYS)] = (low.fun, -high.fun if high.status == 0 else np.inf)
    return found


def true_value(keys: tuple, column: str = "n") -> int:
    return sum(
        1 if column == "n" else firm[column]
        for firm in _firms()
        if all(k is None or k == firm[key] for key, k in zip(KEYS, keys, strict=True))
    )


# The 3-way table, one 2-way margin and one 1-way margin: (region) is two keys apart
# from (region, sector, size), so suppression.py links no relation between them.
TWO_APART = (
    "SELECT region, sector, size, COUNT(*) AS n, SUM(staff) AS staff FROM firms "
    "GROUP BY GROUPING SETS ((region, sector, size), (sector, size), (region))"
)
CUBE = (
    "SELECT region, sector, size, COUNT(*) AS n, SUM(staff) AS staff, AVG(staff) AS mean "
    "FROM firms GROUP BY CUBE (region, sector, size)"
)


def test_without_declared_codes_the_old_path_gives_the_small_cell_back(
    platform, provider, make_principal, tmp_path
):
    """The attack the wiring stops: with no code lists there is no grid and the one-key
    rule runs. The differencing defence catches the small count (the total of region r0
    less its released rows is 3 firms), but not the dominated sum, whose firms (more
    than k) are in released rows through their count: the staff total of region r2
    less its released staff cells is the dominated cell."""
    rows, _primary = _released(
        platform, provider, make_principal, tmp_path, TWO_APART, declared=False
    )
    staff = true_value(BIG, "staff")
    assert attacker_ranges(rows, "staff")[BIG] == pytest.approx((staff, staff))


def test_subtotals_two_keys_apart_leave_no_suppressed_cell_recomputable(
    platform, provider, make_principal, tmp_path
):
    rows, primary = _released(platform, provider, make_principal, tmp_path, TWO_APART)
    assert primary["n"] == {SMALL} and {SMALL, BIG} <= primary["staff"]
    ranges = attacker_ranges(rows, "n")
    low, high = ranges[SMALL]  # suppressed
    # the attacker cannot tell it from a cell at the threshold, nor pin it down
    assert low <= 2 and high >= 10
    staff = true_value(BIG, "staff")
    low, high = attacker_ranges(rows, "staff")[BIG]
    # dominance: (2, 90%) asks about 11% of the value on each side
    assert low <= staff * 0.89 and high >= staff * 1.11
    assert_protected(rows, primary)
    assert sum(r["n"] is not None for r in rows) > len(rows) / 2  # most of it still leaves


def test_a_cube_with_every_margin_protects_counts_sums_and_averages(
    platform, provider, make_principal, tmp_path
):
    rows, primary = _released(platform, provider, make_principal, tmp_path, CUBE)
    assert len(rows) == 5 * 4 * 4  # every declared combination and total
    assert {SMALL, BIG} <= primary["staff"] and SMALL in primary["n"]
    assert_protected(rows, primary)
    low, high = attacker_ranges(rows, "n")[SMALL]
    assert low <= true_value(SMALL) - 1 and high >= 10
    staff = true_value(BIG, "staff")
    low, high = attacker_ranges(rows, "staff")[BIG]
    assert low <= staff * 0.89 and high >= staff * 1.11
    # one pattern for every column: an average is never beside a hidden count or sum
    for row in rows:
        hidden = {c for c in ("n", "staff", "mean") if row[c] is None}
        assert hidden in (set(), {"n", "staff", "mean"}), row


def test_values_outside_the_declared_codes_are_cells_of_their_own(
    platform, provider, make_principal, tmp_path
):
    """Rows whose region is NULL (registration refuses undeclared values, not NULL) stay
    in the output as the data gives them; the hypercube gives NULL a code of its own,
    so the totals still add up and the audit runs (an inconsistent sum would hold back
    the whole table)."""
    extra = [
        {"fid": f"N{i:03d}", "region": region, "sector": "s1", "size": "z1", "staff": 4}
        for i, region in enumerate([None] * 12)
    ]
    seen, whole = _submit(
        platform, provider, make_principal, tmp_path, TWO_APART, firms=_firms() + extra
    )
    assert seen.state is JobState.RELEASED, whole.report
    counts = whole.report["counts"]
    assert counts["audit"] == 0 and counts["threshold"] >= 1 and counts["complementary"] >= 1
    table = pq.read_table(platform.home / "products" / seen.product_id / "output.parquet")
    rows = table.to_pylist()
    regions = [r["region"] for r in rows if r["sector"] is not None and r["size"] is not None]
    assert regions.count(None) == 3 * 3 + 1  # the (sector, size) totals, and the NULL region
    small = [r for r in rows if tuple(r[k] for k in KEYS) == SMALL]
    assert small and small[0]["n"] is None


def test_an_unresolved_pattern_withholds_the_job_and_tells_the_operator_nothing(
    platform, provider, make_principal, tmp_path, monkeypatch
):
    """A pattern the greedy cannot finish (no rounds allowed here) leaves nothing: the
    job is withheld, and its operator reads the one text every withheld job reads."""
    monkeypatch.setattr(hypercube, "PATTERN_ROUNDS", 0)
    seen, whole = _submit(platform, provider, make_principal, tmp_path, TWO_APART)
    assert seen.state is JobState.WITHHELD
    assert seen.report == withheld_report() and seen.reason is None
    assert whole.report["verdict"] == "refused"
    assert whole.report["counts"]["audit"] == whole.report["counts"]["cells"]


@pytest.mark.parametrize("seed", range(6))
def test_the_job_paths_witness_mode_gives_the_exact_audits_verdicts(seed):
    """The check runs the audit with ``witness=True`` (an end another optimum shows past
    its need is not solved for): the narrowed cells, and so the pattern, are those of
    the exact audit."""
    rng = np.random.default_rng(seed)
    sizes = (4, 3, 3)
    hc = Hypercube(
        tuple("abc"),
        tuple(tuple(f"{n}{i}" for i in range(s)) for n, s in zip("abc", sizes, strict=True)),
    )
    inner = rng.poisson(rng.choice([4.0, 25.0], size=sizes, p=[0.2, 0.8])).astype(float)
    values = {}
    for cell in itertools.product(*[(*codes, TOTAL) for codes in hc.codes]):
        at = tuple(
            slice(None) if c is TOTAL else codes.index(c)
            for c, codes in zip(cell, hc.codes, strict=True)
        )
        values[cell] = float(inner[at].sum())
    sets = [("a", "b", "c"), ("b", "c"), ("a",), ("a", "c"), ()][: 2 + seed % 4]
    cells = {c for s in sets for c in hc.grouping_set(s)}
    protected = {c for c in cells if values[c] < 10}
    exact, quick = AuditParams(), AuditParams(witness=True)
    first = audit(hc, cells - protected, protected, values, exact)
    second = audit(hc, cells - protected, protected, values, quick)
    assert protected and first.narrowed == second.narrowed
    assert second.solved <= first.solved
    one = secondary_pattern(hc, cells - protected, protected, values, exact)
    two = secondary_pattern(hc, cells - protected, protected, values, quick)
    assert one.suppressed == two.suppressed and one.unresolved == two.unresolved
