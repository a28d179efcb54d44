"""The index of a verification product: keyed hash of the normalised key values -> code.

Built inside the platform when the authority publishes a product and again when
one of its datasets gets a new version: the admitted rule's :class:`IndexPlan` runs
once over the whole snapshot in an in-memory DuckDB (the snapshots are copied in,
then external access is switched off and the configuration locked), every row is
hashed with the platform's verification secret, and the result is written to a
SQLite file ``verify/<product>-<digest>.sqlite`` (a ``WITHOUT ROWID`` table keyed by
the 16-byte digest). The file never changes after it is moved into place, so
readers open it ``immutable``: a call is one B-tree lookup, never a scan.

Known shortcut: the build runs in the platform's process, not in the isolated job
worker (sandbox/run/worker.py); the rule is admitted by the same checker as jobs and
DuckDB's external access is off, but a memory limit is only DuckDB's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from policies.errors import JobFailed
from policies.verification import NORMALISE_FN, AdmittedRule, index_plan, lookup_patterns
from sandbox.core.platform import Platform
from sandbox.data.vault import DatasetVersion
from sandbox.verification.keys import NO_MATCH, index_key, normalise_key

FOLDER = "verify"


@dataclass(frozen=True)
class BuiltIndex:
    path: str  # relative to the home
    versions: Mapping[str, int]
    rows: int
    default_code: str
    seconds: float


def build(
    platform: Platform,
    rule: AdmittedRule,
    versions: Mapping[str, DatasetVersion],
    secret: bytes,
) -> BuiltIndex:
    """Run the rule over every subject once and write the index file."""
    started = time.perf_counter()
    definition = rule.definition
    plan = index_plan(rule, NO_MATCH)
    codes = {code: i for i, code in enumerate(definition.codes)}
    identity = json.dumps(
        {
            "rule": definition.to_dict(),
            "versions": {t: v.sha256 for t, v in sorted(versions.items())},
            "secret": hashlib.sha256(secret).hexdigest(),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    relative = Path(FOLDER) / f"{definition.name}-{digest}.sqlite"
    target = platform.home / relative
    work = platform.work_dir()
    tmp = work / "index.sqlite"
    db = duckdb.connect()
    try:
        default = _load(db, plan, versions)
        rows = _write_index(db, plan, tmp, secret, definition.name, codes, default, versions)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except duckdb.Error as exc:
        # DuckDB's message may quote data; only its kind is shown.
        raise JobFailed(
            f"the index of '{definition.name}' could not be built ({type(exc).__name__})"
        ) from exc
    finally:
        db.close()
        tmp.unlink(missing_ok=True)
        work.rmdir()
    if default not in codes:
        raise JobFailed(f"the rule of '{definition.name}' yields no code for an unknown subject")
    return BuiltIndex(
        path=str(relative),
        versions={t: v.version for t, v in versions.items()},
        rows=rows,
        default_code=default,
        seconds=time.perf_counter() - started,
    )


def _load(db: duckdb.DuckDBPyConnection, plan, versions: Mapping[str, DatasetVersion]) -> str:
    """The datasets' snapshots as tables of a locked, offline DuckDB; returns the code
    of a subject the data does not know."""
    db.create_function(NORMALISE_FN, normalise_key, ["VARCHAR"], "VARCHAR")
    for table, version in versions.items():
        db.execute(f'CREATE TABLE "{table}" AS SELECT * FROM read_parquet(?)', [str(version.path)])
    db.execute("SET enable_external_access = false")
    db.execute("SET lock_configuration = true")
    row = db.execute(plan.default).fetchone()
    assert row is not None  # the default query selects one row over no input rows
    return row[0]


def _write_index(
    db: duckdb.DuckDBPyConnection,
    plan,
    tmp: Path,
    secret: bytes,
    product: str,
    codes: Mapping[str, int],
    default: str,
    versions: Mapping[str, DatasetVersion],
) -> int:
    """The keyed hash of every subject pattern with its code, in a SQLite file; returns
    the rows the rule produced."""
    out = sqlite3.connect(tmp)
    out.execute("PRAGMA journal_mode=OFF")
    out.execute("CREATE TABLE idx (h BLOB PRIMARY KEY, code INTEGER NOT NULL) WITHOUT ROWID")
    out.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    cursor = db.execute(plan.patterns)
    rows = 0
    while chunk := cursor.fetchmany(50_000):
        out.executemany(
            "INSERT OR REPLACE INTO idx VALUES (?, ?)",
            (
                (index_key(secret, product, row[:-1]), codes[row[-1]])
                for row in chunk
                if row[-1] is not None
            ),
        )
        rows += len(chunk)
    out.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [
            ("default", default),
            ("versions", json.dumps({t: v.version for t, v in versions.items()})),
            ("rows", str(rows)),
        ],
    )
    out.commit()
    out.close()
    return rows


class IndexReader:
    """Read-only lookups in one index file; one SQLite connection per thread."""

    def __init__(self, path: Path, product: str, codes: Sequence[str], n_checks: int):
        self.path = Path(path)
        self.product = product
        self.codes = tuple(codes)
        self.patterns = lookup_patterns(n_checks)
        self._local = threading.local()
        meta = dict(self._conn().execute("SELECT k, v FROM meta").fetchall())
        self.default = meta["default"]
        self.rows = int(meta["rows"])

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{self.path}?mode=ro&immutable=1"
            conn = self._local.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return conn

    def lookup(self, secret: bytes, subject: Sequence[str], checks: Sequence[str]) -> str:
        """The code for normalised subject values and check values."""
        return self.answer(secret, subject, checks)[0]

    def answer(
        self, secret: bytes, subject: Sequence[str], checks: Sequence[str]
    ) -> tuple[str, bool]:
        """The code, and whether the subject's rows hold every value supplied (False: an
        unknown subject or a check value none of its rows holds, a miss whatever the
        code's name; the caller never sees this flag)."""
        conn = self._conn()
        for i, keep in enumerate(self.patterns):
            values = list(subject) + [
                v if k else NO_MATCH for v, k in zip(checks, keep, strict=True)
            ]
            row = conn.execute(
                "SELECT code FROM idx WHERE h = ?", (index_key(secret, self.product, values),)
            ).fetchone()
            if row is not None:
                return self.codes[row[0]], i == 0
        return self.default, False
