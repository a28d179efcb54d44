"""A PostgreSQL table or query, streamed by the server's COPY into Arrow batches.

``postgresql://user:pass@host:port/db?table=schema.name`` or ``...?query=SELECT ...``
(URL-encoded). Any other option (``host=/socket/dir``, ``sslmode``, ...) goes to
libpq unchanged. The password never leaves this module: ``uri`` and every error
message show it as ``***``.

How the rows travel: ``COPY (SELECT ...) TO STDOUT WITH (FORMAT csv)``, the server's
own streaming output, is written by psycopg2 into a pipe on a thread of its own and
parsed on the other end by pyarrow's streaming CSV reader with the column types fixed
from the probe below; nothing is held but the pipe's buffer and one 1 MiB block. A
NULL is an unquoted empty field and an empty text a quoted one, so the two stay apart.
A reader that stops early closes the pipe, which ends the server's COPY. The session
is read-only, in UTC.

Types are mapped from the column types the server reports (a ``LIMIT 0`` probe of
the same query, so the schema is known before the first batch):

==========================  =======================================
PostgreSQL                  Arrow
==========================  =======================================
boolean                     bool
smallint, integer, bigint   int16, int32, int64
real, double precision      float32, float64
numeric(p, s), p <= 38      decimal128(p, s)
numeric (no precision)      float64 (cast by the server: a known loss of exactness)
text, varchar, char, name   string
date                        date32
timestamp, timestamptz      timestamp[us], timestamp[us, UTC]
time                        time64[us]
bytea                       binary
anything else               string (cast to text by the server: json, uuid, arrays)
==========================  =======================================

Timestamps with a time zone travel as UTC wall time and ``bytea`` as hex (converted
back per value: a known cost for tables of many binary values).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode

import pyarrow as pa
import pyarrow.csv as pacsv

from policies.errors import SourceError
from policies.suggest import did_you_mean

from .base import DEFAULT_BATCH_ROWS, ConnectError, DatabaseSource, quote_ident, split_scheme
from .base import without_secret as _without

OWN_OPTIONS = ("table", "query")
CONNECT_TIMEOUT_S = 10
CSV_BLOCK = 1 << 20  # bytes of COPY's output parsed at a time

# type OID -> Arrow type; a missing OID is cast to text.
_DIRECT = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    19: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1083: pa.time64("us"),
    17: pa.binary(),
}
_NUMERIC = 1700


def _psycopg2():
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - psycopg2-binary is a dependency
        raise SourceError("reading PostgreSQL needs the package psycopg2-binary") from exc
    return psycopg2


def _column_plan(name: str, type_code: int, precision, scale) -> tuple[str, pa.DataType]:
    """The select expression for one column and the Arrow type of its values."""
    ref = "q." + quote_ident(name)
    if type_code == _NUMERIC:
        if precision and 0 < precision <= 38 and scale is not None and 0 <= scale <= precision:
            return ref, pa.decimal128(precision, scale)
        return f"{ref}::float8", pa.float64()
    if type_code in _DIRECT:
        return ref, _DIRECT[type_code]
    return f"{ref}::text", pa.string()


def _as_csv(expr: str, kind: pa.DataType) -> str:
    """The column as COPY's CSV writes it so that pyarrow's CSV reader takes it back exactly:
    a time zone's timestamp as UTC wall time (the session is in UTC), bytes as hex."""
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return f"({expr})::timestamp"
    if pa.types.is_binary(kind):
        return f"encode({expr}, 'hex')"
    return expr


def _csv_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit)
    return pa.string() if pa.types.is_binary(kind) else kind


def _read_csv(pipe, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The batches of COPY's CSV (no header; NULL unquoted and empty, '' quoted)."""
    try:
        reader = pacsv.open_csv(
            pipe,
            read_options=pacsv.ReadOptions(column_names=schema.names, block_size=CSV_BLOCK),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: _csv_type(f.type) for f in schema},
                null_values=[""],  # only COPY's NULL: "NA", "NULL", "N/A" are text here
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return  # no rows
        raise
    yield from reader


def _finish(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch in the announced schema: UTC timestamps labelled so, hex made bytes."""
    arrays = []
    for column, field in zip(batch.columns, schema, strict=True):
        if pa.types.is_binary(field.type):
            column = pa.array(
                [None if v is None else bytes.fromhex(v) for v in column.to_pylist()], pa.binary()
            )
        elif column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class PostgresSource(DatabaseSource):
    """Rows of one table or query of a PostgreSQL database."""

    def __init__(self, uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        super().__init__(uri, batch_rows=batch_rows)
        dsn, options, self._password = self._split(uri)
        self._one_of(options, "schema.name")
        psycopg2 = _psycopg2()
        try:
            self._conn = psycopg2.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg2.Error as exc:
            # "from None": the driver's own text may quote the connection string.
            raise ConnectError(f"cannot connect to {self.uri}: {self._reason(exc)}") from None
        self._prepare(options, psycopg2.Error)

    def _session(self) -> None:
        self._conn.set_session(readonly=True)
        with self._conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")

    def _split(self, uri: str) -> tuple[str, dict[str, str], str | None]:
        """The libpq URI without our own options, our options, and the password (to scrub)."""
        scheme, rest = split_scheme(uri)
        base, _, query = rest.partition("?")
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in OWN_OPTIONS:
                ours[name] = value
            else:
                theirs.append((name, value))
        authority = base.partition("/")[0]
        userinfo = authority.rpartition("@")[0] if "@" in authority else ""
        password = userinfo.partition(":")[2] or None
        password = password or next((v for n, v in theirs if n == "password"), None)
        dsn = f"postgresql://{base}" + (f"?{urlencode(theirs)}" if theirs else "")
        return dsn, ours, password

    def _reason(self, exc: Exception) -> str:
        """libpq's or the server's reason, without the password and without data values."""
        pgcode = getattr(exc, "pgcode", None)
        if pgcode and pgcode.startswith("22"):
            # Class 22, data exception: its message may quote the offending value.
            return f"a data error (SQLSTATE {pgcode})"
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        if "failed:" in reason:
            reason = reason.rpartition("failed:")[2].strip()
        reason = reason.removeprefix("FATAL:").removeprefix("ERROR:").strip()
        return _without(reason, self._password)

    def _table_sql(self, name: str) -> str:
        with self._conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)::text", (name,))
            if cur.fetchone()[0] is None:
                cur.execute(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
                known = [row[0] for row in cur.fetchall()]
                hint = did_you_mean(name, known) if known else "the database has no tables"
                raise SourceError(f"{self.uri}: table '{name}' does not exist; {hint}")
        parts = name.split(".")
        return "SELECT * FROM " + ".".join(quote_ident(p) for p in parts)

    def _probe(self, inner: str) -> tuple[str, pa.Schema]:
        """Ask the server for the result's columns without reading a row."""
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({inner}) AS q LIMIT 0")
            columns = cur.description
        names = [c.name for c in columns]
        self._unique(names)
        plans = [_column_plan(c.name, c.type_code, c.precision, c.scale) for c in columns]
        select = "SELECT " + ", ".join(_as_csv(e, t) for e, t in plans) + f" FROM ({inner}) AS q"
        schema = pa.schema([pa.field(n, t) for n, (_, t) in zip(names, plans, strict=True)])
        return select, schema

    def _batches(self) -> Iterator[pa.RecordBatch]:
        psycopg2 = _psycopg2()
        read_end, write_end = os.pipe()
        failed: list[BaseException] = []

        def produce() -> None:  # the server's CSV into the pipe, on a thread of its own
            try:
                with os.fdopen(write_end, "wb") as sink, self._conn.cursor() as cur:
                    cur.copy_expert(f"COPY ({self._select}) TO STDOUT WITH (FORMAT csv)", sink)
            except BaseException as exc:  # handed to the reader, raised there
                failed.append(exc)

        producer = threading.Thread(target=produce, name="pg-copy", daemon=True)
        producer.start()
        pipe = os.fdopen(read_end, "rb")
        try:
            for batch in _read_csv(pipe, self._schema):
                yield _finish(batch, self._schema)
            pipe.close()
            producer.join()
            if failed:
                raise failed[0]
        except psycopg2.Error as exc:
            raise SourceError(
                f"{self.uri}: reading failed after {self.progress.rows_read} rows: {self._reason(exc)}"
            ) from None
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError) as exc:
            # pyarrow's message may quote the value: name only where reading stopped.
            raise SourceError(
                f"{self.uri}: a value after row {self.progress.rows_read} does not fit its "
                f"column type ({type(exc).__name__})"
            ) from None
        finally:
            pipe.close()  # a reader that stops early ends the server's COPY (broken pipe)
            producer.join()
            self.close()
