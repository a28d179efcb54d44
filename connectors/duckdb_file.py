"""A table or query in a DuckDB database file, read-only, streamed as Arrow batches.

``duckdb:///abs/path/file.duckdb?table=NAME`` (``NAME`` may be ``schema.table``)
or ``duckdb:///abs/path/file.duckdb?query=SELECT ...`` (URL-encode the query).
``duckdb://rel/path.duckdb`` is a path relative to the working directory.

The file is opened with ``read_only=True`` and with external access disabled,
so a provider's query can read the tables of that file and nothing else: no
``read_csv`` of other files, no ``ATTACH``, no extension download.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from policies.errors import SourceError
from policies.suggest import did_you_mean

from .base import DEFAULT_BATCH_ROWS, Source, quote_ident, split_options, split_scheme

# DuckDB errors whose message is about names and syntax, never about data values.
_NAME_ERRORS = (duckdb.CatalogException, duckdb.ParserException, duckdb.BinderException)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class DuckDBFileSource(Source):
    """Rows of one table, or of one query, of a DuckDB database file."""

    def __init__(self, uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        super().__init__(uri, batch_rows=batch_rows)
        _, rest = split_scheme(uri)
        path, options = split_options(rest, ("table", "query"), uri)
        self.path = path
        if ("table" in options) == ("query" in options):
            raise SourceError(f"{self.uri}: give exactly one of ?table=NAME or ?query=SELECT...")
        if not os.path.isfile(self.path):
            raise SourceError(f"{self.path}: DuckDB database file does not exist")
        try:
            con = duckdb.connect(
                self.path, read_only=True, config={"enable_external_access": False}
            )
        except duckdb.Error as exc:
            raise SourceError(
                f"{self.path}: cannot open as a DuckDB database ({_first_line(exc)})"
            ) from exc
        self._con: duckdb.DuckDBPyConnection | None = con  # None once closed
        try:
            if "table" in options:
                sql = f"SELECT * FROM {self._table_ref(con, options['table'])}"
            else:
                sql = options["query"]
            try:
                self._reader = con.sql(sql).to_arrow_reader(batch_rows)
            except _NAME_ERRORS as exc:
                raise SourceError(f"{self.path}: the query cannot run: {_first_line(exc)}") from exc
            except duckdb.Error as exc:
                raise SourceError(
                    f"{self.path}: the query cannot run ({type(exc).__name__})"
                ) from exc
        except SourceError:
            self.close()
            raise

    def _table_ref(self, con: duckdb.DuckDBPyConnection, name: str) -> str:
        """The quoted reference to an existing table or view, or a SourceError naming it."""
        rows = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
        ).fetchall()
        known = {f"{schema}.{table}": (schema, table) for schema, table in rows}
        known.update({table: (schema, table) for schema, table in rows if schema == "main"})
        found = known.get(name)
        if found is None:
            hint = did_you_mean(name, known) if known else "the file has no tables"
            raise SourceError(f"{self.path}: table '{name}' does not exist; {hint}")
        return f"{quote_ident(found[0])}.{quote_ident(found[1])}"

    @property
    def schema(self) -> pa.Schema:
        return self._reader.schema

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    break
                except (duckdb.Error, pa.ArrowException) as exc:
                    # A conversion error may quote a value: name only its kind.
                    raise SourceError(
                        f"{self.path}: reading failed after {self.progress.rows_read} rows "
                        f"({type(exc).__name__})"
                    ) from exc
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()
            self._con = None
