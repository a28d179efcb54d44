"""The release history's evidence at scale (issue 25): entity numbers, not keys.

Each cell's contributors leave the job worker as a roaring bitmap over the stable
numbering of the dataset's entities (``sandbox.guard.numbering``); the worker gets
the numbering beside the data and never hands back a raw key. These tests run the
real worker and the real job path over a small table whose keys are easy to look
for in bytes (``KEY-...``).
"""

from __future__ import annotations

import io
import logging
import shutil

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from jobs import get_kind
from jobs.sql_evidence import NUMBERS_TABLE, ROW_NUMBERS_TABLE, with_evidence
from policies.admission import QueryScope, TableScope
from policies.classes import Classification
from policies.errors import JobFailed
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.guard.evidence import entity_bitmaps, fold_entities
from sandbox.guard.numbering import numbering_for
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.run.runner import Limits, Runner

CLASSIFICATION = {
    "entity_key": "pid",
    "columns": {
        "pid": "identifier",
        "county": "dimension",
        "block": "dimension",
        "income": "measure",
    },
}
QUERY = "SELECT county, COUNT(*) AS n, SUM(income) AS total FROM d GROUP BY county"


def _rows(persons: range, county_of, income_of) -> list[dict]:
    """Two rows per person (two payments), so cells count entities, not rows."""
    return [
        {"pid": f"KEY-{p:05d}", "county": county_of(p), "block": p, "income": income_of(p)}
        for p in persons
        for _ in range(2)
    ]


def _register(platform, provider, tmp_path, rows: list[dict], name: str = "d"):
    path = tmp_path / f"{name}-{len(rows)}.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), path)
    classification = Classification.from_dict(CLASSIFICATION)
    return vault.register(platform, provider, name, str(path), classification).version


def _county(p: int) -> str:
    return ("north", "south", "east")[p % 3]


@pytest.fixture
def version(platform, provider, tmp_path):
    return _register(platform, provider, tmp_path, _rows(range(90), _county, lambda p: 100 + p))


def _keys_of(platform, numbers) -> set[str]:
    with platform.store.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT entity_key, number FROM entity_numbers WHERE dataset = 'd'"
        ).fetchall()
    by_number = {n: k for k, n in rows}
    return {by_number[n] for n in numbers}


def test_cells_leave_the_worker_as_bitmaps_of_numbers_never_as_keys(platform, version):
    scope = QueryScope(tables={"d": TableScope("d", version.classification)})
    admitted = get_kind("sql_aggregate").plan({"sql": QUERY}, scope).payload
    numbering = numbering_for(platform, "d", version)
    sql = with_evidence(admitted, scope, entities=True)
    runner = Runner(Limits(time_s=60), spare=False)
    raw = runner.run(sql, {"d": version.path, ROW_NUMBERS_TABLE: numbering.rows}).table
    assert raw.schema.field("__entities").type == pa.binary()
    sink = io.BytesIO()
    pq.write_table(raw, sink, compression="none")
    assert b"KEY-" not in sink.getvalue()  # not one raw key in the worker's answer
    bitmaps = entity_bitmaps(raw)
    counties = raw.column("county").to_pylist()
    assert [len(b) for b in bitmaps] == raw.column("__n").to_pylist() == [30, 30, 30]
    for county, bitmap in zip(counties, bitmaps, strict=True):
        expected = {f"KEY-{p:05d}" for p in range(90) if _county(p) == county}
        assert _keys_of(platform, bitmap) == expected

    # The engines without a positional join (Spark) look numbers up by key: same cells.
    by_key = with_evidence(admitted, scope, entities=True, positional=False)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW d AS SELECT * FROM read_parquet('{version.path}')")
    files = ", ".join(f"'{p}'" for p in numbering.segments)
    con.execute(f"CREATE VIEW {NUMBERS_TABLE} AS SELECT * FROM read_parquet([{files}])")
    looked_up = fold_entities(con.sql(by_key).to_arrow_table())
    again = dict(
        zip(looked_up.column("county").to_pylist(), entity_bitmaps(looked_up), strict=True)
    )
    assert all(again[c] == b for c, b in zip(counties, bitmaps, strict=True))


def test_numbers_stay_the_same_across_versions(platform, provider, tmp_path, version):
    first = numbering_for(platform, "d", version)
    before = pq.read_table(first.segments).to_pylist()
    # version 2: persons 60..119 (30 of them new), income changed
    newer = _register(platform, provider, tmp_path, _rows(range(60, 120), _county, lambda p: 7 * p))
    assert newer.version == 2
    second = numbering_for(platform, "d", newer)
    after = {r["entity_key"]: r["number"] for r in pq.read_table(second.segments).to_pylist()}
    assert all(after[r["entity_key"]] == r["number"] for r in before)
    fresh = [after[f"KEY-{p:05d}"] for p in range(90, 120)]
    assert min(fresh) > max(r["number"] for r in before)
    assert sorted(after.values()) == list(range(len(after)))  # dense, no number twice
    rows = pq.read_table(second.rows).column("__en").to_pylist()
    keys = pq.read_table(newer.path).column("pid").to_pylist()
    assert [after[k] for k in keys] == rows  # each row's number, in row order


@pytest.fixture
def service(platform, make_principal, version):
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    add_grant(platform, authority, "bank", "d", until="2099-01-01")
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


def _submit(service, sql: str):
    with service.platform.store.read() as conn:
        bank, city = by_name(conn, "bank"), by_name(conn, "city")
    outcome = service.submit(bank, {"sql": sql})
    return service.outcome(city, outcome.job_id)


def _differenced(outcome) -> bool:
    return any("differencing" in c["rules"] for c in outcome.report["cells"])


def test_a_person_added_by_a_new_version_is_not_given_away(platform, provider, tmp_path, service):
    """Released on version 1: each county's total; version 2 adds one person to north.
    The same query again would give that person's income as the difference."""
    sql = "SELECT county, SUM(income) AS total FROM d GROUP BY county"
    first = _submit(service, sql)
    assert first.state is JobState.RELEASED and not _differenced(first)
    rows = _rows(range(90), _county, lambda p: 100 + p)
    rows += [{"pid": "KEY-0000", "county": "north", "block": 999, "income": 5000.0}]
    _register(platform, provider, tmp_path, rows)
    second = _submit(service, sql)
    north = [c for c in second.report["cells"] if "differencing" in c["rules"]]
    assert north, second.report  # suppressed: it differs from a released cell by one entity
    table = pq.read_table(platform.home / "products" / second.product_id / "output.parquet")
    totals = dict(zip(*(table.column(c).to_pylist() for c in ("county", "total")), strict=True))
    assert totals["north"] is None


def test_lost_numbering_files_are_written_again_from_the_store(platform, service):
    first = _submit(service, "SELECT county, COUNT(*) AS n FROM d GROUP BY county")
    assert first.state is JobState.RELEASED
    shutil.rmtree(platform.home / "numbers")  # a restored backup holds none of them
    # north less one person: the differencing check still knows who is who
    near = _submit(service, "SELECT county, COUNT(*) AS n FROM d WHERE block <> 3 GROUP BY county")
    assert near.state is JobState.RELEASED and _differenced(near)
    assert list((platform.home / "numbers").rglob("*.rows.parquet"))


def test_a_held_output_keeps_no_raw_key_on_disk(platform, provider, tmp_path, make_principal):
    # south's incomes are all missing: COUNT(income) = 0 there, a zero cell for review
    rows = _rows(range(90), _county, lambda p: None if _county(p) == "south" else 100.0 + p)
    _register(platform, provider, tmp_path, rows, name="z")
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    bank = make_principal("bank", Role.OPERATOR)[0]
    add_grant(platform, authority, "bank", "z", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(
            bank, {"sql": "SELECT county, COUNT(income) AS n FROM z GROUP BY county"}
        )
    finally:
        service.close()
    assert outcome.state is JobState.WITHHELD
    held = [p for p in (platform.home / "held").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".entities.json") for p in held)
    for path in held:
        assert b"KEY-" not in path.read_bytes(), path


def test_the_engines_own_words_go_to_the_host_log_only(tmp_path, caplog):
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"v": ["secret-value-17"]}), table)
    runner = Runner(Limits(time_s=30), spare=False)
    with caplog.at_level(logging.WARNING, logger="sandbox.run.runner"):
        with pytest.raises(JobFailed) as caught:
            runner.run("SELECT CAST(v AS INTEGER) AS n FROM t", {"t": table})
    assert caught.value.code == "engine_error"
    assert "secret-value-17" not in caught.value.message
    assert "secret-value-17" in caplog.text  # the host sees what went wrong


@pytest.mark.spark
def test_on_spark_the_executors_fold_the_cells_and_the_attack_is_caught(tmp_path, make_principal):
    """The same attack on a platform whose SQL jobs run on Spark: each cell's numbers
    are looked up by key and folded into bitmaps by the executors."""
    from sandbox.core.platform import Platform
    from sandbox.run.engines import spark as spark_engine

    home = tmp_path / "spark-home"
    home.mkdir()
    (home / "sandbox.toml").write_text('engine = "spark"\n[spark]\nmaster = "local[2]"\n')
    platform = Platform.init(home)
    try:
        from sandbox.core import principals
        from sandbox.core.ledger import now_utc

        with platform.store.transaction() as conn:
            made = {
                name: principals.insert(conn, name, role, name, juris, now_utc())[0]
                for name, role, juris in (
                    ("prov", Role.PROVIDER, None),
                    ("city", Role.AUTHORITY, "city"),
                    ("bank", Role.OPERATOR, None),
                )
            }
        _register(platform, made["prov"], tmp_path, _rows(range(90), _county, lambda p: 100 + p))
        add_grant(platform, made["city"], "bank", "d", until="2099-01-01")
        service = JobService(platform, spare=False)
        try:
            first = service.submit(made["bank"], {"sql": QUERY})
            assert first.state is JobState.RELEASED, first
            near = service.submit(
                made["bank"],
                {"sql": "SELECT county, COUNT(*) AS n FROM d WHERE block <> 3 GROUP BY county"},
            )
            near = service.outcome(made["city"], near.job_id)
        finally:
            service.close()
        assert near.state is JobState.RELEASED and _differenced(near)
    finally:
        platform.close()
        spark_engine.stop_all()
