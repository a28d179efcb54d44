"""The tables of refreshable sources, on the store's one ``metadata``.

Imported by :meth:`sandbox.core.store.Store._migrate` before ``create_all``. A row says
which source a dataset is read from again (as shown: its password as ``***``), when it
is pulled on its own (a daily time in :data:`sandbox.data.refresh.TIMEZONE`) and how
the last pull went. The source's full URI, password included, is not in the store: it
is a file of its own under ``keys/sources/`` (:mod:`sandbox.data.kept_sources`).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, String, Table, Text

from sandbox.core.store import metadata

dataset_sources = Table(
    "dataset_sources",
    metadata,
    Column("dataset_id", Integer, ForeignKey("datasets.id"), primary_key=True),
    Column("source", Text, nullable=False),  # redacted
    Column("daily_at", String(5)),  # "HH:MM" in the schedule's time zone; NULL: no schedule
    Column("last_fired_on", String(10)),  # the local date the schedule last fired
    Column("last_pull_at", String(40)),
    Column("last_status", String(20)),  # changed, unchanged, failed
    Column("last_error", Text),
    Column("updated_at", String(40), nullable=False),
)
