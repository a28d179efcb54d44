"""The one interface every connector implements: a stream of Arrow record batches.

A provider registers raw data from a source URI (a CSV file, a PostgreSQL table,
...). The vault turns whatever comes out into a Parquet snapshot, so a connector
only has to answer two questions: what is the schema, and what are the rows, in
batches of at most ``batch_rows`` rows. It never holds the whole source in memory.

The contract of :class:`Source`:

* ``uri`` is safe to show and to write to the ledger: any password is replaced
  by ``***`` (:func:`redact_uri`).
* ``schema`` is known as soon as the source is open, before the first batch, and
  every batch has exactly that schema.
* ``batches()`` may be called once; no batch has more than ``batch_rows`` rows.
* Every failure is a :class:`~policies.errors.SourceError` (library errors are
  translated here, at the boundary), and its message never shows a data value:
  it names the line, the column, the table, never the content.
* ``progress`` says how far the reading got, for a progress bar.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import pyarrow as pa

from policies.errors import SourceError
from policies.suggest import did_you_mean

DEFAULT_BATCH_ROWS = 131072

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


@dataclass
class Progress:
    """How far a source has been read.

    ``bytes_read`` is exact for files read sequentially and an estimate for
    Parquet (row groups are decoded, not bytes streamed); ``total_bytes`` is
    ``None`` when the source cannot know it (a database query).
    """

    bytes_read: int = 0
    total_bytes: int | None = None
    rows_read: int = 0

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, self.bytes_read / self.total_bytes)


class Source(abc.ABC):
    """A readable data source: a schema and a one-shot stream of record batches."""

    uri: str
    progress: Progress

    def __init__(self, uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        if batch_rows < 1:
            raise SourceError(f"batch_rows must be at least 1, got {batch_rows}")
        self.uri = redact_uri(uri)
        self.batch_rows = batch_rows
        self.progress = Progress()
        self._consumed = False

    @property
    @abc.abstractmethod
    def schema(self) -> pa.Schema:
        """The Arrow schema of every batch."""

    @abc.abstractmethod
    def _batches(self) -> Iterator[pa.RecordBatch]:
        """The connector's own stream; :meth:`batches` bounds and counts it."""

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Yield the rows in batches of at most ``batch_rows`` rows. Call it once."""
        if self._consumed:
            raise SourceError(f"the batches of {self.uri} were already read; open the source again")
        self._consumed = True
        for batch in rebatch(self._batches(), self.batch_rows):
            self.progress.rows_read += batch.num_rows
            yield batch

    def close(self) -> None:  # noqa: B027 - optional hook, most sources own nothing to close
        """Release files, connections and cursors. Safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


class DatabaseSource(Source):
    """What the database servers' connectors share (PostgreSQL, MySQL): exactly one of
    ``?table=`` or ``?query=``, a probe of the result's columns at open, and every failure
    of the open closing the connection and raised as a :class:`SourceError` whose reason
    shows neither the password nor a value (the connector's :meth:`_reason`)."""

    _conn: Any = None  # the driver's connection and cursor (the drivers ship no types)
    _cursor: Any = None
    _select: str
    _schema: pa.Schema

    def _one_of(self, options: dict[str, str], table: str) -> None:
        if ("table" in options) == ("query" in options):
            raise SourceError(f"{self.uri}: give exactly one of ?table={table} or ?query=SELECT...")

    def _prepare(self, options: dict[str, str], driver_error: type[Exception]) -> None:
        """Set the session up, find the table or take the query, and probe its columns."""
        try:
            self._session()
            inner = self._table_sql(options["table"]) if "table" in options else options["query"]
            self._select, self._schema = self._probe(inner)
        except SourceError:
            self.close()
            raise
        except driver_error as exc:
            self.close()
            raise SourceError(f"{self.uri}: the query cannot run: {self._reason(exc)}") from None

    def _unique(self, names: Iterable[str]) -> None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise SourceError(
                    f"{self.uri}: the result has two columns named '{name}'; alias one"
                )
            seen.add(name)

    @abc.abstractmethod
    def _session(self) -> None:
        """Make the session read-only and in UTC."""

    @abc.abstractmethod
    def _reason(self, exc: Exception) -> str:
        """The driver's or the server's reason, without the password and without values."""

    @abc.abstractmethod
    def _table_sql(self, name: str) -> str:
        """``SELECT * FROM`` the table, or a SourceError naming the tables there are."""

    @abc.abstractmethod
    def _probe(self, inner: str) -> tuple[str, pa.Schema]:
        """The select that reads the rows, and their schema, from a ``LIMIT 0`` probe."""

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def close(self) -> None:
        for name in ("_cursor", "_conn"):
            held = getattr(self, name)
            if held is not None:
                try:
                    held.close()
                except Exception:  # noqa: BLE001 - a broken or dropped one is closed anyway
                    pass
                setattr(self, name, None)


class ConnectError(SourceError):
    """A database could not be reached or refused the session (before any query ran).

    Its message says why (the driver's reason), which the host's own command line shows;
    the API answers every one of these with one message (``sandbox.api.sources``),
    since the reason would tell a closed port from an open one.
    """


def without_secret(text: str, secret: str | None) -> str:
    """``text`` with every whole occurrence of ``secret`` as ``***``.

    Only where the secret stands alone (not inside a longer word or number), so a
    short password such as ``on`` does not turn "connection" into "c***necti***".
    """
    if not secret:
        return text
    pattern = r"(?<![A-Za-z0-9_])" + re.escape(secret) + r"(?![A-Za-z0-9_])"
    return re.sub(pattern, "***", text)


def quote_ident(name: str) -> str:
    """A quoted SQL identifier (the same rule in DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def rebatch(batches: Iterable[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream into batches of exactly ``batch_rows`` rows (the last may be shorter).

    Readers cut where their blocks end (CSV by bytes, Parquet by row group); the
    vault and the tests want a bound on rows. At most ``batch_rows`` rows plus one
    incoming batch are held at any time.
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= batch_rows:
            table = pa.Table.from_batches(pending)
            head = table.slice(0, batch_rows).combine_chunks()
            yield from head.to_batches()
            rest = table.slice(batch_rows)
            pending = rest.to_batches() if rest.num_rows else []
            held = rest.num_rows
    if held:
        table = pa.Table.from_batches(pending).combine_chunks()
        yield from table.to_batches()


def check_uri_text(uri: str) -> None:
    """Refuse a URI holding a NUL byte or another control character (raw, or ``%00``).

    No file name, host or query of a source needs one, and a NUL would be cut off by
    the operating system's calls, so the name checked would not be the name read.
    """
    for i, char in enumerate(uri):
        if ord(char) < 32 or ord(char) == 127:
            raise SourceError(
                f"the source URI holds a control character (code {ord(char)}) at position "
                f"{i + 1}; a source URI may not contain NUL bytes, line breaks or other "
                "control characters"
            )
    if "%00" in uri:
        raise SourceError(
            "the source URI holds an encoded NUL byte (%00); a source URI may not contain NUL bytes"
        )


def split_scheme(uri: str) -> tuple[str, str]:
    """``("csv", "data/x.csv")`` for ``csv://data/x.csv``; ``("", uri)`` for a plain path.

    Only ``name://`` counts as a scheme, so a file called ``a:b.csv`` is still a path.
    """
    match = _SCHEME_RE.match(uri)
    if not match:
        return "", uri
    return match.group(1).lower(), uri[match.end() :]


def split_options(
    rest: str, known: Iterable[str], uri_for_errors: str
) -> tuple[str, dict[str, str]]:
    """Split ``path?a=1&b=2`` into the path and its options, refusing unknown option names."""
    known = list(known)
    path, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            raise SourceError(
                f"{redact_uri(uri_for_errors)}: unknown option '{name}'; "
                + did_you_mean(name, known)
            )
        options[name] = value
    return path, options


def redact_uri(uri: str) -> str:
    """The URI with any password (in the user-info part or a ``password=`` option) as ``***``.

    Everything else is left exactly as written. The user-info's password ends at the
    ``@`` before the host, wherever it is: a password may hold ``#``, ``?``, ``/`` or
    ``@`` unencoded (the drivers take ``#`` and ``@`` so), and none of it may show. A
    ``password=`` option's value runs to the next ``&``, a ``#`` in it included.
    """
    match = _SCHEME_RE.match(uri)
    if not match:
        return uri
    head, rest = uri[: match.end()], uri[match.end() :]
    userinfo = _USERINFO_RE.match(rest)
    if userinfo and userinfo.group("password") and not _is_port(userinfo.group("password")):
        rest = f"{userinfo.group('user')}:***@" + rest[userinfo.end("password") + 1 :]
    rest, question, query = rest.partition("?")
    if query:
        # Only the password's own value changes; every other option stays as written
        # (decoding and encoding the query again would rewrite %20 as + and the like).
        parts = []
        for part in query.split("&"):
            name, eq, _value = part.partition("=")
            if eq and unquote_plus(name).lower() == "password":
                part = f"{name}=***"
            parts.append(part)
        query = "&".join(parts)
    return f"{head}{rest}{question}{query}"


# user ":" password "@" host [":" port], then the path, the query or the end; the password
# is the shortest run that leaves a host there (a later "@" in a query is not the host's).
_USERINFO_RE = re.compile(
    r"(?P<user>[^:/?#@]*):(?P<password>.*?)@(?:\[[0-9A-Fa-f:.]*\]|[^/?#@\[\]:]*)(?::[0-9]*)?"
    r"(?=[/?#]|$)",
    re.DOTALL,
)


def _is_port(text: str) -> bool:
    """True when the "password" is a port and a path: ``host:5432/db?query=...@...``."""
    head = re.split(r"[/?]", text, maxsplit=1)
    return len(head) == 2 and head[0].isdigit()
