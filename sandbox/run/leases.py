"""Host leases on a PostgreSQL store: which jobs belong to a host that is gone.

Every server process names itself (:func:`host_id`: host name, process id and a random
tag, new in every process) on each job it opens and claims (:func:`claimed`, in the
same transaction) and renews its lease from a thread of its own (:func:`beat`, the
database's clock, so the hosts' clocks may differ). A ``running`` or ``checking`` job
(or ``submitted``, not yet admitted) whose host has not beaten for ``store.host_lease_s`` seconds (:func:`gone_jobs`) is
failed by whichever host looks next (:func:`sandbox.run.jobstate.recover_gone`): its
worker is gone with its host, and nothing of it was released. A job of a live host is
never touched, as the lock files of one home (SQLite's recovery) could not tell.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Connection, Engine

from sandbox.core.store import insert_or, jobs
from sandbox.run.tables import host_leases, job_hosts

_ID: tuple[int, str] | None = None
BUSY = ("submitted", "running", "checking")  # a job between these and its end has a host


def host_id() -> str:
    """This process's name in the leases (a forked process gets its own)."""
    global _ID
    if _ID is None or _ID[0] != os.getpid():
        _ID = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")
    return _ID[1]


def _now() -> Any:
    """The database's clock, seconds since 1970 (PostgreSQL)."""
    return func.extract("epoch", func.clock_timestamp())


def claimed(conn: Connection, job_id: int) -> None:
    """Name this process on the job it opens or claims, in that transaction (PostgreSQL):
    the host that admits a job may not be the host that runs it."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            insert_or(conn, job_hosts)
            .values(job_id=job_id, host=host_id())
            .on_conflict_do_update(index_elements=["job_id"], set_={"host": host_id()})
        )


def heartbeat_engine(engine: Engine) -> Engine:
    """An engine of one connection of its own on ``engine``'s database, for the heartbeat
    alone: a beat must never wait for a connection of the store's pool, which may all be
    held by transactions queued on the write lock while another host holds it."""
    return create_engine(engine.url, pool_size=1, max_overflow=0, pool_pre_ping=True)


def beat(engine: Engine) -> None:
    """Renew this process's lease, in a short transaction of its own (not a writing one:
    it never waits for the store's write lock)."""
    with engine.begin() as conn:
        now = _now()
        conn.execute(
            insert_or(conn, host_leases)
            .values(host=host_id(), heartbeat=now)
            .on_conflict_do_update(index_elements=["host"], set_={"heartbeat": now})
        )


def gone_jobs(conn: Connection, lease_s: float) -> list:
    """(id, operator_id) of the busy jobs whose host's lease ran out. A process that
    never held a lease (a local ``sandbox`` command running a job in its own process)
    is not a server host: its jobs are left alone. A server's lease is kept when it
    stops, so that a job it left behind is failed once the lease runs out."""
    lease = host_leases
    return list(
        conn.execute(
            select(jobs.c.id, jobs.c.operator_id)
            .join(job_hosts, job_hosts.c.job_id == jobs.c.id)
            .join(lease, lease.c.host == job_hosts.c.host)
            .where(jobs.c.status.in_(BUSY), lease.c.heartbeat < _now() - lease_s)
            .order_by(jobs.c.id)
        )
    )
