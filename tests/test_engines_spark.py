"""The same jobs on Spark (local[2]) as on DuckDB: identical released cells and suppressions.

Every admitted case of ``tests/golden/jobs.sql`` is prepared once (admission,
grants gate, evidence rewrite) on the golden platform of
``tests/test_job_golden.py``, run by the isolated DuckDB worker and by the
Spark engine, and both raw results go through the same output check. A second
golden platform with ``engine = spark`` runs whole jobs through
:class:`~sandbox.run.execution.JobService`, including one whose Spark session is
stopped while it runs. One Spark session serves the whole module.
"""

from __future__ import annotations

import math
import socket
import threading
import time

import duckdb
import pyarrow as pa
import pytest

from jobs import get_kind
from policies.errors import JobFailed, SandboxError
from sandbox.core import ledger
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.admission import prepare
from sandbox.run.engines import spark as spark_engine
from sandbox.run.jobstate import JobState
from tests.test_job_golden import CASES, DATA, GoldenPlatform

pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

MASTER = "local[2]"
ADMITTED = [c for c in CASES if c.outcome != "refused"]


@pytest.fixture(scope="module")
def engine():
    started = time.perf_counter()
    engine = spark_engine.engine_for(MASTER)
    engine.session()
    print(f"spark session start: {time.perf_counter() - started:.1f} s")
    yield engine
    spark_engine.stop_all()


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    built = GoldenPlatform(tmp_path_factory.mktemp("spark-diff") / "home")
    yield built
    built.close()


def _run(execute, golden: GoldenPlatform, case):
    """(check result, None) or (None, JobFailed code) for one case on one executor."""
    kind = get_kind("sql_aggregate")
    operator = golden.operator(case)
    with golden.platform.store.read() as conn:
        prepared = prepare(conn, golden.platform, operator, kind, {"sql": case.sql})
    snapshots = {t: v.path for t, v in prepared.versions.items()}
    try:
        raw = kind.run(prepared.plan, execute, snapshots)
    except JobFailed as failure:
        return None, failure.code
    return kind.check(prepared.plan, raw, prepared.params), None


def _cells(result) -> list[tuple]:
    """Each released row as (values..., verdict per column), rows sorted: the two engines
    need not return groups in the same order when the query has no ORDER BY."""
    table: pa.Table = result.released
    verdicts: dict[tuple[int, str], str] = {(c.row, c.column): c.verdict.name for c in result.cells}
    rows = []
    for r, row in enumerate(table.to_pylist()):
        rows.append(
            tuple((name, _norm(value), verdicts.get((r, name))) for name, value in row.items())
        )
    return sorted(rows, key=repr)


def _norm(value):
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    if value is not None and hasattr(value, "__float__"):  # Decimal
        return float(value)
    return value


def _same(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for row_a, row_b in zip(a, b, strict=True):
        for (na, va, ca), (nb, vb, cb) in zip(row_a, row_b, strict=True):
            if na != nb or ca != cb:
                return False
            if isinstance(va, float) and isinstance(vb, float):
                if not math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif va != vb:
                return False
    return True


@pytest.mark.parametrize("case", ADMITTED, ids=[f"L{c.line}-{c.name}" for c in ADMITTED])
def test_spark_matches_duckdb(engine, golden: GoldenPlatform, case):
    cap = golden.platform.settings.job.max_output_rows

    def duck(sql, tables):
        return golden.service.runner.run(sql, tables).table

    def spark(sql, tables):
        return engine.run(sql, tables, cap)

    duck_result, duck_failed = _run(duck, golden, case)
    spark_result, spark_failed = _run(spark, golden, case)
    assert duck_failed == spark_failed, (duck_failed, spark_failed)
    if duck_failed:
        return
    assert duck_result.verdict is spark_result.verdict, (
        duck_result.summary_text(),
        spark_result.summary_text(),
    )
    assert dict(duck_result.counts) == dict(spark_result.counts)
    assert _same(_cells(duck_result), _cells(spark_result)), (
        _cells(duck_result),
        _cells(spark_result),
    )


def test_spark_refuses_what_is_not_the_admitted_plan(tmp_path):
    """The engine's own check: one SELECT over the granted views and nothing else."""
    tables = {"pums": tmp_path / "pums.parquet"}
    spark_engine.spark_sql("SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", tables)
    for sql in [
        "SELECT COUNT(*) AS n FROM other",
        "SELECT COUNT(*) AS n FROM read_parquet('/etc/passwd')",
        "SELECT my_udf(income) AS x FROM pums",
        "DROP TABLE pums",
    ]:
        with pytest.raises(JobFailed) as caught:
            spark_engine.spark_sql(sql, tables)
        assert caught.value.code in ("access_denied", "engine_error"), sql


@pytest.fixture(scope="module")
def spark_golden(engine, tmp_path_factory):
    home = tmp_path_factory.mktemp("spark-jobs") / "home"
    built = GoldenPlatform(home, f'engine = "spark"\n[spark]\nmaster = "{MASTER}"\n')
    assert built.platform.settings.engine == "spark"
    yield built
    built.close()


def test_whole_job_on_spark_is_released(spark_golden: GoldenPlatform):
    case = next(c for c in CASES if c.outcome == "released")
    outcome = spark_golden.service.submit(spark_golden.operator(case), {"sql": case.sql})
    assert outcome.state is JobState.RELEASED, outcome
    assert outcome.report["verdict"] == "released"
    assert (spark_golden.platform.home / "products" / outcome.product_id).exists()


def test_job_whose_spark_session_stops_mid_run_fails_and_releases_nothing(
    engine, spark_golden: GoldenPlatform, tmp_path
):
    """A whole job through the job service, on three million rows; its Spark session is
    stopped as soon as Spark runs anything for it. The job fails with ``engine_lost``,
    nothing is released or held, the failure is in the ledger, and the next job gets a
    fresh session and is released."""
    golden = spark_golden
    big = tmp_path / "big.parquet"
    source = DATA / "pums_1000_pid.csv"
    duckdb.sql(
        "COPY (SELECT age, sex, educ, race, income, married, pid + 1000 * i AS pid "
        f"FROM read_csv('{source}'), range(3000) AS r(i)) TO '{big}' (FORMAT parquet)"
    )
    vault.register(
        golden.platform, golden.provider, "big", str(big), golden.classifications["pums"]
    )
    case = next(c for c in CASES if c.outcome == "released")
    operator = golden.operator(case)
    add_grant(golden.platform, golden.authority, operator.name, "big", until="2099-01-01")
    session = engine.session()
    stopped = threading.Event()

    def stop_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if session.sparkContext.statusTracker().getActiveJobsIds():
                session.stop()
                stopped.set()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=stop_when_busy, daemon=True)
    watcher.start()
    sql = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM big GROUP BY sex"
    outcome = golden.service.submit(operator, {"sql": sql})
    watcher.join(5)
    assert stopped.is_set(), "the job finished before its session could be stopped"
    assert outcome.state is JobState.FAILED, outcome
    assert outcome.reason["code"] == "engine_lost", outcome.reason
    assert "Spark session ended" in outcome.reason["message"]
    assert "nothing was released" in outcome.reason["message"]
    assert outcome.product_id is None
    home = golden.platform.home
    assert not (home / "products" / f"prod-{outcome.job_id:06d}").exists()
    assert not list((home / "held").glob(f"job-{outcome.job_id:06d}*"))
    with golden.platform.store.read() as conn:
        entries = ledger.query(conn, subject=f"job:{outcome.job_id}")
    assert entries[-1]["action"] == "job.failed", entries[-1]
    assert entries[-1]["details"]["code"] == "engine_lost", entries[-1]
    again = golden.service.submit(operator, {"sql": case.sql})
    assert again.state is JobState.RELEASED, again


def test_spark_job_over_its_time_limit_is_cancelled_and_the_session_lives_on(
    engine, golden: GoldenPlatform
):
    """``job.time_limit_s`` holds on Spark too: the job's Spark jobs are cancelled, the
    job fails with ``time_limit``, and the same session runs the next job."""
    with golden.platform.store.read() as conn:
        snapshot = vault.get_version(conn, golden.platform, "pums").path
    # A four-way join on a two-valued key keeps Spark busy far longer than the limit
    # (admission would refuse this join; the engine is driven directly here).
    slow = (
        "SELECT COUNT(*) AS n FROM pums AS a JOIN pums AS b ON a.sex = b.sex "
        "JOIN pums AS c ON a.sex = c.sex JOIN pums AS d ON a.sex = d.sex"
    )
    started = time.monotonic()
    with pytest.raises(JobFailed) as caught:
        engine.run(slow, {"pums": snapshot}, 10, time_s=2.0)
    assert caught.value.code == "time_limit", caught.value
    assert time.monotonic() - started < 30
    quick = engine.run("SELECT COUNT(*) AS n FROM pums", {"pums": snapshot}, 10, time_s=60.0)
    assert quick.column("n").to_pylist() == [1000]


def test_a_second_master_in_the_same_process_is_refused(engine):
    """Spark keeps one session per process and ``getOrCreate`` would hand it back for
    any master: a platform configured for another master is told so."""
    other = spark_engine.SparkEngine("local[1]")
    with pytest.raises(SandboxError) as caught:
        other.session()
    assert caught.value.code == "engine_unavailable"
    assert "spark.master" in caught.value.message and "local[2]" in caught.value.message
    assert engine.session() is not None  # the running session is untouched


def test_an_unreachable_spark_master_is_refused_at_once(tmp_path):
    """A standalone master where nothing listens: ``engine_unavailable`` naming the
    setting, before any JVM is started (Spark itself would retry for a minute)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = spark_engine.SparkEngine(f"spark://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(SandboxError) as caught:
        engine.run("SELECT COUNT(*) AS n FROM pums", {"pums": tmp_path / "p.parquet"}, 10)
    assert time.monotonic() - started < 10
    assert caught.value.code == "engine_unavailable"
    assert "spark.master" in caught.value.message
    assert f"127.0.0.1:{port}" in caught.value.message
