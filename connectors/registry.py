"""Which connector reads which URI: chosen by the URI's scheme.

A plain path (no ``name://``) is a file. Each scheme maps to the function that
opens it; connectors are imported only when their scheme is used, so reading a
CSV file never loads the PostgreSQL driver. An unknown scheme is answered with
the known ones and a "did you mean".
"""

from __future__ import annotations

from collections.abc import Callable

from policies.errors import SourceError
from policies.suggest import did_you_mean

from .base import DEFAULT_BATCH_ROWS, Source, check_uri_text, split_scheme


def _files(uri: str, batch_rows: int) -> Source:
    from .excel import is_workbook

    if is_workbook(split_scheme(uri)[1]):
        return _excel(uri, batch_rows)
    from .files import open_file

    return open_file(uri, batch_rows=batch_rows)


def _excel(uri: str, batch_rows: int) -> Source:
    from .excel import open_excel

    return open_excel(uri, batch_rows=batch_rows)


def _duckdb(uri: str, batch_rows: int) -> Source:
    from .duckdb_file import DuckDBFileSource

    return DuckDBFileSource(uri, batch_rows=batch_rows)


def _postgres(uri: str, batch_rows: int) -> Source:
    from .postgres import PostgresSource

    return PostgresSource(uri, batch_rows=batch_rows)


def _mysql(uri: str, batch_rows: int) -> Source:
    from .mysql import MySQLSource

    return MySQLSource(uri, batch_rows=batch_rows)


SCHEMES: dict[str, Callable[[str, int], Source]] = {
    "": _files,
    "file": _files,
    "csv": _files,
    "parquet": _files,
    "jsonl": _files,
    "excel": _excel,
    "xlsx": _excel,
    "duckdb": _duckdb,
    "postgresql": _postgres,
    "postgres": _postgres,
    "mysql": _mysql,
    "mariadb": _mysql,
}


def open_source(uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Source:
    """Open the source named by ``uri``; the caller closes it (or uses ``with``)."""
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError(
            "a source URI is required, e.g. data/people.csv or duckdb:///x.duckdb?table=t"
        )
    if batch_rows < 1:
        raise SourceError(f"batch_rows must be at least 1, got {batch_rows}")
    check_uri_text(uri)
    scheme, _ = split_scheme(uri)
    opener = SCHEMES.get(scheme)
    if opener is None:
        known = [s for s in SCHEMES if s]
        hint = did_you_mean(scheme, known)
        listed = ", ".join(f"{s}://" for s in known)
        if hint.startswith("did you mean"):
            hint = f"{hint} Known schemes: {listed}, or a plain file path"
        else:
            hint = f"known schemes: {listed}, or a plain file path"
        raise SourceError(f"unknown source scheme '{scheme}://'; {hint}")
    return opener(uri, batch_rows)
