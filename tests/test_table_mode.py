"""Table mode (issue 17, items 1 and 5), through the real job path with the defaults.

Exact outputs answer only declared questions: counts and sums over declared cells.
A query outside that is refused before anything runs, and says the DP mode is where
such a question goes. A person job in table mode is held for two output checkers and
capped per quarter; an organisation job over declared domains is released by the
rules alone; a query over columns without a declared domain goes to review.

The rest of the suite runs with the review holds off (tests/conftest.py); this file
puts the defaults back before it builds its platform.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from policies.workflow import Vote
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, by_name
from sandbox.core.store import jobs
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import airlock
from tests.conftest import HOLDS_OFF

COUNTIES = ["north", "south", "east", "west"]
PEOPLE = {
    "entity_key": "pid",
    "entity_kind": "person",
    "columns": {
        "pid": "identifier",
        "county": "dimension",
        "sex": "dimension",
        "birth": "quasi",
        "occupation": "dimension",
        "income": "measure",
    },
    "domains": {
        "county": {"codes": COUNTIES},
        "sex": {"codes": ["F", "M"]},
        "birth": {"range": {"from": 1930, "to": 2010}},
    },
    "derived": {"monthly_income": "income / 12"},
}
FIRMS = {
    "entity_key": "fid",
    "entity_kind": "organisation",
    "columns": {"fid": "identifier", "county": "dimension", "staff": "measure"},
    "domains": {"county": {"codes": COUNTIES}},
}


def _people(target_income: float = 50_000.0) -> list[dict]:
    rows = [
        {
            "pid": f"P{i:04d}",
            "county": COUNTIES[i % 4],
            "sex": "FM"[i % 2],
            "birth": f"{1950 + i % 40}-0{1 + i % 9}-1{i % 10}",
            "occupation": f"job{i % 5}",
            "income": 3000.0 + (i * 37) % 2000,
        }
        for i in range(400)
    ]
    # the target: the only person born on 1980-05-03
    rows.append(
        {
            "pid": "TARGET",
            "county": "north",
            "sex": "F",
            "birth": "1980-05-03",
            "occupation": "job0",
            "income": target_income,
        }
    )
    return rows


def _firms() -> list[dict]:
    return [{"fid": f"F{i:04d}", "county": COUNTIES[i % 4], "staff": 3 + i % 7} for i in range(200)]


class World:
    def __init__(self, platform: Platform, service: JobService):
        self.platform = platform
        self.service = service

    def principal(self, name: str):
        with self.platform.store.read() as conn:
            return by_name(conn, name)

    def submit(self, sql: str, operator: str = "bank"):
        return self.service.submit(self.principal(operator), {"sql": sql})


def _world(tmp_path, monkeypatch, make_rows=_people) -> World:
    for name in HOLDS_OFF:
        monkeypatch.delenv(name, raising=False)
    platform = Platform.init(tmp_path / "home")
    from sandbox.core import principals
    from sandbox.core.ledger import now_utc

    def add(name: str, role: Role, org: str, jurisdiction: str | None = None):
        with platform.store.transaction() as conn:
            principals.insert(conn, name, role, org, jurisdiction, now_utc())

    add("stats", Role.PROVIDER, "Statistics")
    add("city", Role.AUTHORITY, "City", "city")
    add("bank", Role.OPERATOR, "Bank")
    add("shop", Role.OPERATOR, "Shop")
    add("r1", Role.REVIEWER, "University A")
    add("r2", Role.REVIEWER, "University B")
    with platform.store.read() as conn:
        provider, authority = by_name(conn, "stats"), by_name(conn, "city")
    for name, rows, classification in (
        ("people", make_rows(), PEOPLE),
        ("firms", _firms(), FIRMS),
    ):
        path = tmp_path / f"{name}.csv"
        pacsv.write_csv(pa.Table.from_pylist(rows), path)
        vault.register(
            platform, provider, name, str(path), Classification.from_dict(classification)
        )
        for operator in ("bank", "shop"):
            add_grant(platform, authority, operator, name, until="2099-01-01")
    return World(platform, JobService(platform, spare=False))


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = _world(tmp_path, monkeypatch)
    yield w
    w.service.close()
    w.platform.close()


def test_the_defaults_hold_person_jobs_and_undeclared_domains(world):
    settings = world.platform.settings
    assert settings.review.person_jobs is True
    assert settings.review.undeclared_domains is True


# --- item 1: what table mode refuses, before the run --------------------------------------------

REFUSED = [
    # the red team's binary search: a quasi filter and a value test inside SUM
    (
        "SELECT county, SUM(CASE WHEN birth = '1980-05-03' THEN income ELSE 0 END) AS s "
        "FROM people GROUP BY county",
        "table_mode_expression",
    ),
    # one member's value
    ("SELECT county, MAX(income) AS top FROM people GROUP BY county", "table_mode_aggregate"),
    ("SELECT county, quantile_disc(income, 1.0) AS q FROM people GROUP BY county", None),
    ("SELECT county, MIN(birth) AS oldest FROM people GROUP BY county", None),
    ("SELECT county, STDDEV(income) AS sd FROM people GROUP BY county", "table_mode_aggregate"),
    # a free predicate on a quasi-identifier: a tracker's half
    (
        "SELECT county, SUM(income) AS s FROM people WHERE birth = '1980-05-03' GROUP BY county",
        "table_mode_filter",
    ),
    (
        "SELECT county, COUNT(*) AS n FROM people WHERE birth <> '1980-05-03' GROUP BY county",
        "table_mode_filter",
    ),
    # a value that is not declared, a pattern, two columns compared
    ("SELECT county, COUNT(*) AS n FROM people WHERE county = 'nowhere' GROUP BY county", None),
    ("SELECT county, COUNT(*) AS n FROM people WHERE county LIKE 'n%' GROUP BY county", None),
    ("SELECT county, COUNT(*) AS n FROM people WHERE county = sex GROUP BY county", None),
    # a key in a form the provider did not declare
    (
        "SELECT date_trunc('month', birth) AS m, COUNT(*) AS n FROM people GROUP BY m",
        "table_mode_key",
    ),
    ("SELECT upper(county) AS c, COUNT(*) AS n FROM people GROUP BY c", "table_mode_key"),
    # counting the values the data holds
    ("SELECT county, COUNT(DISTINCT sex) AS k FROM people GROUP BY county", None),
]


@pytest.mark.parametrize("sql, rule", REFUSED)
def test_table_mode_refuses_questions_of_the_querys_own_making(world, sql, rule):
    outcome = world.submit(sql)
    assert outcome.state is JobState.REFUSED, (outcome.state, outcome.reason)
    if rule is not None:
        assert outcome.reason["rule"] == rule, outcome.reason
    assert outcome.reason["rule"].startswith(("table_mode_", "member_aggregate")), outcome.reason
    assert "DP mode" in outcome.reason["message"] + (outcome.reason.get("hint") or "")
    assert outcome.product_id is None


def test_declared_forms_and_derived_measures_are_admitted(world):
    outcome = world.submit(
        "SELECT county, year(birth) AS born, COUNT(*) AS n, SUM(income / 12) AS monthly "
        "FROM people WHERE sex IN ('F') AND year(birth) BETWEEN 1950 AND 1959 "
        "GROUP BY county, year(birth)"
    )
    # admitted, and (a person job) held for the checkers: not refused
    assert outcome.state is JobState.WITHHELD, (outcome.state, outcome.reason)


def test_a_refusal_reads_the_same_whatever_the_target_holds(tmp_path, monkeypatch):
    """Refusals are decided before the run: two datasets that differ in one person give
    the same text for the same SQL."""
    texts = []
    for income in (50_000.0, 90_000.0):
        w = _world(tmp_path / str(int(income)), monkeypatch, lambda i=income: _people(i))
        try:
            outcome = w.submit(REFUSED[0][0])
            texts.append(json.dumps(outcome.reason, sort_keys=True))
        finally:
            w.service.close()
            w.platform.close()
    assert texts[0] == texts[1]


# --- item 5: person jobs wait for two checkers; organisation jobs do not -------------------------


def test_an_organisation_job_over_declared_domains_is_released_by_the_rules(world):
    outcome = world.submit(
        "SELECT county, COUNT(*) AS n, SUM(staff) AS s FROM firms GROUP BY county"
    )
    assert outcome.state is JobState.RELEASED, (outcome.state, outcome.reason)


def test_a_person_job_is_held_for_two_checkers_and_released_by_their_votes(world):
    outcome = world.submit("SELECT county, COUNT(*) AS n FROM people GROUP BY county")
    assert outcome.state is JobState.WITHHELD
    # the operator reads only "withheld for review": no cells, no reason
    assert outcome.product_id is None
    assert outcome.report is not None and outcome.report["verdict"] == "withheld"
    assert "person" not in json.dumps(outcome.report)
    # the checkers and auditors see why
    with world.platform.store.read() as conn:
        stored = json.loads(
            conn.execute(jobs.select().where(jobs.c.id == outcome.job_id)).one().report_json
        )
    assert "person job" in stored["withheld_because"]
    city = world.principal("city")
    airlock.appoint_checkers(world.platform, city, ["r1", "r2"], job_id=outcome.job_id)
    airlock.vote(world.platform, world.principal("r1"), outcome.job_id, Vote.APPROVE, "fine")
    airlock.vote(world.platform, world.principal("r2"), outcome.job_id, Vote.APPROVE, "fine")
    released = world.service.outcome(world.principal("bank"), outcome.job_id)
    assert released.state is JobState.RELEASED and released.product_id
    table = pq.read_table(world.platform.home / "products" / released.product_id / "output.parquet")
    assert sorted(table.column("county").to_pylist()) == sorted(COUNTIES)


def test_a_query_over_a_column_without_a_declared_domain_goes_to_review(world):
    outcome = world.submit("SELECT occupation, COUNT(*) AS n FROM people GROUP BY occupation")
    assert outcome.state is JobState.WITHHELD
    with world.platform.store.read() as conn:
        stored = json.loads(
            conn.execute(jobs.select().where(jobs.c.id == outcome.job_id)).one().report_json
        )
    assert "without a declared domain: people.occupation" in stored["withheld_because"]


def test_person_jobs_are_capped_per_quarter_before_they_run(world):
    world.platform.settings = world.platform.settings.changed(
        **{"review.person_jobs_per_quarter": 2}
    )
    sql = "SELECT county, COUNT(*) AS n FROM people GROUP BY county"
    first, second = world.submit(sql), world.submit(sql)
    assert first.state is JobState.WITHHELD and second.state is JobState.WITHHELD
    third = world.submit(sql)
    assert third.state is JobState.REFUSED
    assert third.reason["rule"] == "person_jobs_per_quarter"
    assert "2 of its 2 person jobs" in third.reason["message"]
    # a refused job is not counted, and an organisation job is not capped
    org = world.submit("SELECT county, COUNT(*) AS n FROM firms GROUP BY county")
    assert org.state is JobState.RELEASED
    # direct grants count per operator: another operator has its own quarter
    assert world.submit(sql, operator="shop").state is JobState.WITHHELD
