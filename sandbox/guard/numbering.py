"""Entity numbers for the job worker: the history's numbering as Parquet segments.

The differencing defence keeps, for every released cell, its contributors as a
roaring bitmap over a dense number per entity key and dataset lineage
(``entity_numbers`` in the store, :mod:`sandbox.guard.history`). Until issue 25 the
worker handed back every cell's raw entity keys as text and the platform numbered
them in Python: 264 cells of 38,000 persons each broke the worker's file-size
limit, and raw keys crossed the process boundary and were written to disk for
held outputs.

Now the numbering reaches the worker instead, as a table ``__numbers`` (``jobs.sql_evidence.NUMBERS_TABLE``) (entity key
as text, number) read from Parquet segments under ``numbers/`` in the platform home; the evidence
query joins it in the engine and each cell leaves the worker as a bitmap of
numbers (:func:`sandbox.run.worker.fold_entities`). Before a job that needs
entity evidence runs, :func:`segments_for` makes sure every entity key of the
dataset version it reads has a number:

* the store stays the one numbering (``entity_numbers``, dense, appended; HE
  answers read a version's row file as the jobs do, :mod:`sandbox.he.groups`);
* a segment is a copy of the store's rows in a range of numbers
  (``entity_number_segments``), written when a version is numbered, covering
  every number given since the last segment, whoever gave it;
* ``numbered_versions`` says which dataset versions are numbered, so a job over a
  numbered version reads the store once and starts at once;
* a segment file that is missing (a restored backup copies only snapshots) is
  written again from the store.

Numbering a version runs in one write transaction: the new keys are found by
DuckDB (the version's distinct keys less the numbered ones), given the next
numbers in key order, inserted and copied to the new segment. About a million
new keys take a few seconds, once per version, before its first job.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.sql_evidence import ROW_NUMBER, key_text_sql
from policies.classes import Classification
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.guard.history import driver_rows, insert_numbers
from sandbox.guard.tables import entity_number_segments, numbered_versions


class DatasetVersion(Protocol):
    """What the numbering reads of a :class:`sandbox.data.vault.DatasetVersion` (the vault
    numbers a version as it registers it, so this module does not import it)."""

    @property
    def version(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def classification(self) -> Classification: ...
    @property
    def county(self) -> str | None: ...  # a county's slice (sandbox.data.places)
    @property
    def source(self) -> Path | None: ...  # the whole snapshot a slice is cut from


SCHEMA = pa.schema([("entity_key", pa.string()), ("number", pa.uint32())])


@dataclass(frozen=True)
class Numbering:
    """What the engine reads to number a version's entities: the lineage's segments (key
    text, number) and the version's row file (the number of each row, in row order)."""

    segments: list[Path]
    rows: Path


def numbering_for(platform: Platform, lineage: str, version: DatasetVersion) -> Numbering:
    """The numbering of every entity of ``version``, numbering it first if needed.

    A county's slice of a version (:mod:`sandbox.data.places`) is numbered as the whole
    version is (one numbering per lineage), and gets a row file of its own, in its rows'
    order, next to the version's."""
    county = version.county
    if county and version.source is not None:
        whole = numbering_for(
            platform,
            lineage,
            replace(version, path=version.source, county=None, source=None),  # type: ignore[type-var]
        )
        name = f"v{version.version}-{version.sha256[:16]}-{county}.rows.parquet"
        target = platform.home / _folder(lineage) / name
        if not target.exists():
            _write_rows(platform, version, whole.segments, target)
        return Numbering(whole.segments, target)
    with platform.store.read() as conn:
        rows = _rows_path(conn, lineage, version.version)
        paths = _segment_paths(platform, conn, lineage)
    if rows is None or not (platform.home / rows).exists() or not all(p.exists() for p in paths):
        with platform.store.transaction() as conn:
            if _rows_path(conn, lineage, version.version) is None:
                _number(platform, conn, lineage, version)
            _rewrite_missing(platform, conn, lineage)
            paths = _segment_paths(platform, conn, lineage) or [_empty_segment(platform)]
            rows = _rows_path(conn, lineage, version.version)
            if rows is None:  # numbered just now, in this transaction
                raise RuntimeError(f"dataset '{lineage}' version {version.version} is not numbered")
            if not (platform.home / rows).exists():
                _write_rows(platform, version, paths, platform.home / rows)
    return Numbering(paths or [_empty_segment(platform)], platform.home / rows)


def _empty_segment(platform: Platform) -> Path:
    """A numbering with no entity yet (an empty dataset): one file without rows."""
    target = platform.home / "numbers" / "empty.parquet"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = target.with_suffix(f".{os.getpid()}.part")
        pq.write_table(SCHEMA.empty_table(), part)
        os.replace(part, target)
    return target


def _rows_path(conn: Connection, lineage: str, version: int) -> Path | None:
    found = conn.execute(
        select(numbered_versions.c.rows_path).where(
            numbered_versions.c.dataset == lineage, numbered_versions.c.version == version
        )
    ).first()
    return None if found is None else Path(found.rows_path)


def _write_rows(platform: Platform, version: DatasetVersion, segments: list[Path], target: Path):
    """The number of every row of ``version``, in its row order (a positional join away)."""
    key = key_text_sql("__d." + _ident(version.classification.entity_key))
    files = ", ".join(_text(str(p)) for p in segments)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = target.with_suffix(f".{os.getpid()}.part")
    con = duckdb.connect(":memory:", config={"threads": platform.settings.job.threads})
    try:
        con.execute(
            f"COPY (SELECT __nb.number AS {ROW_NUMBER} "
            f"FROM read_parquet({_text(str(version.path))}, file_row_number = true) AS __d "
            f"LEFT JOIN read_parquet([{files}]) AS __nb ON {key} = __nb.entity_key "
            f"ORDER BY __d.file_row_number) TO {_text(str(part))} "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
    finally:
        con.close()
    os.chmod(part, 0o400)
    os.replace(part, target)


def _segment_rows(conn: Connection, lineage: str) -> list:
    return list(
        conn.execute(
            select(entity_number_segments)
            .where(entity_number_segments.c.dataset == lineage)
            .order_by(entity_number_segments.c.first)
        )
    )


def _segment_paths(platform: Platform, conn: Connection, lineage: str) -> list[Path]:
    return [platform.home / row.path for row in _segment_rows(conn, lineage)]


def _folder(lineage: str) -> Path:
    digest = hashlib.sha256(lineage.encode()).hexdigest()[:16]
    return Path("numbers") / digest


def _store_rows(conn: Connection, lineage: str, first: int, last: int | None = None) -> pa.Table:
    """The store's numbers of ``lineage`` from ``first`` (to ``last``), in number order."""
    sql = "SELECT entity_key, number FROM entity_numbers WHERE dataset = ? AND number >= ?"
    args: tuple = (lineage, first)
    if last is not None:
        sql += " AND number <= ?"
        args += (last,)
    rows = driver_rows(conn, sql + " ORDER BY number", args)
    keys, numbers = zip(*rows, strict=True) if rows else ((), ())
    return pa.table({"entity_key": list(keys), "number": list(numbers)}, schema=SCHEMA)


def _write_segment(platform: Platform, lineage: str, rows: pa.Table, first: int) -> Path:
    last = first + rows.num_rows - 1
    relative = _folder(lineage) / f"{first}-{last}.keys.parquet"
    target = platform.home / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = target.with_suffix(f".{os.getpid()}.part")
    pq.write_table(rows, part, compression="zstd")
    os.chmod(part, 0o400)
    os.replace(part, target)
    return relative


def _number(platform: Platform, conn: Connection, lineage: str, version: DatasetVersion) -> None:
    """Number the new entity keys of ``version`` and copy every number given since the
    last segment to a new segment, in ``conn``'s write transaction."""
    segments = _segment_rows(conn, lineage)
    covered = segments[-1].last if segments else -1
    since = _store_rows(conn, lineage, covered + 1)  # numbered elsewhere (HE) since
    key = version.classification.entity_key
    con = duckdb.connect(":memory:", config={"threads": platform.settings.job.threads})
    try:
        con.register("__since", since)
        known = ["SELECT entity_key FROM __since"]
        if segments:
            files = ", ".join(_text(str(platform.home / s.path)) for s in segments)
            known.append(f"SELECT entity_key FROM read_parquet([{files}])")
        fresh = con.sql(
            f"SELECT DISTINCT {key_text_sql(_ident(key))} AS entity_key "
            f"FROM read_parquet({_text(str(version.path))}) "
            f"EXCEPT ({' UNION ALL '.join(known)}) ORDER BY entity_key"
        ).to_arrow_table()
    finally:
        con.close()
    top = covered if not since.num_rows else since.column("number")[-1].as_py()
    keys = fresh.column("entity_key").to_pylist()
    if keys:
        insert_numbers(conn, ((lineage, text, top + 1 + i) for i, text in enumerate(keys)))
    numbered = pa.table(
        {
            "entity_key": fresh.column("entity_key"),
            "number": pa.array(range(top + 1, top + 1 + len(keys)), pa.uint32()),
        },
        schema=SCHEMA,
    )
    added = pa.concat_tables([since, numbered])  # every number above the last segment
    if added.num_rows:
        relative = _write_segment(platform, lineage, added, covered + 1)
        conn.execute(
            entity_number_segments.insert().values(
                dataset=lineage,
                first=covered + 1,
                last=covered + added.num_rows,
                path=str(relative),
                created_at=now_utc(),
            )
        )
    relative = _folder(lineage) / f"v{version.version}-{version.sha256[:16]}.rows.parquet"
    conn.execute(
        numbered_versions.insert().values(
            dataset=lineage,
            version=version.version,
            keys=len(keys),
            rows_path=str(relative),
            created_at=now_utc(),
        )
    )


def _rewrite_missing(platform: Platform, conn: Connection, lineage: str) -> None:
    """Write again, from the store, any segment whose file is gone."""
    for row in _segment_rows(conn, lineage):
        if not (platform.home / row.path).exists():
            _write_segment(
                platform, lineage, _store_rows(conn, lineage, row.first, row.last), row.first
            )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
