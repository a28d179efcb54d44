"""The interval audit across releases: one hypercube per lineage (issue 17, item 3).

Note 2 of docs/disclosure.md: a county x industry SUM(capital) table suppresses a cell
by dominance; the county totals released later give it back (the county's total less
its released industries), and so does a grand total after them. Each test runs real
jobs through :class:`JobService` over an organisation dataset with declared code lists
(released without checkers), and attacks the released products from outside: a linear
program of its own (``scipy.optimize.linprog``) over the finest cells, with every
released value of every release as an equation, gives the range of the suppressed cell.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy.optimize import linprog
from sqlalchemy import select

from policies.classes import Classification
from policies.disclosure import DisclosureParams
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.guard import lineage_audit
from sandbox.guard.tables import lineage_cells
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState

COUNTIES = ["c0", "c1", "c2", "c3"]
INDUSTRIES = ["i0", "i1", "i2"]
KEYS = ("county", "industry")
INTERIOR = list(itertools.product(COUNTIES, INDUSTRIES))
TARGET = ("c1", "i0")  # one firm holds most of the cell's capital: dominance suppresses it

CELLS = "SELECT county, industry, SUM(capital) AS capital FROM firms GROUP BY county, industry"
COUNTY = "SELECT county, SUM(capital) AS capital FROM firms GROUP BY county"
TOTAL = "SELECT SUM(capital) AS capital FROM firms"
LARGE = " WHERE size = 'large'"


def _firms() -> list[dict]:
    rows: list[dict] = []
    for county, industry in INTERIOR:
        for i in range(24):
            if (county, industry) == TARGET:
                capital = 5000 if i == 0 else 10
            else:
                capital = 1000 + (len(rows) % 7) * 50
            rows.append(
                {
                    "fid": f"F{len(rows):05d}",
                    "county": county,
                    "industry": industry,
                    "size": "large" if i % 2 == 0 else "small",
                    "capital": capital,
                }
            )
    return rows


def true_value(keys: dict, where_large: bool = False) -> float:
    return float(
        sum(
            f["capital"]
            for f in _firms()
            if all(keys.get(k) in (None, f[k]) for k in KEYS)
            and (not where_large or f["size"] == "large")
        )
    )


CLASSIFICATION = {
    "entity_key": "fid",
    "entity_kind": "organisation",
    "columns": {
        "fid": "identifier",
        "county": "dimension",
        "industry": "dimension",
        "size": "dimension",
        "capital": "measure",
    },
    "domains": {
        "county": {"codes": COUNTIES},
        "industry": {"codes": INDUSTRIES},
        "size": {"codes": ["small", "large"]},
    },
}


@pytest.fixture
def firms(platform, provider, make_principal, tmp_path):
    """The dataset, an authority, and two operators granted it (``bank``, ``fund``)."""
    path = tmp_path / "firms.csv"
    pacsv.write_csv(pa.Table.from_pylist(_firms()), path)
    vault.register(platform, provider, "firms", str(path), Classification.from_dict(CLASSIFICATION))
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    for name in ("bank", "fund"):
        make_principal(name, Role.OPERATOR)
        add_grant(platform, authority, name, "firms", until="2099-01-01")
    return authority


def _operator(platform, name):
    with platform.store.read() as conn:
        return by_name(conn, name)


def _run(platform, authority, sql, operator="bank", service=None):
    """Submit ``sql``; (state, released rows or None, the report the checkers read)."""
    own = service is None
    service = service or JobService(platform, spare=False)
    try:
        seen = service.submit(_operator(platform, operator), {"sql": sql})
        whole = service.outcome(authority, seen.job_id)
    finally:
        if own:
            service.close()
    rows = None
    if seen.state is JobState.RELEASED:
        table = pq.read_table(platform.home / "products" / seen.product_id / "output.parquet")
        rows = table.to_pylist()
    return seen.state, rows, whole.report


def attacker_range(releases: list[list[dict]], cell: tuple[str, str]) -> tuple[float, float]:
    """The least and greatest value of an interior cell given every released value of
    every release (a key a row lacks is rolled up) and that every cell is at least 0."""

    def members(row: dict) -> np.ndarray:
        return np.array(
            [all(row.get(k) in (None, v) for k, v in zip(KEYS, c, strict=True)) for c in INTERIOR],
            dtype=float,
        )

    known = [r for rows in releases for r in rows if r["capital"] is not None]
    a_eq = np.array([members(r) for r in known])
    b_eq = np.array([float(r["capital"]) for r in known])
    objective = np.array([float(c == cell) for c in INTERIOR])
    low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    assert low.status == 0 and high.status in (0, 3)
    return low.fun, (-high.fun if high.status == 0 else np.inf)


def assert_protected(releases: list[list[dict]], cell=TARGET) -> None:
    """The cell keeps its protection interval: the (n, k) and p% rules' share of its
    value on each side (as the output check asks of a suppressed sum)."""
    p = DisclosureParams()
    share = max(0.10, p.p_ratio, 1 / p.dominance_k - 1)
    value = true_value(dict(zip(KEYS, cell, strict=True)))
    low, high = attacker_range(releases, cell)
    assert low <= value * (1 - share) + 1e-6 and high >= value * (1 + share) - 1e-6, (low, high)


def _suppressed(rows: list[dict], **keys) -> bool:
    [row] = [r for r in rows if all(r.get(k) == v for k, v in keys.items())]
    return row["capital"] is None


def test_note_2_the_county_totals_and_the_grand_total_leave_the_dominated_cell_protected(
    platform, firms
):
    state, cells, report = _run(platform, firms, CELLS)
    assert state is JobState.RELEASED and _suppressed(cells, county="c1", industry="i0")
    assert "dominance" in {r for c in report["cells"] for r in c["rules"]}
    state, counties, report = _run(platform, firms, COUNTY)
    assert state is JobState.RELEASED
    assert _suppressed(counties, county="c1")  # the county total would give the cell back
    assert sum(r["capital"] is None for r in counties) == 1  # the others leave
    assert report["lineage_audit"]["earlier"]
    assert_protected([cells, counties])
    # the grand total less the three released county totals is c1's: withheld (audit)
    state, total, report = _run(platform, firms, TOTAL)
    assert state is JobState.WITHHELD and total is None
    assert report["counts"]["audit"] == report["counts"]["cells"] == 1
    assert_protected([cells, counties])


def test_without_the_lineage_audit_the_county_total_gives_the_cell_back(
    platform, firms, monkeypatch
):
    """The attack the audit stops (and what the test above would see without it): the
    differencing defence lets the county total pass, its firms being k or more."""
    monkeypatch.setattr(lineage_audit, "ENABLED", False)
    _state, cells, _report = _run(platform, firms, CELLS)
    state, counties, _report = _run(platform, firms, COUNTY)
    assert state is JobState.RELEASED and not _suppressed(counties, county="c1")
    value = true_value({"county": "c1", "industry": "i0"})
    assert attacker_range([cells, counties], TARGET) == pytest.approx((value, value))
    with pytest.raises(AssertionError):
        assert_protected([cells, counties])


def test_two_operators_together_are_caught_the_same_way(platform, firms):
    _state, cells, _report = _run(platform, firms, CELLS, operator="bank")
    state, counties, _report = _run(platform, firms, COUNTY, operator="fund")
    assert state is JobState.RELEASED and _suppressed(counties, county="c1")
    assert_protected([cells, counties])
    state, _total, _report = _run(platform, firms, TOTAL, operator="bank")
    assert state is JobState.WITHHELD


def test_the_table_after_its_totals_is_held_back_where_it_would_narrow(platform, firms):
    """The other order: totals first, then the table. The table's own check suppresses
    the dominated cell; with the released county total it would be that total less its
    siblings, so a sibling is held back too (the pattern only grows in the new table)."""
    _state, counties, _report = _run(platform, firms, COUNTY)
    assert not _suppressed(counties, county="c1")
    state, cells, report = _run(platform, firms, CELLS)
    assert state is JobState.RELEASED and _suppressed(cells, county="c1", industry="i0")
    assert sum(r["capital"] is None for r in cells if r["county"] == "c1") >= 2
    assert report["counts"]["complementary"] >= 1
    assert_protected([counties, cells])


def test_a_release_over_another_where_is_not_mixed_in(platform, firms):
    """The history is per WHERE text: the large firms' table does not hold back the
    county totals of all firms (their cells are not sums of the same rows), while the
    large firms' own county totals are audited with it."""
    state, large, _report = _run(platform, firms, CELLS + LARGE)
    assert state is JobState.RELEASED and _suppressed(large, county="c1", industry="i0")
    state, counties, report = _run(platform, firms, COUNTY)
    assert state is JobState.RELEASED and not any(r["capital"] is None for r in counties)
    assert not report["lineage_audit"].get("earlier")
    state, large_counties, report = _run(
        platform, firms, COUNTY.replace(" GROUP", LARGE + " GROUP")
    )
    assert state is JobState.RELEASED and _suppressed(large_counties, county="c1")
    with platform.store.read() as conn:
        wheres = set(conn.execute(select(lineage_cells.c.where_key)).scalars())
    assert wheres == {"", "\"size\" = 'large'"}  # normalised text, quoted identifiers


def test_a_restart_keeps_the_history(platform, firms):
    first = JobService(platform, spare=False)
    try:
        _state, cells, _report = _run(platform, firms, CELLS, service=first)
    finally:
        first.close()
    second = JobService(platform, spare=False)  # a new service on the same home
    try:
        state, counties, _report = _run(platform, firms, COUNTY, service=second)
    finally:
        second.close()
    assert state is JobState.RELEASED and _suppressed(counties, county="c1")
    assert_protected([cells, counties])


def test_refused_and_withheld_jobs_record_no_history(platform, firms):
    _run(platform, firms, CELLS)
    state, _rows, _report = _run(platform, firms, COUNTY.replace("county,", "fid,"))
    assert state is JobState.REFUSED
    _run(platform, firms, COUNTY)
    state, _rows, _report = _run(platform, firms, TOTAL)
    assert state is JobState.WITHHELD
    with platform.store.read() as conn:
        rows = conn.execute(select(lineage_cells.c.job_id, lineage_cells.c.pending)).all()
    assert len({job for job, _pending in rows}) == 2 and not any(p for _j, p in rows)


@pytest.fixture
def held(platform, provider, make_principal, tmp_path):
    """The same rows as a person dataset: every job waits for two output checkers."""
    platform.settings = platform.settings.changed(**{"review.person_jobs": True})
    path = tmp_path / "firms.csv"
    pacsv.write_csv(pa.Table.from_pylist(_firms()), path)
    persons = {**CLASSIFICATION, "entity_kind": "person"}
    vault.register(platform, provider, "firms", str(path), Classification.from_dict(persons))
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    for name in ("r1", "r2"):
        make_principal(name, Role.REVIEWER, org=f"University {name}")
    return authority


def _approve(platform, authority, job_id):
    from policies.workflow import Vote
    from sandbox.workflow import airlock

    airlock.appoint_checkers(platform, authority, ["r1", "r2"], job_id=job_id)
    for name in ("r1", "r2"):
        airlock.vote(platform, _operator(platform, name), job_id, Vote.APPROVE, "fine")


def _product(platform, job_id):
    service = JobService(platform, spare=False)
    try:
        seen = service.outcome(_operator(platform, "bank"), job_id)
    finally:
        service.close()
    assert seen.state is JobState.RELEASED
    path = platform.home / "products" / seen.product_id / "output.parquet"
    return pq.read_table(path).to_pylist()


def _submit(platform, sql):
    service = JobService(platform, spare=False)
    try:
        seen = service.submit(_operator(platform, "bank"), {"sql": sql})
    finally:
        service.close()
    assert seen.state is JobState.WITHHELD
    return seen.job_id


def test_withheld_outputs_enter_the_history_when_the_checkers_release_them(platform, held):
    first = _submit(platform, CELLS)
    _approve(platform, held, first)  # now history
    second = _submit(platform, COUNTY)  # checked with the table: c1's total held back
    _approve(platform, held, second)
    cells, counties = _product(platform, first), _product(platform, second)
    assert _suppressed(cells, county="c1", industry="i0") and _suppressed(counties, county="c1")
    assert_protected([cells, counties])
    with platform.store.read() as conn:  # both released: no cell waits any more
        pending = conn.execute(select(lineage_cells.c.pending)).scalars().all()
    assert pending and not any(pending)


def test_a_held_output_is_refused_when_a_release_since_makes_it_narrow(platform, held):
    from policies.errors import PolicyRefusal

    table = _submit(platform, CELLS)  # held: its cells are pending, not history
    totals = _submit(platform, COUNTY)  # checked without the table: c1's total is open
    _approve(platform, held, table)  # the table becomes history first
    with pytest.raises(PolicyRefusal) as refused:
        _approve(platform, held, totals)
    assert refused.value.rule == "audit"
    with platform.store.read() as conn:
        jobs_in_history = set(
            conn.execute(
                select(lineage_cells.c.job_id).where(lineage_cells.c.pending == 0)
            ).scalars()
        )
    assert jobs_in_history == {table}


def test_the_release_transaction_checks_again_against_a_history_grown_since(
    platform, firms, monkeypatch
):
    """Two jobs checked against the same history: the totals are checked before the table
    is released and released after it. The release transaction finds the table in the
    history and checks the totals again, so they cannot both pass without the other."""
    service = JobService(platform, spare=False)
    bank = _operator(platform, "bank")
    table = service.enqueue(bank, {"sql": CELLS}).job_id
    totals = service.enqueue(bank, {"sql": COUNTY}).job_id
    checked = lineage_audit.checked
    ran = []

    def table_released_meanwhile(platform_, kind, prepared, raw, result):
        found = checked(platform_, kind, prepared, raw, result)  # the history without it
        if not ran:
            ran.append(True)
            other = JobService(platform, spare=False)
            try:
                assert other.run(table).state is JobState.RELEASED
            finally:
                other.close()
        return found

    monkeypatch.setattr(lineage_audit, "checked", table_released_meanwhile)
    try:
        assert service.run(totals).state is JobState.RELEASED
    finally:
        service.close()
    monkeypatch.setattr(lineage_audit, "checked", checked)
    assert ran
    cells, counties = _product(platform, table), _product(platform, totals)
    assert _suppressed(counties, county="c1")
    assert_protected([cells, counties])


def test_over_the_cell_limit_the_report_says_the_audit_fell_back(platform, firms, monkeypatch):
    """A hypercube over the limit is not built: the table is audited alone, and the
    report the checkers read says so (the county total then leaves, as before)."""
    from policies.disclosure import lineage

    monkeypatch.setattr(lineage, "LINEAGE_LIMIT", 10)  # county alone: 5; with industry: 20
    _run(platform, firms, CELLS)
    state, counties, report = _run(platform, firms, COUNTY)
    assert state is JobState.RELEASED and not _suppressed(counties, county="c1")
    assert "fell back to this table alone" in report["lineage_audit"]["summary"]


def test_rounded_counts_are_left_out_and_sums_still_audited(platform, firms, make_principal):
    """Under round_10_5 the count cells are rounded (not equations): the report says the
    audit holds sums only; the sums, not rounded, are audited as before."""
    make_principal("shop", Role.OPERATOR)
    add_grant(
        platform, firms, "shop", "firms", until="2099-01-01",
        disclosure={"mitigation": "round_10_5"},
    )  # fmt: skip
    _run(platform, firms, CELLS)
    sql = "SELECT county, COUNT(*) AS n, SUM(capital) AS capital FROM firms GROUP BY county"
    state, counties, report = _run(platform, firms, sql, operator="shop")
    assert state is JobState.RELEASED and _suppressed(counties, county="c1")
    assert "holds sums only" in report["lineage_audit"]["summary"]
    with platform.store.read() as conn:
        measures = set(conn.execute(select(lineage_cells.c.measure)).scalars())
    assert measures == {'sum("capital")'}  # no count_star(*): its cells are rounded
