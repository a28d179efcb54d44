"""Benchmark: one SQL aggregate job through the platform against the same query in bare DuckDB.

Usage::

    python bench/sql_job.py [--rows 10000000 100000] [--runs 3] [--settle 1.5] [--diagnose]
    python bench/sql_job.py --quick      # --rows 1000000 --runs 2 (make bench)

For each size it registers the payments table (``bench/_data.py``: a county
dimension, the entity key ``pid`` with about rows/10 distinct persons, the
measure ``amount``) as dataset ``t``, grants it to an operator, and times

``submit_spare`` / ``submit_no_spare``
    :meth:`sandbox.run.execution.JobService.submit` end to end (admission, evidence
    rewrite, isolated worker, output check, signed release), with and without
    the pre-started spare worker.
``bare_visible``
    the operator's query itself in an in-process DuckDB over the same Parquet
    snapshot file (``read_parquet``), with the worker's settings (threads=2,
    memory_limit = half the job's memory limit): the reference.
``bare_evidence``
    the rewritten (evidence) statement the worker runs, in the same bare DuckDB:
    the cost of the rewrite alone.
``bare_evidence_arrow``
    that statement over a ``pyarrow.dataset`` of the snapshot, the worker's scan
    path until it read the Parquet file itself: what that change saved.
``bare_evidence_cold``
    the worker's own steps in this process: a new connection, ``allowed_paths``
    and a ``read_parquet`` view, external access off, the query; the gap to the
    runner's time is the process itself.
``bare_one_pass`` (``--diagnose``)
    a hand-written statement that yields the same visible and evidence figures
    from one GROUP BY (county, pid): what a one-pass rewrite could cost.

Every figure is the median of ``--runs`` warm runs after one warm-up round. The
cases run interleaved, round by round, with ``--settle`` seconds of sleep before
each call (a spare started by the previous job finishes its imports, as it
would between two operators' jobs), so a change in the load of this shared
machine falls on all of them alike.
Between the runner's time (``run_s`` of the job) and ``submit`` lie admission,
the output check, the release and the ledger.
Nothing here asserts a time; the aim (submit <= 3x bare at 10M rows) is
printed beside the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _data
import _results
import duckdb
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from _results import figure
from sqlalchemy import select

from jobs import get_kind
from policies.admission import QueryScope, TableScope
from policies.classes import Classification
from sandbox.core import principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Role
from sandbox.core.store import jobs
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService

QUERY = (
    "SELECT county, COUNT(DISTINCT pid) AS persons, SUM(amount) AS total, "
    "AVG(amount) AS mean FROM t GROUP BY county"
)
AIM_RATIO = 3.0

# What the evidence rewrite could cost in one pass: every visible aggregate of
# QUERY derived from the per-entity rows the evidence needs anyway (COUNT(DISTINCT
# entity key) = entities in the group; SUM = sum of entity sums; AVG = SUM / COUNT).
# Written by hand for QUERY only; a diagnostic, not a proposal of exact SQL.
ONE_PASS_SQL = """
WITH per_entity AS (
    SELECT county, pid, COUNT(*) AS n_rows, COUNT(amount) AS n_amount, SUM(amount) AS s
    FROM t GROUP BY county, pid
)
SELECT county, COUNT(pid) AS persons, SUM(s) AS total, SUM(s) / SUM(n_amount) AS mean,
       COUNT(*) AS __n, max(s, 2) AS __top, COUNT(*) FILTER (WHERE s < 0) AS __neg,
       SUM(n_rows - n_amount) AS __null
FROM per_entity GROUP BY county
"""


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def interleaved(cases: dict[str, Callable[[], object]], runs: int, settle: float):
    """One warm-up round, then ``runs`` rounds of every case in turn; times and results.

    Rounds interleave the cases so that a change in the machine's load (it is
    shared) falls on every case alike; ``settle`` seconds of sleep before each
    call let a spare worker started by the previous job finish its imports.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    results: dict[str, list] = {name: [] for name in cases}
    for round_ in range(runs + 1):
        for name, fn in cases.items():
            time.sleep(settle)
            started = time.perf_counter()
            result = fn()
            if round_:
                times[name].append(time.perf_counter() - started)
                results[name].append(result)
    return times, results


def setup(home: Path, rows: int):
    """A fresh platform with dataset ``t`` granted to operator ``bench_operator``."""
    source = _data.payments_parquet(rows)
    platform = Platform.init(home)
    made = {}
    with platform.store.transaction() as conn:
        for name, role, jurisdiction in (
            ("bench_provider", Role.PROVIDER, None),
            ("bench_authority", Role.AUTHORITY, "city"),
            ("bench_operator", Role.OPERATOR, None),
        ):
            made[name], _token = principals.insert(conn, name, role, name, jurisdiction, now_utc())
    classification = Classification.from_dict(_data.CLASSIFICATION)
    version = vault.register(
        platform, made["bench_provider"], "t", str(source), classification
    ).version
    add_grant(platform, made["bench_authority"], "bench_operator", "t", until="2030-01-01")
    return platform, made["bench_operator"], version


def evidence_sql(version: vault.DatasetVersion) -> str:
    """The statement the worker runs for QUERY: admitted and rewritten with its evidence."""
    scope = QueryScope(tables={"t": TableScope("t", version.classification)})
    return get_kind("sql_aggregate").plan({"sql": QUERY}, scope).engine_sql


def bare_connection(platform: Platform) -> duckdb.DuckDBPyConnection:
    settings = platform.settings
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": settings.job.threads,
            "memory_limit": f"{max(128, settings.job.memory_limit_mb // 2)}MB",
        },
    )
    con.execute("SET enable_progress_bar = false")
    return con


def cold_run(platform: Platform, snapshot: str, sql: str):
    """The worker's steps in this process: a new connection, the view, the query."""
    con = bare_connection(platform)
    try:
        con.execute("SET allowed_paths = $paths", {"paths": [snapshot]})
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({_sql_literal(snapshot)})")
        con.execute("SET enable_external_access = false")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def runtime_of(platform: Platform, job_id: int) -> dict:
    with platform.store.read() as conn:
        raw = conn.execute(select(jobs.c.runtime_json).where(jobs.c.id == job_id)).scalar_one()
    return json.loads(raw) if raw else {}


def bench_size(rows: int, runs: int, settle: float, diagnose: bool) -> None:
    print(f"# rows={rows}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        started = time.perf_counter()
        platform, operator, version = setup(Path(tmp) / "home", rows)
        figure(f"{rows}_setup", time.perf_counter() - started, "s", "data, register, grant")
        figure(f"{rows}_snapshot_bytes", version.bytes, "bytes")
        figure(f"{rows}_distinct_persons", version.profile["columns"]["pid"]["distinct"])
        engine_sql = evidence_sql(version)
        snapshot = str(version.path)
        on_file = bare_connection(platform)
        on_file.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({_sql_literal(snapshot)})")
        on_arrow = bare_connection(platform)
        on_arrow.register("t", pads.dataset(snapshot, format="parquet"))
        spare = JobService(platform, spare=True)
        no_spare = JobService(platform, spare=False)
        request = {"sql": QUERY}
        cases: dict[str, Callable[[], object]] = {
            "bare_visible": lambda: on_file.sql(QUERY).to_arrow_table(),
            "bare_evidence": lambda: on_file.sql(engine_sql).to_arrow_table(),
            "bare_evidence_arrow": lambda: on_arrow.sql(engine_sql).to_arrow_table(),
            "bare_evidence_cold": lambda: cold_run(platform, snapshot, engine_sql),
            "submit_spare": lambda: spare.submit(operator, request),
            "submit_no_spare": lambda: no_spare.submit(operator, request),
        }
        if diagnose:
            cases["bare_one_pass"] = lambda: on_file.sql(ONE_PASS_SQL).to_arrow_table()
        try:
            times, results = interleaved(cases, runs, settle)
        finally:
            spare.close()
            no_spare.close()
            on_file.close()
            on_arrow.close()
        runtimes = {
            name: [runtime_of(platform, o.job_id) for o in results[name]]
            for name in ("submit_spare", "submit_no_spare")
        }
        states = sorted({o.state.value for n in runtimes for o in results[n]})
        bare_rows = results["bare_visible"][-1].num_rows
        released = results["submit_spare"][-1]
        released_rows = (
            pq.read_metadata(
                platform.home / "products" / released.product_id / "output.parquet"
            ).num_rows
            if released.product_id
            else 0
        )
        platform.close()

    med = {name: statistics.median(values) for name, values in times.items()}

    def runtime(name: str, key: str) -> float:
        return statistics.median(r.get(key, float("nan")) for r in runtimes[name])

    notes = {
        "bare_visible": "reference: the query itself, read_parquet",
        "bare_evidence": "rewritten statement, read_parquet",
        "bare_evidence_arrow": "rewritten statement over a pyarrow dataset (the old scan)",
        "bare_one_pass": "hand-written one-pass evidence query, see ONE_PASS_SQL",
        "bare_evidence_cold": "as the worker does: new connection, view, query",
        "submit_spare": "JobService.submit end to end, spare worker",
        "submit_no_spare": "JobService.submit end to end, fresh worker per job",
    }
    for name in cases:
        spread = f"min {min(times[name]):.3f}, max {max(times[name]):.3f}"
        figure(f"{rows}_{name}", med[name], "s", f"{notes[name]}; {spread}")
        if name.startswith("submit"):
            figure(
                f"{rows}_{name}_runner", runtime(name, "run_s"), "s", "runner: take worker..read"
            )
            figure(f"{rows}_{name}_wait", runtime(name, "wait_s"), "s", "until the worker woke")
    figure(f"{rows}_runs", runs, "", "median of this many warm runs, after one warm-up")
    figure(f"{rows}_states", ",".join(states))
    figure(f"{rows}_released_rows", released_rows, "rows", f"bare: {bare_rows}")
    visible = med["bare_visible"]
    figure(
        f"{rows}_ratio_submit_spare_vs_bare",
        med["submit_spare"] / visible,
        "x",
        f"aim <= {AIM_RATIO:g}x",
    )
    figure(f"{rows}_ratio_submit_no_spare_vs_bare", med["submit_no_spare"] / visible, "x")
    figure(f"{rows}_ratio_no_spare_vs_spare", med["submit_no_spare"] / med["submit_spare"], "x")
    figure(f"{rows}_ratio_evidence_vs_visible", med["bare_evidence"] / visible, "x", "rewrite")
    figure(
        f"{rows}_ratio_arrow_vs_read_parquet",
        med["bare_evidence_arrow"] / med["bare_evidence"],
        "x",
        "scan path",
    )
    figure(
        f"{rows}_cold_connection_cost",
        med["bare_evidence_cold"] - med["bare_evidence"],
        "s",
        "new connection and view vs warm ones, in process",
    )
    figure(
        f"{rows}_process_overhead",
        runtime("submit_spare", "run_s") - med["bare_evidence_cold"],
        "s",
        "runner time minus the same steps in process: hand-over, IPC, exit",
    )
    figure(
        f"{rows}_platform_overhead",
        med["submit_spare"] - runtime("submit_spare", "run_s"),
        "s",
        "admission, output check, release, ledger",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 100_000])
    parser.add_argument("--runs", type=int, default=3, help="timed warm runs per figure")
    parser.add_argument(
        "--settle", type=float, default=1.5, help="seconds of sleep before each timed call"
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="also time a one-pass evidence query"
    )
    args = _results.parse_args(parser, {"rows": [1_000_000], "runs": 2}, argv)
    with _results.recording(__file__, args):
        for rows in args.rows:
            bench_size(rows, args.runs, args.settle, args.diagnose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
