"""A county agreement's jobs read only that county's rows (Art. 5; issue 20, item 3).

Before, a county authority's agreement on a city-wide dataset produced rows for all
eleven counties. Now the job reads a slice of the snapshot cut by the provider's
``county`` declaration (``sandbox.data.places``). The attacks are an operator holding a
county agreement (``rival``, county ``COUNTY``) who asks about the other county's rows
every way a query can: by filter, by grouping, by the whole total. Each answer must
equal a direct computation over its own county's rows alone, and the city agreement
(``operator``) still reads everything.
"""

from __future__ import annotations

import os
import stat

import pyarrow.csv as pacsv
import pytest

from sandbox.data.places import FOLDER
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import requests, reviews
from tests.conftest import DATA
from tests.workflow_helpers import (
    COUNTY,
    OTHER_COUNTY,
    apply,
    cast_fixture,  # noqa: F401  (the fixture ``cast``)
    county_of,
    granted,
    publish,
    register_pums_with_counties,
    sign,
)


def _county_grant(cast, *, county_column: bool = False) -> int:
    """The county authority's own flow for ``rival``, up to the provider's approval."""
    notice = publish(cast, by=cast.county)
    columns = ["educ", "income", "sex", "pid", "age"] + (["county"] if county_column else [])
    application = apply(cast, notice, operator=cast.rival, datasets={"pums": columns})
    reviews.appoint(cast.platform, cast.county, application, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(cast.platform, reviewer, application, capability=80, scenario=75, security=90)
    agreement = sign(cast, application, authority=cast.county)
    request = requests.request_data(
        cast.platform, cast.rival, agreement, "pums", purpose="income by sex"
    )
    return requests.approve(cast.platform, cast.provider, request)


def _truth() -> list[dict]:
    rows = pacsv.read_csv(DATA / "pums_1000_pid.csv").to_pylist()
    return [{**r, "county": county_of(int(r["pid"]))} for r in rows]


def _submit(cast, who, sql: str):
    service = JobService(cast.platform, spare=False)
    try:
        return service.submit(who, {"sql": sql})
    finally:
        service.close()


def _released(cast, outcome) -> list[dict]:
    """The released product's rows."""
    import pyarrow.parquet as pq

    assert outcome.state is JobState.RELEASED, outcome.reason
    path = cast.platform.home / "products" / outcome.product_id / "output.parquet"
    return pq.read_table(path).to_pylist()


@pytest.fixture
def counties(cast):
    register_pums_with_counties(cast)
    granted(cast)  # the city's agreement with ``operator``
    _county_grant(cast, county_column=True)
    return cast


def test_a_county_agreement_counts_only_its_countys_rows(counties):
    cast, truth = counties, _truth()
    sql = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex ORDER BY sex"
    mine = [r for r in truth if r["county"] == COUNTY]
    county_rows = _released(cast, _submit(cast, cast.rival, sql))
    assert {r["sex"]: r["n"] for r in county_rows} == {
        sex: sum(1 for r in mine if r["sex"] == sex) for sex in (0, 1)
    }
    assert {r["sex"]: r["total"] for r in county_rows} == pytest.approx(
        {sex: sum(r["income"] for r in mine if r["sex"] == sex) for sex in (0, 1)}
    )
    # the city's agreement reads every county's rows, and its cells pass the audit
    # across releases beside the county's (their sums are of other rows)
    city_rows = _released(cast, _submit(cast, cast.operator, sql))
    assert sum(r["n"] for r in city_rows) == len(truth)


@pytest.mark.parametrize(
    "sql, released",
    [
        (f"SELECT COUNT(*) AS n FROM pums WHERE county = '{OTHER_COUNTY}'", False),
        ("SELECT county, COUNT(*) AS n FROM pums GROUP BY county", True),
        ("SELECT COUNT(*) AS n, SUM(income) AS total FROM pums", True),
    ],
    ids=["filter", "group", "total"],
)
def test_the_other_countys_rows_are_out_of_reach(counties, sql, released):
    """Whatever the county operator asks, no answer counts a row of the other county: a
    released answer's cells are those of its own rows (the other county's cell of the
    grid is empty); the filtered one waits for the output checkers, who see the same cut."""
    cast, truth = counties, _truth()
    outcome = _submit(cast, cast.rival, sql)
    assert (outcome.state is JobState.RELEASED) is released, outcome.reason
    if not released:
        assert outcome.state is JobState.WITHHELD
        return
    mine = [r for r in truth if r["county"] == COUNTY]
    rows = _released(cast, outcome)
    for row in rows:
        if str(row.get("county")) == OTHER_COUNTY:
            assert row["n"] in (0, None)  # the other county has no row in the slice
        else:
            assert row["n"] == len(mine)
    if "total" in rows[0]:
        assert rows[0]["total"] == pytest.approx(sum(r["income"] for r in mine))


def test_the_job_reads_a_read_only_slice_named_in_its_inputs(counties):
    cast = counties
    outcome = _submit(cast, cast.rival, "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex")
    assert outcome.state is JobState.RELEASED, outcome.reason
    with cast.platform.store.read() as conn:
        from sqlalchemy import select

        from sandbox.core.store import jobs

        inputs = conn.execute(
            select(jobs.c.inputs_json).where(jobs.c.id == outcome.job_id)
        ).scalar_one()
    import json

    (read,) = json.loads(inputs)
    assert read["dataset"] == "pums" and read["county"] == COUNTY
    (cut,) = (cast.platform.home / FOLDER).glob(f"pums.v{read['version']}.*.{COUNTY}.parquet")
    assert not os.stat(cut).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    import pyarrow.parquet as pq

    counties = pq.read_table(cut, columns=["county"]).column("county").to_pylist()
    assert {str(c) for c in counties} == {COUNTY}


def _register(cast, extra: dict | None = None, place: str | None = None):
    """pums again, with a ``place`` column of one value when asked, and ``extra``
    declarations: a new version the county's jobs read from now on."""
    import pyarrow as pa

    from policies.classes import Classification
    from sandbox.data import vault
    from tests.conftest import PUMS_CLASSIFICATION

    table = pacsv.read_csv(DATA / "pums_1000_pid.csv")
    columns = dict(PUMS_CLASSIFICATION["columns"])
    if place is not None:
        table = table.append_column("place", pa.array([place] * table.num_rows))
        columns["place"] = "dimension"
    path = cast.platform.home.parent / f"pums_{place}.csv"
    pacsv.write_csv(table, path)
    declared = {**PUMS_CLASSIFICATION, "columns": columns, **(extra or {})}
    return vault.register(
        cast.platform, cast.provider, "pums", str(path), Classification.from_dict(declared)
    )


@pytest.mark.parametrize("declared", ["none", "no value"])
def test_a_county_data_request_for_data_that_cannot_be_cut_is_refused(cast, declared):
    """No county column, or none of its values for the agreement's county: the rows
    cannot be cut to the county, so the data request is refused when filed, by name,
    and nothing is written."""
    from sqlalchemy import func, select

    from policies.errors import PolicyRefusal
    from sandbox.registry.tables import data_requests

    if declared == "no value":
        _register(cast, {"county": {"column": "place", "codes": {OTHER_COUNTY: "L"}}}, "L")
    with pytest.raises(PolicyRefusal) as refused:
        _county_grant(cast)
    assert refused.value.rule == "county_scope" and refused.value.article == "Art. 5"
    assert COUNTY in str(refused.value) and "pums" in str(refused.value)
    if declared == "no value":
        assert "'place'" in str(refused.value)
    with cast.platform.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(data_requests)).scalar_one() == 0


def test_a_version_that_drops_the_county_column_stops_only_the_county_jobs(counties):
    """The provider registers a version without the county declaration after the grant:
    the county's next job is refused by the job gate (its rows cannot be cut), the city's
    still runs, and no slice of the new version is written."""
    cast = counties
    plain = _register(cast).version
    sql = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"
    refused = _submit(cast, cast.rival, sql)
    assert refused.state is JobState.REFUSED
    assert refused.reason["rule"] == "county_scope"
    assert refused.reason["article"] == "Art. 5"
    assert not list((cast.platform.home / FOLDER).glob(f"pums.v{plain.version}.*"))
    city = _submit(cast, cast.operator, sql)
    assert city.state is JobState.RELEASED, city.reason


@pytest.mark.parametrize(
    "county, problem",
    [
        ({"column": "nowhere"}, "county, column 'nowhere': the column is not classified"),
        ({"column": "income"}, "county, column 'income': the column is classified 'measure'"),
        ({"column": "sex", "codes": {"3708": "x"}}, "is not a county's 6-digit code"),
        ({"column": "sex", "codes": {"370811": "a", "370812": "a"}}, "the same value"),
    ],
)
def test_bad_county_declarations_are_refused_by_name(county, problem):
    from policies.classes import Classification
    from policies.errors import ClassificationError
    from tests.conftest import PUMS_CLASSIFICATION

    with pytest.raises(ClassificationError) as caught:
        Classification.from_dict({**PUMS_CLASSIFICATION, "county": county})
    assert problem in str(caught.value)


def test_a_county_verification_index_and_a_direct_grant_read_as_their_agreement_does(counties):
    """The verification index of a county's product is built from the county's slice (the
    versions :func:`latest_versions` hands the index builder), a city product's from the
    whole snapshot, and a direct grant (no agreement) reads the whole as the city's."""
    import pyarrow.parquet as pq
    from sqlalchemy import select

    from sandbox.data.places import scoped
    from sandbox.data.vault import get_version
    from sandbox.registry.tables import agreements
    from sandbox.verification.products import latest_versions

    cast, truth = counties, _truth()
    with cast.platform.store.read() as conn:
        rows = conn.execute(select(agreements.c.id, agreements.c.jurisdiction)).all()
        county = next(r.id for r in rows if r.jurisdiction == COUNTY)
        city = next(r.id for r in rows if r.jurisdiction == "city")
        cut = latest_versions(conn, cast.platform, ["pums"], county)["pums"]
        whole = latest_versions(conn, cast.platform, ["pums"], city)["pums"]
        direct = scoped(conn, cast.platform, get_version(conn, cast.platform, "pums"), None)
    mine = [r for r in truth if r["county"] == COUNTY]
    assert cut.county == COUNTY and cut.rows == len(mine)
    assert {str(c) for c in pq.read_table(cut.path, columns=["county"]).column(0).to_pylist()} == {
        COUNTY
    }
    assert whole.county is None and whole.rows == len(truth)
    assert direct.county is None and direct.path == whole.path
