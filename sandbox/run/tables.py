"""The tables of the job runners' hosts, used when the store is PostgreSQL.

Imported by :meth:`sandbox.core.store.Store.open` before ``create_all``. Each server
process holds a lease it renews by heartbeats (``host_leases``) and names itself on
every job it claims (``job_hosts``), so a host that survives can fail the jobs of a
host that is gone, and only those (:mod:`sandbox.run.leases`).
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, String, Table

from sandbox.core.store import metadata

host_leases = Table(
    "host_leases",
    metadata,
    Column("host", String(160), primary_key=True),  # host name, process id, a random tag
    Column("heartbeat", Float, nullable=False),  # the database's clock, seconds since 1970
)

job_hosts = Table(
    "job_hosts",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("host", String(160), nullable=False),
)
