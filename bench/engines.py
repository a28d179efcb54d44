"""Benchmark: the same work on DuckDB, Spark and Ray (issue 9).

Usage::

    python bench/engines.py [--rows 10000000] [--runs 3] [--psi-items 1000000]
                            [--skip-sql] [--skip-psi]
    python bench/engines.py --quick      # --rows 1000000 --runs 1 --psi-items 100000

SQL job (``--rows`` payments rows, ``bench/_data.py``; the query of
``bench/sql_job.py``: ``GROUP BY county`` with COUNT(DISTINCT), SUM and AVG):

``duckdb_bare``
    the operator's query in an in-process DuckDB over the snapshot file, with the
    worker's settings (the reference for the DuckDB path).
``duckdb_job``
    :meth:`JobService.submit` with ``engine = duckdb``: admission, evidence
    rewrite, the isolated worker (pre-started spare), output check, release.
``spark_session_start``
    the first start of the Spark session (``spark.master``, default ``local[2]``);
    paid once per platform process, so reported apart from the jobs.
``spark_bare``
    the operator's query on that session over the same snapshot, without the
    evidence (the reference for the Spark path).
``spark_job``
    :meth:`JobService.submit` with ``engine = spark`` on the warm session.
``ray_start`` / ``ray_job``
    a local Ray cluster (2 CPUs) started, then :meth:`JobService.submit` with
    ``ray.dispatch_jobs`` on: the same isolated worker started by a Ray task.

PSI set-up build (``--psi-items`` registry codes, RAW structure):
``psi_build_1``, ``psi_build_2``, ``psi_build_ray2``: :func:`sandbox.psi.service.build_bundle`
in one process, in two processes, and as two Ray tasks on the local cluster.
The three bundles must be byte-identical; the script stops if they are not.

Jobs are timed as the median of ``--runs`` rounds after one warm-up round, rounds
interleaving the engines so a change of the shared machine's load falls on all.
Ratios are printed at the end. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

import _results  # noqa: E402
import private_set_intersection.python as psi_lib  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _results import figure  # noqa: E402
from sql_job import QUERY, _sql_literal, bare_connection, setup  # noqa: E402

from sandbox.core.platform import Platform  # noqa: E402
from sandbox.psi.setup import SetupSpec, build_bundle  # noqa: E402
from sandbox.run.engines import ray_pool  # noqa: E402
from sandbox.run.engines import spark as spark_engine  # noqa: E402
from sandbox.run.execution import JobService  # noqa: E402
from sandbox.run.jobstate import JobState  # noqa: E402


def opened(home: Path, **settings: str) -> Platform:
    """The platform at ``home`` opened with extra ``SANDBOX_*`` settings (read at open)."""
    names = {f"SANDBOX_{k.upper()}": v for k, v in settings.items()}
    os.environ.update(names)
    try:
        return Platform.open(home)
    finally:
        for name in names:
            del os.environ[name]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def rounds(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """One warm-up round, then ``runs`` rounds of every case in turn."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(runs + 1):
        for name, fn in cases.items():
            seconds, result = timed(fn)
            state = getattr(result, "state", None)
            if state is not None and state is not JobState.RELEASED:
                raise SystemExit(f"{name}: the job ended {state.value}: {result.reason}")
            if round_:
                times[name].append(seconds)
    return times


def report(times: dict[str, list[float]], rows: int) -> dict[str, float]:
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        spread = f"min {min(values):.3f}, max {max(values):.3f}, n={len(values)}"
        figure(f"{rows}_{name}", medians[name], "s", spread)
    return medians


def bench_sql(rows: int, runs: int, tmp: Path) -> None:
    print(f"# SQL job, rows={rows}", flush=True)
    seconds, (platform, operator, version) = timed(lambda: setup(tmp / "home", rows))
    figure(f"{rows}_setup", seconds, "s", "data, register, grant")
    snapshot = str(version.path)
    duck = bare_connection(platform)
    duck.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({_sql_literal(snapshot)})")
    duck_jobs = JobService(platform, spare=True)

    on_spark = opened(platform.home, engine="spark", job_time_limit_s="900")
    spark_jobs = JobService(on_spark, spare=False)
    engine = spark_engine.engine_for(on_spark.settings.spark.master)
    start_s, session = timed(engine.session)
    figure("spark_session_start", start_s, "s", f"master {engine.master}, once per process")

    def spark_bare() -> pa.Table:
        session.read.parquet(snapshot).createOrReplaceTempView("t")
        return session.sql(QUERY).toArrow()

    ray_s, _ = timed(lambda: ray_pool.connect(ray_pool.LOCAL))
    figure("ray_start", ray_s, "s", f"local cluster, {ray_pool.LOCAL_CPUS} CPUs, once per process")
    on_ray = opened(platform.home, ray_address=ray_pool.LOCAL, ray_dispatch_jobs="true")
    ray_jobs = JobService(on_ray, spare=False)

    request = {"sql": QUERY}
    times = rounds(
        {
            "duckdb_bare": lambda: duck.sql(QUERY).to_arrow_table(),
            "duckdb_job": lambda: duck_jobs.submit(operator, request),
            "spark_bare": spark_bare,
            "spark_job": lambda: spark_jobs.submit(operator, request),
            "ray_job": lambda: ray_jobs.submit(operator, request),
        },
        runs,
    )
    m = report(times, rows)
    print("# ratios (medians)")
    figure("duckdb_job / duckdb_bare", m["duckdb_job"] / m["duckdb_bare"], "x")
    figure("spark_job / spark_bare", m["spark_job"] / m["spark_bare"], "x")
    figure("spark_job / duckdb_job", m["spark_job"] / m["duckdb_job"], "x", "local[2] on 2 cores")
    figure("spark_bare / duckdb_bare", m["spark_bare"] / m["duckdb_bare"], "x")
    figure("ray_job / duckdb_job", m["ray_job"] / m["duckdb_job"], "x", "a task starts the worker")
    for service in (duck_jobs, spark_jobs, ray_jobs):
        service.close()
    spark_engine.stop_all()
    for each in (platform, on_spark, on_ray):
        each.close()


def bench_psi(items: int, tmp: Path) -> None:
    print(f"# PSI set-up build, items={items}", flush=True)
    path = tmp / "registry.parquet"
    codes = [f"91370800MA{i:08d}" for i in range(items)]
    pq.write_table(pa.table({"code": codes}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("registry", 1, "code", None, 0, "raw", 1e-9, 10_000)
    ray_s, _ = timed(lambda: ray_pool.connect(ray_pool.LOCAL))
    figure("psi_ray_start", ray_s, "s", "0 if the cluster was already up")
    bundles = {}
    times = {}
    for name, processes, address in (
        ("psi_build_1", 1, ""),
        ("psi_build_2", 2, ""),
        ("psi_build_ray2", 2, ray_pool.LOCAL),
    ):
        times[name], (bundles[name], _meta) = timed(
            lambda p=processes, a=address: build_bundle(key, spec, path, p, a)
        )
        figure(f"{items}_{name}", times[name], "s")
    if len({bytes(b) for b in bundles.values()}) != 1:
        raise SystemExit("the three PSI bundles differ: the engines disagree")
    figure(f"{items}_bundle_bytes", len(bundles["psi_build_1"]), "bytes", "identical x3")
    print("# ratios")
    figure("psi speed-up, 2 processes", times["psi_build_1"] / times["psi_build_2"], "x")
    figure("psi speed-up, Ray 2 CPUs", times["psi_build_1"] / times["psi_build_ray2"], "x")
    figure("psi Ray / 2 processes", times["psi_build_ray2"] / times["psi_build_2"], "x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--psi-items", type=int, default=1_000_000)
    parser.add_argument("--skip-sql", action="store_true")
    parser.add_argument("--skip-psi", action="store_true")
    args = _results.parse_args(parser, {"rows": 1_000_000, "runs": 1, "psi_items": 100_000})
    with _results.recording(__file__, args):
        print(f"# cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
            if not args.skip_sql:
                bench_sql(args.rows, args.runs, Path(tmp))
            if not args.skip_psi:
                bench_psi(args.psi_items, Path(tmp))
        ray_pool.shutdown()
        print(f"# load at the end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
