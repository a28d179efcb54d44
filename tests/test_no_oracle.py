"""Issue 17, "no oracle": a job that is not released tells its operator nothing about the data.

The red team's attack: a filter that singles out one person (``county = .. AND age
= 37``), then ``HAVING SUM(income) > t`` for a binary search on ``t``; each withheld
job said how many cells it had ("none of the 1 cells" or "no aggregate cell"), so 19
jobs gave the exact income. Here, through the real job path (JobService, isolated
workers, the CLI, a real ``sandbox serve``):

* the probe and its strongest variants (HAVING in every form, QUALIFY, a CTE or
  subquery that aggregates in FROM, JOIN, WHERE, IN, EXISTS or SELECT, a window
  over an aggregate, the FILTER clause, ORDER BY an aggregate, CASE over an
  aggregate) are refused before anything runs, with the rule and Art. 15;
* a CAST that would fail on one person's value is run as TRY_CAST: no failure to
  read;
* what the operator sees of a withheld or refused job (the service's outcome, the
  CLI's text and JSON on the host and through the server, the HTTP body) is the same,
  byte for byte, on two platforms whose data differ in one person, while the
  authority's report does differ (so the test would fail without the defence).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import pytest
from api_server import ApiServer, make_home
from click.testing import CliRunner

from policies.admission import QueryScope, TableScope, admit
from policies.classes import Classification
from sandbox.cli.app import main
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.run.views import WITHHELD_SUMMARY, withheld_report

CLASSIFICATION = {
    "entity_key": "pid",
    "columns": {
        "pid": "identifier",
        "county": "dimension",
        "sex": "dimension",
        "age": "quasi",
        "income": "measure",
    },
}

# The filter that singles out the target: nobody else in county 370801 is 37.
TARGET = "county = '370801' AND age = 37"
RULE_WORDS = ("threshold", "dominance", "p_ratio", "zero", "complementary", "differencing")

RUNNER = CliRunner()
NO_ENV = {"SANDBOX_SERVER": None, "SANDBOX_TOKEN": None, "SANDBOX_TOKEN_FILE": None}


def write_people(folder: Path, *, income: int, age: int) -> Path:
    """200 persons in 4 counties, aged 40 to 69, and the target P0000000 of county
    370801 with the given age and income."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["pid,county,sex,age,income", f"P0000000,370801,F,{age},{income}"]
    for i in range(1, 200):
        lines.append(
            f"P{i:07d},{370801 + i % 4},{'FM'[i % 2]},{40 + i % 30},{1000 + (i * 37) % 5000}"
        )
    csv = folder / "persons.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv


@dataclasses.dataclass
class World:
    """One platform home with the persons dataset granted to ``operator``."""

    home: Path
    platform: Platform
    tokens: dict[str, str]
    service: JobService

    def principal(self, name: str):
        with self.platform.store.read() as conn:
            return by_name(conn, name)

    def submit(self, sql: str):
        return self.service.submit(self.principal("operator"), {"sql": sql})

    def cli(self, *args: str, server: str | None = None, token: str = "operator") -> str:
        where = ["--server", server] if server else ["--home", str(self.home)]
        result = RUNNER.invoke(main, [*where, *args, "--as", self.tokens[token]], env=NO_ENV)
        return f"exit {result.exit_code}\n{result.stdout}"

    def close(self) -> None:
        self.service.close()
        self.platform.close()


def build(root: Path, *, income: int, age: int) -> World:
    home = root / "home"
    tokens = make_home(home)
    platform = Platform.open(home)
    csv = write_people(root / "data", income=income, age=age)
    world = World(home, platform, tokens, JobService(platform, spare=False))
    vault.register(
        platform,
        world.principal("provider"),
        "persons",
        str(csv),
        Classification.from_dict(CLASSIFICATION),
    )
    add_grant(platform, world.principal("authority"), "operator", "persons", until="2099-12-31")
    return world


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """A: the target earns 52,000 and is 37. B: it earns 30,000 (one person's income
    differs). C: it earns 52,000 and is 38 (no longer matches the filter at all)."""
    root = tmp_path_factory.mktemp("no-oracle")
    built = {
        "A": build(root / "a", income=52000, age=37),
        "B": build(root / "b", income=30000, age=37),
        "C": build(root / "c", income=52000, age=38),
    }
    yield built
    for world in built.values():
        world.close()


def _queued(world: World, job_id: int) -> bool:
    with world.platform.store.read() as conn:
        entries = ledger.query(conn, subject=f"job:{job_id}")
    return any(e["action"] in ("job.queued", "job.running") for e in entries)


# --------------------------------------------------------------------------- refused early

BINARY_SEARCH = (
    "SELECT county, SUM(income) AS s FROM persons WHERE {target} GROUP BY county "
    "HAVING SUM(income) > {t}"
)

VARIANTS = [
    # HAVING in every form
    ("having_count", f"SELECT county, COUNT(*) AS n FROM persons WHERE {TARGET} "
     "GROUP BY county HAVING SUM(income) > 50000", "aggregate_filter"),
    ("having_no_group", f"SELECT COUNT(*) AS n FROM persons WHERE {TARGET} "
     "HAVING SUM(income) > 50000", "aggregate_filter"),
    ("having_group_by_all", f"SELECT county, COUNT(*) AS n FROM persons WHERE {TARGET} "
     "GROUP BY ALL HAVING AVG(income) BETWEEN 50000 AND 60000", "aggregate_filter"),
    ("having_padded_by_a_big_group", "SELECT county, COUNT(*) AS n FROM persons "
     f"WHERE sex = 'M' OR ({TARGET}) GROUP BY county "
     "HAVING SUM(income) - 120000 > 50000", "aggregate_filter"),
    ("having_on_a_count", f"SELECT sex, COUNT(*) AS n FROM persons WHERE {TARGET} "
     "GROUP BY sex HAVING COUNT(*) > 0", "aggregate_filter"),
    # QUALIFY and windows
    ("qualify", f"SELECT county, SUM(income) AS s FROM persons WHERE {TARGET} "
     "GROUP BY county QUALIFY s > 50000", "aggregate_filter"),
    ("window_over_aggregate", "SELECT county, RANK() OVER (ORDER BY SUM(income)) AS r "
     "FROM persons GROUP BY county", "aggregate_filter"),
    ("window_sum_of_sums", "SELECT county, SUM(SUM(income)) OVER () AS s "
     "FROM persons GROUP BY county", "aggregate_filter"),
    # CTEs and subqueries that aggregate, wherever they stand
    ("cte_joined_and_filtered",
     f"WITH t AS (SELECT county, SUM(income) AS s FROM persons WHERE {TARGET} GROUP BY county) "
     "SELECT persons.county, COUNT(*) AS n FROM persons JOIN t ON persons.county = t.county "
     "WHERE t.s > 50000 GROUP BY persons.county", "aggregate_filter"),
    ("cte_in_join_condition",
     "WITH t AS (SELECT pid, SUM(income) AS s FROM persons GROUP BY pid) "
     "SELECT persons.county, COUNT(*) AS n FROM persons JOIN t ON persons.pid = t.pid "
     "AND t.s > 50000 GROUP BY persons.county", "aggregate_filter"),
    ("scalar_subquery_in_where", "SELECT county, COUNT(*) AS n FROM persons WHERE "
     f"(SELECT SUM(income) FROM persons WHERE {TARGET}) > 50000 GROUP BY county",
     "aggregate_filter"),
    ("in_subquery_with_having", "SELECT county, COUNT(*) AS n FROM persons WHERE county IN "
     f"(SELECT county FROM persons WHERE {TARGET} GROUP BY county HAVING SUM(income) > 50000) "
     "GROUP BY county", "aggregate_filter"),
    ("exists_subquery", "SELECT county, COUNT(*) AS n FROM persons WHERE EXISTS "
     f"(SELECT 1 FROM persons WHERE {TARGET} HAVING SUM(income) > 50000) GROUP BY county",
     "aggregate_filter"),
    ("derived_table_filtered", "SELECT COUNT(*) AS n FROM (SELECT county, SUM(income) AS s "
     "FROM persons GROUP BY county) AS t WHERE s > 50000", "aggregate_filter"),
    ("scalar_subquery_in_select", "SELECT county, (SELECT SUM(income) FROM persons "
     f"WHERE {TARGET}) AS s FROM persons GROUP BY county", "aggregate_filter"),
    ("union_of_two_filters", f"SELECT COUNT(*) AS n FROM persons WHERE {TARGET} UNION ALL "
     "SELECT COUNT(*) FROM persons HAVING SUM(income) > 50000", "single_select"),
    # other ways to make a cell's presence or place depend on a hidden value
    ("filter_clause", "SELECT county, COUNT(*) FILTER (WHERE income > 50000) AS n "
     "FROM persons GROUP BY county", "aggregate_filter"),
    ("case_over_aggregate", "SELECT county, CASE WHEN SUM(income) > 50000 THEN 1 ELSE 0 END "
     f"AS big FROM persons WHERE {TARGET} GROUP BY county", "output_expression"),
    ("order_by_aggregate", "SELECT county, SUM(income) AS s FROM persons "
     "GROUP BY county ORDER BY s", "order_by"),
    ("aggregate_in_where", "SELECT county, COUNT(*) AS n FROM persons "
     "WHERE SUM(income) > 50000 GROUP BY county", "aggregate_context"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "sql", "rule"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_every_filter_on_an_aggregate_is_refused_before_it_runs(worlds, name, sql, rule):
    world = worlds["A"]
    outcome = world.submit(sql)
    assert outcome.state is JobState.REFUSED, (name, outcome)
    assert outcome.reason["rule"] == rule, outcome.reason
    assert outcome.reason["article"] == "Art. 15" and "Art. 15" in outcome.reason["message"]
    assert "50000" not in json.dumps(outcome.reason)  # the probed constant is not echoed
    assert outcome.report is None and outcome.product_id is None
    assert not _queued(world, outcome.job_id), "a refused job never reaches a worker"


def test_the_binary_search_on_having_learns_nothing(worlds):
    """The red team's attack, run to the end on A: every probe gets the same answer."""
    world = worlds["A"]
    low, high, answers = 0, 131072, set()
    for _ in range(17):
        t = (low + high) // 2
        outcome = world.submit(BINARY_SEARCH.format(target=TARGET, t=t))
        assert outcome.state is JobState.REFUSED
        assert outcome.reason["rule"] == "aggregate_filter"
        assert not _queued(world, outcome.job_id)
        answers.add(json.dumps(outcome.reason, sort_keys=True))
        # the attacker's rule: "refused" read as "no" (any fixed reading will do)
        high = t
    assert len(answers) == 1, answers  # one answer for every threshold: no bit learned


def test_a_cast_that_would_fail_on_one_value_does_not_fail_the_job(worlds):
    """CAST(SUM(income) AS SMALLINT) fails for 52,000 and not for 30,000 if run as
    written; as TRY_CAST both jobs end alike (withheld: one person's cell)."""
    sql = (
        f"SELECT county, CAST(SUM(income) AS SMALLINT) AS s FROM persons WHERE {TARGET} "
        "GROUP BY county"
    )
    a, b = worlds["A"].submit(sql), worlds["B"].submit(sql)
    assert a.state is b.state is JobState.WITHHELD, (a, b)
    assert a.report == b.report == withheld_report()


def test_a_division_by_zero_on_one_row_does_not_fail_the_job(worlds):
    """WHERE 1 // (age - 37) = 0 fails, as written, exactly when someone of the filtered
    group is 37 (A has the target, C not). Run as WHERE TRY(..), the row drops out and
    both platforms release the same table."""
    sql = (
        "SELECT county, COUNT(*) AS n FROM persons WHERE 1 // (age - 37) = 0 "
        "GROUP BY county ORDER BY county"
    )
    a, c = worlds["A"].submit(sql), worlds["C"].submit(sql)
    assert a.state is c.state is JobState.RELEASED, (a, c)
    tables = [
        (w.home / "products" / o.product_id / "output.csv").read_text()
        for w, o in ((worlds["A"], a), (worlds["C"], c))
    ]
    assert tables[0] == tables[1]


def test_expressions_that_can_fail_are_admitted_as_try():
    """What admission hands the engine: CAST as TRY_CAST, a failing argument or WHERE in TRY.

    The DP mode's scope: table mode refuses expressions inside aggregates at all."""
    scope = QueryScope(
        tables={"persons": TableScope("persons", Classification.from_dict(CLASSIFICATION))},
        aggregate_expressions=True,
        mode="dp",
    )
    admitted = admit(
        "SELECT sex, CAST(SUM(income * 92233720368547) AS SMALLINT) AS s FROM persons "
        "WHERE 1 // (age - 37) = 0 GROUP BY sex",
        scope,
    ).sql
    assert "TRY_CAST(SUM(TRY(" in admitted and "WHERE TRY(" in admitted, admitted
    keyed = admit(
        "SELECT county // (sex = 'M')::INT AS k, COUNT(*) AS n FROM persons "
        "GROUP BY county // (sex = 'M')::INT",
        scope,
    ).sql
    assert keyed.count("TRY(") == 2, keyed  # the key in SELECT and in GROUP BY alike
    assert "CAST(" not in admitted.replace("TRY_CAST(", "")


# --------------------------------------------------------------------------- same view

# Jobs that are withheld (or refused) on A, B and C alike; on C the target is not
# there at all, so the output has no row (the old "no aggregate cell").
SAME_VIEW = [
    f"SELECT county, SUM(income) AS s FROM persons WHERE {TARGET} GROUP BY county",
    f"SELECT COUNT(*) AS n, SUM(income) AS s FROM persons WHERE {TARGET}",
    f"SELECT sex, AVG(income) AS a FROM persons WHERE {TARGET} GROUP BY sex",
    f"SELECT county, CAST(SUM(income) AS SMALLINT) AS s FROM persons WHERE {TARGET} "
    "GROUP BY county",
    BINARY_SEARCH.format(target=TARGET, t=50000),
    # a group key that fails on the target's row as written (1 // 0 for a woman)
    f"SELECT 1 // (sex = 'M')::INT AS k, COUNT(*) AS n FROM persons WHERE {TARGET} "
    "GROUP BY 1 // (sex = 'M')::INT",
    f"WITH t AS (SELECT SUM(income) AS s FROM persons WHERE {TARGET}) "
    "SELECT COUNT(*) AS n FROM persons, t WHERE t.s > 50000",
]


def _norm(text: str, job_id: int) -> str:
    """The job's id out of a text (the same jobs get other ids on other platforms)."""
    for before, after in (
        (f"job {job_id}", "job <id>"),
        (f'"job": {job_id}', '"job": "<id>"'),
        (f'"job":{job_id}', '"job":"<id>"'),
        (f"job:{job_id}", "job:<id>"),
    ):
        text = text.replace(before, after)
    return text


def _views(world: World, job_ids: list[int], server: ApiServer) -> list[dict]:
    """Everything the operator can read of each job, on the host and over HTTP; ids
    and creation times normalised (nothing else is)."""
    views = []
    operator = world.principal("operator")
    headers = {"Authorization": f"Bearer {world.tokens['operator']}"}
    for job_id in job_ids:
        outcome = dataclasses.asdict(world.service.outcome(operator, job_id))
        outcome["job_id"] = "<id>"
        body = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=headers, timeout=30)
        listed = httpx.get(f"{server.url}/v1/jobs", headers=headers, timeout=30).json()
        texts = {
            "cli_text": world.cli("job", "show", str(job_id)),
            "cli_json": world.cli("job", "show", str(job_id), "--json"),
            "remote_text": world.cli("job", "show", str(job_id), server=server.url),
            "remote_json": world.cli("job", "show", str(job_id), "--json", server=server.url),
            "http_body": body.text,
        }
        views.append(
            {
                "service": outcome,
                "http_status": body.status_code,
                **{name: _norm(text, job_id) for name, text in texts.items()},
                "listed": [
                    {k: v for k, v in row.items() if k not in ("id", "created_at")}
                    for row in listed
                    if row["id"] == job_id
                ],
            }
        )
    return views


def _http_submissions(world: World, server: ApiServer) -> list[str]:
    """The same jobs submitted over HTTP: the 202 body and the final body."""
    headers = {"Authorization": f"Bearer {world.tokens['operator']}"}
    bodies = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for sql in SAME_VIEW:
            posted = client.post("/v1/jobs", json={"sql": sql})
            assert posted.status_code == 202, posted.text
            job_id = posted.json()["job"]
            done = client.get(f"/v1/jobs/{job_id}", params={"wait": 30})
            for _ in range(10):
                if done.json()["state"] not in ("queued", "running", "checking", "submitted"):
                    break
                done = client.get(f"/v1/jobs/{job_id}", params={"wait": 30})
            bodies.append(_norm(posted.text, job_id) + "\n" + _norm(done.text, job_id))
    return bodies


def test_withheld_and_refused_jobs_look_the_same_whatever_one_person_holds(worlds):
    job_ids: dict[str, list[int]] = {}
    states: dict[str, list[JobState]] = {}
    for key in ("A", "B", "C"):
        outcomes = [worlds[key].submit(sql) for sql in SAME_VIEW]
        job_ids[key] = [o.job_id for o in outcomes]
        states[key] = [o.state for o in outcomes]
    assert states["A"] == states["B"] == states["C"]
    assert set(states["A"]) == {JobState.WITHHELD, JobState.REFUSED}, states["A"]
    views: dict[str, list[dict]] = {}
    submissions: dict[str, list[str]] = {}
    for key in ("A", "B", "C"):
        with ApiServer(worlds[key].home) as server:
            views[key] = _views(worlds[key], job_ids[key], server)
            submissions[key] = _http_submissions(worlds[key], server)
    for i, sql in enumerate(SAME_VIEW):
        a, b, c = views["A"][i], views["B"][i], views["C"][i]
        assert a == b, (sql, a, b)
        assert a == c, (sql, a, c)
        if states["A"][i] is JobState.WITHHELD:
            assert WITHHELD_SUMMARY.splitlines()[0] in a["cli_text"]
            assert json.loads(a["http_body"])["report"] == withheld_report()
            for word in RULE_WORDS + ("cells", "cell "):
                assert word not in a["cli_text"] + a["http_body"], (word, a)
    assert submissions["A"] == submissions["B"] == submissions["C"]

    # The authority still reads what the check found, and it does differ: without the
    # operator's view above, these differences would have reached the operator.
    authority = {k: worlds[k].principal("authority") for k in worlds}
    full = {k: worlds[k].service.outcome(authority[k], job_ids[k][0]).report for k in ("A", "C")}
    assert full["A"]["counts"]["cells"] == 1 and full["C"]["counts"]["cells"] == 0
    assert full["A"]["summary"] != full["C"]["summary"]
    audited = worlds["A"].cli("job", "show", str(job_ids["A"][0]), token="auditor")
    assert "threshold" in audited


def test_a_released_table_marks_suppressed_cells_without_their_reason(worlds):
    """The product the operator downloads: suppressed cells empty, listed, no rule named,
    its time in whole seconds."""
    world = worlds["A"]
    sql = (  # the band of the thirties holds the target alone: suppressed
        "SELECT county, floor(age / 10) * 10 AS band, COUNT(*) AS n, SUM(income) AS s "
        "FROM persons GROUP BY county, band ORDER BY county, band"
    )
    outcome = world.submit(sql)
    assert outcome.state is JobState.RELEASED, outcome
    report = outcome.report
    assert report["verdict"] == "released_with_suppressions" and report["suppressed_cells"]
    folder = world.home / "products" / outcome.product_id
    product_report = json.loads((folder / "report.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    shown = json.dumps(
        [
            {k: v for k, v in report.items() if k != "params"},
            {k: v for k, v in product_report.items() if k != "params"},
            manifest["check"],
        ]
    )
    for word in RULE_WORDS:
        assert word not in shown, word
    assert manifest["created_at"].endswith(".000000+00:00"), manifest["created_at"]
    authority = world.principal("authority")
    full = world.service.outcome(authority, outcome.job_id).report
    suppressed = {(c["row"], c["column"]) for c in full["cells"] if c["verdict"] == "suppress"}
    assert {(c["row"], c["column"]) for c in report["suppressed_cells"]} == suppressed
    assert any(c["rules"] for c in full["cells"])  # the reasons exist, for the auditors
