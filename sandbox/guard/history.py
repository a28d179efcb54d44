"""The released-cell history: who contributed to every cell that ever left, per dataset.

The differencing defence (:mod:`policies.differencing`) judges a new cell
against every cell released before it, of every operator, on the same dataset
lineage (the dataset's name: all its versions number an entity alike). This
module keeps that history in the store, inside the platform only:

* ``entity_numbers``: a dense integer per entity key and dataset, appended as
  new keys appear, so a cell's contributors fit a compressed roaring bitmap;
* ``released_cells``: one row per released output row, its bitmap, its size
  and its group-key label, indexed by dataset;
* ``released_request_cells``: the same for answers that are not jobs (the
  groups of HE sums), so every kind of release is judged against every other.

:class:`History` caches both per dataset in memory (one per
:class:`~sandbox.core.platform.Platform` object, ``platform.history``, shared by its job
service, held-output releases and HE answers) and refreshes from the store by id, so
a check reads only rows committed since the last one. The check, the recording
and the release run in one write transaction (SQLite's write lock), so two
jobs cannot both pass against a history that lacks the other.

Known shortcut: the first check of a dataset in a process loads all its entity
numbers and cells (about a second per million entities); a server keeps them.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pyroaring import BitMap
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from jobs.sql_evidence import NULL_KEY  # NULL entity keys count as one entity together
from policies.differencing import HistoryIndex
from sandbox.guard.evidence import entity_bitmaps
from sandbox.guard.tables import released_cells, released_request_cells


class History:
    """Per-process cache of entity numbers and released cells, refreshed from the store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: dict[str, dict[str, int]] = {}
        self._top: dict[str, int] = {}
        self._indexes: dict[str, HistoryIndex] = {}
        self._last: dict[str, int] = {}
        self._last_request: dict[str, int] = {}
        # Numbers this process gave in its last write, kept until the store shows them.
        self._pending: dict[str, dict[str, int]] = {}

    def _refresh_numbers(self, conn: Connection, dataset: str) -> dict[str, int]:
        known = self._numbers.setdefault(dataset, {})
        top = self._top.get(dataset, -1)
        pending = self._pending.pop(dataset, None)
        if pending and _committed(conn, dataset, top, pending):
            known.update(pending)  # no need to read a million keys back
            top += len(pending)
        # The driver's own tuples in one fetch, ordered by number: a million keys
        # load in about two seconds instead of five through row objects.
        rows = driver_rows(
            conn,
            "SELECT entity_key, number FROM entity_numbers WHERE dataset = ? AND number > ? "
            "ORDER BY number",
            (dataset, top),
        )
        if rows:
            known.update(rows)
            top = max(top, rows[-1][1])
        self._top[dataset] = top
        return known

    def bitmaps(
        self, conn: Connection, dataset: str, key_lists: Sequence[Sequence | None]
    ) -> list[BitMap | None]:
        """Each list of entity keys as a bitmap, numbering new keys (in ``conn``'s transaction).

        New numbers are kept aside (``_pending``) and join the cache only when a later
        call finds exactly them in the store (:func:`_committed`), else they are read
        back; a rolled-back transaction leaves the cache consistent with the store.
        """
        with self._lock:
            known = self._refresh_numbers(conn, dataset)
            top = self._top[dataset]
        fresh: dict[str, int] = {}  # numbered here, cached only once read back
        out: list[BitMap | None] = []
        for keys in key_lists:
            if keys is None:
                out.append(None)
                continue
            numbers = []
            for key in keys:
                text = NULL_KEY if key is None else str(key)
                number = known.get(text)
                if number is None:
                    number = fresh.get(text)
                    if number is None:
                        top += 1
                        number = fresh[text] = top
                numbers.append(number)
            out.append(BitMap(numbers))
        if fresh:
            # Through the driver, in key order (the primary key's B-tree fills in
            # order): a million new keys take seconds, not the twenty that row
            # dictionaries through the SQL layer took.
            rows = sorted(((dataset, k, n) for k, n in fresh.items()), key=lambda r: r[1])
            insert_numbers(conn, rows)
            with self._lock:
                self._pending[dataset] = fresh
        return out

    def index(self, conn: Connection, dataset: str) -> HistoryIndex:
        """The released cells of ``dataset`` (jobs' and other requests'), brought up to
        what ``conn`` sees."""
        with self._lock:
            index = self._indexes.setdefault(dataset, HistoryIndex())
            for table, seen in (
                (released_cells, self._last),
                (released_request_cells, self._last_request),
            ):
                last = seen.get(dataset, 0)
                rows = conn.execute(
                    select(table.c.id, table.c.bitmap)
                    .where(table.c.dataset == dataset, table.c.id > last)
                    .order_by(table.c.id)
                )
                for cell_id, blob in rows:
                    index.add(BitMap.deserialize(blob))
                    last = cell_id
                seen[dataset] = last
            return index

    def record(
        self,
        conn: Connection,
        dataset: str,
        job_id: int,
        cells: Sequence[tuple[int, Sequence, BitMap]],
        now: str,
    ) -> int:
        """Store released cells as (row, group-key label, contributors); returns how many."""
        return _insert_cells(conn, released_cells, {"job_id": job_id}, dataset, cells, now)

    def record_request(
        self,
        conn: Connection,
        dataset: str,
        kind: str,
        principal_id: int,
        cells: Sequence[tuple[int, Sequence, BitMap]],
        now: str,
    ) -> int:
        """Store the released groups of a request that is not a job (``kind``: its
        ledger action) as (row, group label, contributors); returns how many."""
        owner = {"kind": kind, "principal_id": principal_id}
        return _insert_cells(conn, released_request_cells, owner, dataset, cells, now)


def history_of(platform) -> History:
    """The platform object's cache of the released-cell history, made on first use and
    refreshed from the store by every check; shared by jobs, held-output releases and
    HE answers."""
    return platform.shared("history", History)


def driver_cursor(conn: Connection) -> Any:
    """A cursor of the database driver's own connection under ``conn``: the same
    transaction, without the SQL layer's per-row cost."""
    driver = conn.connection.driver_connection
    assert driver is not None  # an open Connection holds its driver connection
    return driver.cursor()


def driver_rows(conn: Connection, sql: str, args: tuple) -> list:
    """The rows of ``sql`` (``?`` placeholders) as the driver's own tuples, in ``conn``'s
    transaction: without the SQL layer's per-row cost on a million keys."""
    if conn.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")  # psycopg's placeholders
    cursor = driver_cursor(conn)
    try:
        cursor.execute(sql, args)
        return cursor.fetchall()
    finally:
        cursor.close()


def insert_numbers(conn: Connection, rows: Sequence[tuple[str, str, int]] | Iterator) -> None:
    """Insert (dataset, entity key, number) rows, in key order (the primary key's B-tree
    fills in order), through the driver in ``conn``'s transaction: on SQLite one
    ``executemany`` (a million new keys take seconds, not the twenty that row dictionaries
    through the SQL layer took); on PostgreSQL ``COPY`` in CSV, a chunk at a time (three
    million keys: about 5 s, against 50 s for SQLAlchemy's multi-row INSERTs)."""
    if conn.dialect.name == "postgresql":
        _copy_numbers(conn, rows)
        return
    cursor = driver_cursor(conn)
    try:
        cursor.executemany(
            "INSERT INTO entity_numbers (dataset, entity_key, number) VALUES (?, ?, ?)", rows
        )
    finally:
        cursor.close()


COPY_CHUNK = 200_000  # rows per COPY: a few MB of CSV held at a time


def _copy_numbers(conn: Connection, rows: Iterable[tuple[str, str, int]]) -> None:
    """``COPY entity_numbers FROM STDIN`` in CSV (the csv module quotes a key holding a
    comma, quote or line break; an empty key is quoted, so it is not read as NULL)."""
    sql = "COPY entity_numbers (dataset, entity_key, number) FROM STDIN WITH (FORMAT csv)"
    cursor = driver_cursor(conn)
    try:
        it = iter(rows)
        while chunk := list(itertools.islice(it, COPY_CHUNK)):
            text = io.StringIO()
            csv.writer(text, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(chunk)
            text.seek(0)
            cursor.copy_expert(sql, text)
    finally:
        cursor.close()


def _committed(conn: Connection, dataset: str, top: int, pending: dict[str, int]) -> bool:
    """Whether the store holds exactly the numbers above ``top`` that this process gave
    (``pending``): its write committed and no other process numbered since. Otherwise
    (rolled back, or others' numbers too) the caller reads the numbers back."""
    ((count, highest),) = driver_rows(
        conn,
        "SELECT count(*), max(number) FROM entity_numbers WHERE dataset = ? AND number > ?",
        (dataset, top),
    )
    if count != len(pending) or highest != top + len(pending):
        return False
    first, last = min(pending, key=pending.__getitem__), max(pending, key=pending.__getitem__)
    for key in (first, last):
        found = driver_rows(
            conn,
            "SELECT number FROM entity_numbers WHERE dataset = ? AND entity_key = ?",
            (dataset, key),
        )
        if not found or found[0][0] != pending[key]:
            return False
    return True


def _insert_cells(conn: Connection, table, owner: dict, dataset: str, cells, now: str) -> int:
    values = [
        {
            "dataset": dataset,
            **owner,
            "row": row,
            "label": json.dumps(list(label), default=str),
            "cardinality": len(bitmap),
            "bitmap": bitmap.serialize(),
            "created_at": now,
        }
        for row, label, bitmap in cells
        if bitmap
    ]
    if values:
        conn.execute(table.insert(), values)
    return len(values)


def released_count(conn: Connection, dataset: str) -> int:
    """How many cells of ``dataset`` the history holds."""
    return conn.execute(
        select(func.count()).select_from(released_cells).where(released_cells.c.dataset == dataset)
    ).scalar_one()


# --------------------------------------------------------------------------- the gate


def cell_labels(table, spec) -> list[list]:
    from policies.outputs import OutputRole

    names = [c.name for c in spec.columns if c.role is OutputRole.GROUP]
    columns = [table.column(n).to_pylist() for n in names if n in table.column_names]
    grouping = (
        table.column("__grouping").to_pylist() if "__grouping" in table.column_names else None
    )
    return [
        [*(c[r] for c in columns), *([grouping[r]] if grouping else [])]
        for r in range(table.num_rows)
    ]


def difference(
    conn: Connection,
    history: History,
    dataset: str,
    raw,
    spec,
    result,
    k: int,
):
    """The differencing check of one output against the history ``conn`` sees.

    Returns the (possibly further suppressed) check result and the cells to
    record if it is released: (row, label, bitmap) of every row that still has a
    released cell. ``raw`` must carry ``__entities``; a missing one refuses the
    output (fail closed).
    """
    from jobs.sql_evidence import ENTITIES
    from policies.differencing import DiffVerdict, check_cells, released_rows, suppress_rows
    from policies.errors import PolicyRefusal

    if ENTITIES not in raw.column_names:
        raise PolicyRefusal(
            "evidence_missing",
            f"the output lacks the evidence column '{ENTITIES}', so it cannot be checked "
            "against earlier releases",
            subject=ENTITIES,
            hint="this is a platform fault; report it with the job id",
        )
    bitmaps = entity_bitmaps(raw, set(released_rows(result, spec, raw.num_rows)))
    findings = check_cells(bitmaps, history.index(conn, dataset), k)
    hit = {
        r: f for r, f in enumerate(findings) if f is not None and f.verdict is DiffVerdict.SUPPRESS
    }
    result = suppress_rows(result, raw, spec, hit, k)
    labels = cell_labels(raw, spec)
    keep = released_rows(result, spec, raw.num_rows)
    cells = [(r, labels[r], bitmaps[r]) for r in keep if bitmaps[r] is not None]
    return result, cells
