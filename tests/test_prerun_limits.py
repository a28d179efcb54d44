"""Limits decided before the run from the SQL and the declared domains (issue 25).

A job that fails on the output-row cap after running tells its operator that the
data holds more groups than the cap. With declared domains the most rows a query
can yield is known from the SQL: over the cap, it is refused before anything runs,
and the refusal is the same whatever the data holds.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from jobs import get_kind
from policies.admission import QueryScope, TableScope
from policies.classes import Classification
from policies.errors import SandboxError
from policies.limits import output_bound
from sandbox.core.principals import Role
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState

COUNTIES = ["north", "south", "east", "west"]
CLASSIFICATION = {
    "entity_key": "pid",
    "entity_kind": "organisation",
    "columns": {
        "pid": "identifier",
        "county": "dimension",
        "sector": "dimension",
        "founded": "dimension",
        "staff": "measure",
    },
    "domains": {
        "county": {"codes": COUNTIES},
        "sector": {"codes": [f"S{i:02d}" for i in range(30)]},
    },
}


def _rows(n: int, sectors: int) -> list[dict]:
    return [
        {
            "pid": f"F{p:05d}",
            "county": COUNTIES[p % 4],
            "sector": f"S{p % sectors:02d}",
            "founded": 1990 + p % 30,
            "staff": 3 + p % 50,
        }
        for p in range(n)
    ]


def _register(platform, provider, tmp_path, rows, name="firms", classification=None):
    path = tmp_path / f"{name}-{len(rows)}.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    parsed = Classification.from_dict(classification or CLASSIFICATION)
    return vault.register(platform, provider, name, str(path), parsed).version


def _bound(version, sql: str) -> int | None:
    scope = QueryScope(
        tables={version.dataset: TableScope(version.dataset, version.classification)},
        mode="dp",  # the bound of any admitted key (table mode refuses upper(county))
    )
    admitted = get_kind("sql_aggregate").plan({"sql": sql}, scope).payload
    return output_bound(admitted, {version.dataset: version.classification})


def test_the_bound_comes_from_the_sql_and_the_declared_domains(platform, provider, tmp_path):
    version = _register(platform, provider, tmp_path, _rows(200, 30))
    by = "SELECT {keys}, COUNT(*) AS n FROM firms GROUP BY {group}"
    assert _bound(version, by.format(keys="county", group="county")) == 5  # 4 codes + NULL
    assert _bound(version, by.format(keys="county, sector", group="county, sector")) == 5 * 31
    # a function of a declared column has no more values than the column
    assert _bound(version, by.format(keys="upper(county) AS c", group="upper(county)")) == 5
    # margins: each grouping set adds its own rows
    rollup = "SELECT county, sector, COUNT(*) AS n FROM firms GROUP BY ROLLUP (county, sector)"
    assert _bound(version, rollup) == 5 * 31 + 5 + 1
    # a key over a column without a declared domain is not bounded by the SQL
    assert _bound(version, by.format(keys="founded", group="founded")) is None


@pytest.fixture
def service(platform, make_principal):
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    operator = make_principal("bank", Role.OPERATOR)[0]
    platform.settings = platform.settings.changed(**{"job.max_output_rows": 100})
    svc = JobService(platform, spare=False)
    yield svc, authority, operator
    svc.close()


WIDE = "SELECT county, sector, SUM(staff) AS staff FROM firms GROUP BY county, sector"


@pytest.mark.parametrize("sectors", [1, 30])
def test_over_the_cap_by_its_domains_a_query_is_refused_before_it_runs(
    platform, provider, tmp_path, service, sectors
):
    """Whether the data has 4 groups or 120, the answer is the same refusal."""
    svc, authority, operator = service
    _register(platform, provider, tmp_path, _rows(240, sectors))
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    outcome = svc.submit(operator, {"sql": WIDE})
    assert outcome.state is JobState.REFUSED
    assert outcome.reason["rule"] == "output_rows"
    assert (
        "155 rows" in outcome.reason["message"]
        and "job.max_output_rows" in outcome.reason["message"]
    )
    assert _runs(platform) == 0  # nothing ran


def test_under_the_cap_by_its_domains_a_query_runs(platform, provider, tmp_path, service):
    svc, authority, operator = service
    _register(platform, provider, tmp_path, _rows(240, 30))
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    outcome = svc.submit(
        operator, {"sql": "SELECT county, COUNT(*) AS n FROM firms GROUP BY county"}
    )
    assert outcome.state is JobState.RELEASED
    assert _runs(platform) == 1


def _runs(platform) -> int:
    with platform.store.read() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM ledger WHERE action = 'job.running'"
        ).scalar_one()


def test_a_value_outside_its_declared_codes_is_refused_at_registration(
    platform, provider, tmp_path
):
    rows = _rows(40, 30)
    rows[7]["county"] = "atlantis"
    with pytest.raises(SandboxError) as refused:
        _register(platform, provider, tmp_path, rows)
    assert "county" in str(refused.value) and "atlantis" in str(refused.value)
    with platform.store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM dataset_versions").scalar_one() == 0
