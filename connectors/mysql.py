"""A MySQL-family table or query (MySQL, MariaDB and compatible servers), read through a
server-side cursor into Arrow batches.

``mysql://user:pass@host:port/db?table=name`` (or ``db.name``) or ``...?query=SELECT ...``
(URL-encoded); ``mariadb://`` is the same. ``?unix_socket=/path`` connects through a
local socket instead (the host's command line only: the API refuses it). The password
never leaves this module: ``uri`` and every error message show it as ``***``.

Why an unbuffered cursor (PyMySQL's ``SSCursor``): a plain cursor reads the whole result
into the client's memory; this one reads rows from the connection as they are fetched,
``batch_rows`` at a time. The session is read-only (``SET SESSION TRANSACTION READ
ONLY``), in UTC, in ``utf8mb4``.

Types are mapped from the column types the server reports (a ``LIMIT 0`` probe of the
same query, so the schema is known before the first batch):

==================================  ======================================
MySQL                               Arrow
==================================  ======================================
TINYINT, SMALLINT, MEDIUMINT, INT   int64 (uint64 for BIGINT UNSIGNED)
BIGINT
FLOAT, DOUBLE                       float32, float64
DECIMAL(p, s), p <= 38              decimal128(p, s) (wider: float64)
CHAR, VARCHAR, TEXT, ENUM, SET,     string
JSON
BINARY, VARBINARY, BLOB             binary
DATE                                date32
DATETIME                            timestamp[us]
TIMESTAMP                           timestamp[us, UTC]
TIME                                duration[us] (it may be negative or over 24 h)
YEAR                                int64
BIT                                 int64
anything else                       string (cast to text by the server)
==================================  ======================================

A zero date (``0000-00-00``) or another value that does not fit its type is refused
naming the column and the row count read, never the value. Known shortcut: rows travel
as Python tuples before becoming Arrow columns, as in the PostgreSQL connector.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote

import pyarrow as pa

from policies.errors import SourceError
from policies.suggest import did_you_mean

from .base import DEFAULT_BATCH_ROWS, ConnectError, DatabaseSource, split_scheme, without_secret

OWN_OPTIONS = ("table", "query", "unix_socket")
DEFAULT_PORT = 3306
CONNECT_TIMEOUT_S = 10
# Server errors whose message names things (users, databases, tables, columns, the
# query's own text), never a data value; any other error shows only its number.
NAMING_ERRORS = {1044, 1045, 1046, 1049, 1054, 1064, 1142, 1143, 1146, 1227, 1792, 1698}
_CONNECT_ERRORS = {1044, 1045, 1049, 1698, 2002, 2003, 2005, 2006, 2013, 2059}

# FIELD_TYPE -> Arrow type (pymysql.constants.FIELD_TYPE)
_INTEGERS = {1, 2, 3, 8, 9, 13}  # TINY, SHORT, LONG, LONGLONG, INT24, YEAR
_DIRECT = {
    4: pa.float32(),  # FLOAT
    5: pa.float64(),  # DOUBLE
    10: pa.date32(),  # DATE
    14: pa.date32(),  # NEWDATE
    12: pa.timestamp("us"),  # DATETIME
    7: pa.timestamp("us", tz="UTC"),  # TIMESTAMP (the session is in UTC)
    11: pa.duration("us"),  # TIME
    16: pa.int64(),  # BIT
    245: pa.string(),  # JSON
    247: pa.string(),  # ENUM
    248: pa.string(),  # SET
}
_DECIMALS = {0, 246}
_BYTES_OR_TEXT = {15, 249, 250, 251, 252, 253, 254}  # VARCHAR, BLOBs, VAR_STRING, STRING
_BINARY_CHARSET = 63
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]*)(?::([0-9]+))?")
_UNSIGNED = 32


def _pymysql():
    try:
        import pymysql
    except ImportError as exc:  # pragma: no cover - PyMySQL is a dependency
        raise SourceError("reading MySQL needs the package PyMySQL") from exc
    return pymysql


def quote_mysql(name: str) -> str:
    """A quoted MySQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _arrow_type(field: Any) -> tuple[pa.DataType, bool]:
    """The Arrow type of one result column, and whether the server must cast it to text."""
    code = field.type_code
    if code in _INTEGERS:
        return (pa.uint64() if code == 8 and field.flags & _UNSIGNED else pa.int64()), False
    if code in _DECIMALS:
        # the reported length counts the sign (unless unsigned) and the decimal point
        scale = field.scale
        precision = field.length - (1 if scale else 0) - (0 if field.flags & _UNSIGNED else 1)
        if 0 < precision <= 38 and 0 <= scale <= precision:
            return pa.decimal128(precision, scale), False
        return pa.float64(), False
    if code in _DIRECT:
        return _DIRECT[code], False
    if code in _BYTES_OR_TEXT:
        return (pa.binary() if field.charsetnr == _BINARY_CHARSET else pa.string()), False
    return pa.string(), True


class MySQLSource(DatabaseSource):
    """Rows of one table or query of a MySQL-family database."""

    def __init__(self, uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        super().__init__(uri, batch_rows=batch_rows)
        params, options = self._split(uri)
        self._password = params.get("password")
        self._one_of(options, "name")
        pymysql = _pymysql()
        try:
            self._conn = pymysql.connect(
                **params,
                charset="utf8mb4",
                connect_timeout=CONNECT_TIMEOUT_S,
                init_command="SET SESSION TRANSACTION READ ONLY",
            )
        except pymysql.Error as exc:
            raise ConnectError(f"cannot connect to {self.uri}: {self._reason(exc)}") from None
        self._prepare(options, pymysql.Error)

    def _session(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")

    def _split(self, uri: str) -> tuple[dict[str, Any], dict[str, str]]:
        """PyMySQL's connection arguments and our options, from the URI."""
        _scheme, rest = split_scheme(uri)
        base, _, query = rest.partition("?")
        options: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name not in OWN_OPTIONS:
                raise SourceError(
                    f"{self.uri}: unknown option '{name}'; " + did_you_mean(name, OWN_OPTIONS)
                )
            options[name] = value
        authority, _, database = base.partition("/")
        userinfo, _, hostport = authority.rpartition("@")
        user, _, password = userinfo.partition(":")
        match = _HOST_PORT.fullmatch(hostport)
        if match is None:
            raise SourceError(f"{self.uri}: the host and port cannot be read")
        params: dict[str, Any] = {"user": unquote(user) or None, "database": unquote(database)}
        if password:
            params["password"] = unquote(password)
        if "unix_socket" in options:
            params["unix_socket"] = options.pop("unix_socket")
        else:
            params["host"] = match.group(1).strip("[]") or "localhost"
            params["port"] = int(match.group(2)) if match.group(2) else DEFAULT_PORT
        if not params["database"]:
            raise SourceError(f"{self.uri}: name the database, mysql://user:pass@host/DATABASE")
        return params, options

    def _reason(self, exc: Exception) -> str:
        """The server's or the driver's reason, without the password and without values."""
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        code = args[0] if args and isinstance(args[0], int) else None
        text = str(args[1]) if len(args) > 1 else type(exc).__name__
        if code is not None and code not in NAMING_ERRORS and code not in _CONNECT_ERRORS:
            return f"MySQL error {code}"
        if code in (2003, 2002):  # the driver appends the socket's own error text
            text = text.split(" (")[0]
        return without_secret(text, self._password)

    def _table_sql(self, name: str) -> str:
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('mysql', 'information_schema', "
                "'performance_schema', 'sys')"
            )
            rows = cur.fetchall()
            cur.execute("SELECT DATABASE()")
            current = cur.fetchone()[0]
        known = {f"{schema}.{table}": (schema, table) for schema, table in rows}
        known.update({table: (schema, table) for schema, table in rows if schema == current})
        found = known.get(name)
        if found is None:
            hint = did_you_mean(name, known) if known else "the database has no tables"
            raise SourceError(f"{self.uri}: table '{name}' does not exist; {hint}")
        return f"SELECT * FROM {quote_mysql(found[0])}.{quote_mysql(found[1])}"

    def _probe(self, inner: str) -> tuple[str, pa.Schema]:
        """Ask the server for the result's columns without reading a row."""
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({inner}) AS q LIMIT 0")
            fields = cur._result.fields  # PyMySQL's column descriptions: type, flags, charset
        self._unique(f.name for f in fields)
        arrow, exprs = [], []
        for field in fields:
            kind, as_text = _arrow_type(field)
            ref = "q." + quote_mysql(field.name)
            exprs.append(f"CAST({ref} AS CHAR) AS {quote_mysql(field.name)}" if as_text else ref)
            arrow.append(pa.field(field.name, kind))
        select = "SELECT " + ", ".join(exprs) + f" FROM ({inner}) AS q"
        return select, pa.schema(arrow)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        pymysql = _pymysql()
        try:
            self._cursor = self._conn.cursor(pymysql.cursors.SSCursor)
            self._cursor.execute(self._select)
            while True:
                rows = self._cursor.fetchmany(self.batch_rows)
                if not rows:
                    break
                yield self._batch(rows)
        except pymysql.Error as exc:
            raise SourceError(
                f"{self.uri}: reading failed after {self.progress.rows_read} rows: {self._reason(exc)}"
            ) from None
        finally:
            self.close()

    def _batch(self, rows: list[tuple]) -> pa.RecordBatch:
        columns = list(zip(*rows, strict=True))
        arrays = []
        for values, field in zip(columns, self._schema, strict=True):
            try:
                arrays.append(pa.array(_convert(values, field.type), type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
                raise SourceError(
                    f"{self.uri}: column '{field.name}' has a value after row "
                    f"{self.progress.rows_read} that is not a valid {field.type} (a zero date "
                    "such as 0000-00-00?); select it as text or NULL in a ?query="
                ) from None
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)


def _convert(values: tuple, kind: pa.DataType) -> list | tuple:
    """Values PyMySQL hands over as another Python type than Arrow takes for ``kind``."""
    if pa.types.is_integer(kind) and any(isinstance(v, bytes) for v in values):  # BIT
        return [None if v is None else int.from_bytes(v, "big") for v in values]
    if pa.types.is_string(kind) and any(isinstance(v, bytes | set) for v in values):
        return [_text(v) for v in values]
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        for v in values:
            if v is not None and not isinstance(v, dt.date):
                raise ValueError("not a date")
    if pa.types.is_floating(kind) and any(isinstance(v, decimal.Decimal) for v in values):
        return [None if v is None else float(v) for v in values]
    return values


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, set):
        return ",".join(sorted(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)
