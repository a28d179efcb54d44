"""The API's table: the rate-limit buckets, when the store is PostgreSQL.

Imported by :meth:`sandbox.core.store.Store.open` before ``create_all``. On SQLite
(one host) the buckets stay small files under the home's ``run/rate/``; with
``store.url`` set to PostgreSQL every host draws from these rows instead
(:class:`sandbox.api.limits.RateLimiter`), so a principal's rate holds across hosts.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, Table

from sandbox.core.store import metadata

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("principal_id", Integer, primary_key=True, autoincrement=False),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),  # the database's clock, seconds since 1970
)
