"""Joins count every table's entities (issue 17, "joins count the wrong entity").

The red team joined social insurance (persons) with enterprises and got a county x
industry average capital released for a single firm: the cell counted the firm's
forty employees. A cell must reach enough entities of every table that reaches it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState

PERSONS = {
    "entity_key": "pid",
    "columns": {"pid": "identifier", "employer": "identifier", "wage": "measure"},
}
FIRMS = {
    "entity_key": "fid",
    "columns": {"fid": "identifier", "county": "dimension", "capital": "measure"},
}


def _csv(tmp_path, name, rows):
    path = tmp_path / f"{name}.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    return str(path)


@pytest.fixture
def service(platform, provider, make_principal, tmp_path):
    # north: one firm with 40 employees; south: 20 firms with 2 employees each
    firms = [{"fid": "F-N", "county": "north", "capital": 9_000_000.0}]
    firms += [{"fid": f"F-S{i}", "county": "south", "capital": 100_000.0 + i} for i in range(20)]
    persons = [{"pid": f"P{i}", "employer": "F-N", "wage": 5000.0 + i} for i in range(40)]
    persons += [{"pid": f"Q{i}", "employer": f"F-S{i // 2}", "wage": 4000.0 + i} for i in range(40)]
    for name, rows, classification in (("firms", firms, FIRMS), ("staff", persons, PERSONS)):
        vault.register(
            platform,
            provider,
            name,
            _csv(tmp_path, name, rows),
            Classification.from_dict(classification),
        )
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    for name in ("firms", "staff"):
        add_grant(platform, authority, "bank", name, until="2099-01-01")
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


@pytest.mark.parametrize(
    "sql",
    [
        # one pass (the visible figures derive from the per-entity rows)
        "SELECT f.county, AVG(f.capital) AS capital, COUNT(*) AS n "
        "FROM staff AS s JOIN firms AS f ON s.employer = f.fid GROUP BY f.county",
        # two passes (COUNT(DISTINCT) of another column keeps the operator's own query)
        "SELECT f.county, SUM(f.capital) AS capital, COUNT(DISTINCT s.employer) AS employers "
        "FROM staff AS s JOIN firms AS f ON s.employer = f.fid GROUP BY f.county",
        # the tables the other way round: the firm is the first table's entity
        "SELECT f.county, AVG(f.capital) AS capital, COUNT(*) AS n "
        "FROM firms AS f JOIN staff AS s ON f.fid = s.employer GROUP BY f.county",
    ],
)
def test_one_firm_behind_forty_employees_is_still_one_firm(platform, service, sql):
    with platform.store.read() as conn:
        bank, city = by_name(conn, "bank"), by_name(conn, "city")
    outcome = service.outcome(city, service.submit(bank, {"sql": sql}).job_id)
    assert outcome.state is JobState.RELEASED, (outcome.state, outcome.reason)
    table = pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")
    rows = {r["county"]: r for r in table.to_pylist()}
    assert rows["north"]["capital"] is None  # one firm: suppressed
    assert rows["south"]["capital"] is not None  # twenty firms: released
    north = [c for c in outcome.report["cells"] if c["row"] == list(rows).index("north")]
    assert any("threshold" in c["rules"] for c in north), outcome.report["cells"]
