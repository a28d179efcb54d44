"""Files as sources: CSV, Parquet and JSON lines, read as a stream of Arrow batches.

The kind comes from the extension (``.csv``, ``.parquet``/``.pq``, ``.jsonl``/
``.ndjson``/``.json``) or is forced by the scheme (``csv://``, ``parquet://``,
``jsonl://``); ``file://`` and a plain path choose by extension. ``file://`` is a
URL, so its path is percent-decoded; the forced-kind schemes take the rest of the
URI literally (``csv://data/x.csv`` is the relative path ``data/x.csv``).

Options (only with a scheme, after ``?``):

``encoding``   CSV text encoding, default ``utf8`` (``gbk`` is common in exports)
``delimiter``  CSV field separator, default ``,``
``text``       CSV columns to read as text, comma-separated; use it for codes
               whose leading zeros matter, or when a column's type changes
               after the first block (see below)

In CSV, an empty field and pyarrow's usual null markers (``NULL``, ``NA``, ``N/A``,
...) are NULL in every column, text columns included.

Why reading can fail, and what the error says (never the offending value):

* a missing file names the path;
* a CSV row with the wrong number of fields names its line and the counts;
* pyarrow infers CSV column types from the first block; a later value that does
  not fit (``12X`` in a column of integers) names the column and its line and
  suggests ``?text=column``. The schema cannot change after it was announced,
  so the connector does not silently re-type the column.
* a JSON line that is not JSON, or whose field changes type, names the line.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict, cast
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from policies.errors import SourceError
from policies.suggest import did_you_mean

from .base import DEFAULT_BATCH_ROWS, Source, split_options, split_scheme

KINDS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
FORCED = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}
OPTIONS = {"csv": ("encoding", "delimiter", "text"), "parquet": (), "jsonl": ()}


class _CsvOptions(TypedDict, total=False):
    """The options a csv:// or file:// URI may carry (OPTIONS["csv"])."""

    encoding: str
    delimiter: str
    text: str


CSV_BLOCK_BYTES = 1 << 20
JSON_CHUNK_BYTES = 16 << 20

_CSV_CONVERSION = re.compile(r"CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+)")
_JSON_CHANGED = re.compile(r"Column\((/[^)]*)\) changed from (\w+) to (\w+) in row (\d+)")
_JSON_ROW = re.compile(r"in row (\d+)")


def open_file(uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Source:
    """Open a file source from a plain path, ``file://`` or a forced-kind URI."""
    scheme, rest = split_scheme(uri)
    options: dict[str, str]
    if scheme == "":
        path, options, kind = uri, {}, None
    elif scheme == "file":
        rest, options = split_options(rest, OPTIONS["csv"], uri)
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        path, kind = unquote(rest), None
    elif scheme in FORCED:
        kind = FORCED[scheme]
        path, options = split_options(rest, OPTIONS[kind], uri)
    else:
        raise SourceError(
            f"'{scheme}://' is not a file scheme; " + did_you_mean(scheme, [*FORCED, "file"])
        )
    if kind is None:
        kind = KINDS.get(Path(path).suffix.lower())
        if kind is None:
            raise SourceError(
                f"{path}: cannot tell the file kind from the extension '{Path(path).suffix}'; "
                f"use one of {', '.join(sorted(KINDS))} or force it with csv://, parquet://, jsonl://"
            )
    if options and kind != "csv":
        name = sorted(options)[0]
        raise SourceError(f"{uri}: option '{name}' applies to CSV files only")
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise SourceError(f"{path}: {what}")
    if kind == "csv":
        # split_options let through only the names in OPTIONS["csv"]
        return CsvSource(uri, path, batch_rows=batch_rows, **cast(_CsvOptions, options))
    if kind == "parquet":
        return ParquetSource(uri, path, batch_rows=batch_rows)
    return JsonLinesSource(uri, path, batch_rows=batch_rows)


class CsvSource(Source):
    """A CSV file read with pyarrow's streaming reader, one block of bytes at a time."""

    def __init__(
        self,
        uri: str,
        path: str,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        encoding: str = "utf8",
        delimiter: str = ",",
        text: str = "",
        block_size: int = CSV_BLOCK_BYTES,
    ):
        super().__init__(uri, batch_rows=batch_rows)
        self.path = path
        self._bad_row: tuple[int | None, int, int] | None = None
        if len(delimiter) != 1:
            raise SourceError(f"{self.uri}: delimiter must be one character")
        text_columns = [c.strip() for c in text.split(",") if c.strip()]
        self._file = pa.OSFile(path, "rb")
        self.progress.total_bytes = os.path.getsize(path)
        try:
            self._reader = pacsv.open_csv(
                self._file,
                read_options=pacsv.ReadOptions(
                    use_threads=False, block_size=block_size, encoding=encoding
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter, invalid_row_handler=self._on_invalid_row
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in text_columns},
                    # An empty field is NULL in text columns too, as in numbers.
                    strings_can_be_null=True,
                ),
            )
            names = self._reader.schema.names  # decodes the header: may fail too
        except (pa.ArrowInvalid, LookupError, UnicodeDecodeError) as exc:
            self.close()
            raise self._translate(exc) from exc
        for field in self._reader.schema:
            if pa.types.is_binary(field.type):
                # pyarrow infers binary for text that is not UTF-8: a wrong encoding.
                self.close()
                raise SourceError(
                    f"{self.path}: column '{field.name}' is not valid UTF-8; give the file's "
                    f"encoding, e.g. csv://{self.path}?encoding=gbk"
                )
        for column in text_columns:
            if column not in names:
                self.close()
                raise SourceError(
                    f"{self.path}: option text names column '{column}', which the file does not "
                    "have; " + did_you_mean(column, names)
                )
        try:
            _check_header(self.path, names)
            if not _ascii_compatible(encoding):
                return
            _check_quotes(self.path)
        except SourceError:
            self.close()
            raise

    @property
    def schema(self) -> pa.Schema:
        return self._reader.schema

    def _on_invalid_row(self, row) -> str:
        # Keep the position and the counts, never row.text: it holds the data.
        self._bad_row = (row.number, row.expected_columns, row.actual_columns)
        return "error"

    def _batches(self) -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            while True:
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise self._translate(exc) from exc
                self.progress.bytes_read = self._file.tell()
                rows += batch.num_rows
                yield batch
            if rows == 0:
                raise SourceError(
                    f"{self.path}: the file has a header line but no data rows; a dataset "
                    "needs at least one row"
                )
        finally:
            self.close()

    def _translate(self, exc: Exception) -> SourceError:
        if self._bad_row is not None:
            number, expected, actual = self._bad_row
            where = f"line {number}" if number is not None else "a line"
            return SourceError(f"{self.path}: {where}: expected {expected} columns, got {actual}")
        message = str(exc)
        if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in message:
            return SourceError(
                f"{self.path}: the file is not valid UTF-8; give its encoding, "
                f"e.g. csv://{self.path}?encoding=gbk"
            )
        conversion = _CSV_CONVERSION.search(message)
        if conversion:
            index, line, target = int(conversion.group(1)), conversion.group(2), conversion.group(3)
            names = self._reader.schema.names if hasattr(self, "_reader") else []
            column = names[index] if index < len(names) else f"#{index + 1}"
            return SourceError(
                f"{self.path}: line {line}: column '{column}' has a value that is not {target} "
                f"(its type was inferred from the first {CSV_BLOCK_BYTES >> 20} MiB); "
                f"read it as text with csv://{self.path}?text={column}"
            )
        if isinstance(exc, LookupError):
            return SourceError(f"{self.uri}: unknown text encoding")
        if "Empty CSV file" in message:
            return SourceError(f"{self.path}: the file is empty (no header line)")
        # pyarrow's other messages may quote data; keep only its first clause.
        return SourceError(f"{self.path}: cannot read as CSV ({message.split(':')[0]})")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _check_header(path: str, names: list[str]) -> None:
    """Every column of the header has a name of its own."""
    first: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if not name.strip():
            raise SourceError(
                f"{path}: column {number} has no name in the header line; name every column"
            )
        if name in first:
            raise SourceError(
                f"{path}: column '{name}' appears twice in the header line (columns "
                f"{first[name]} and {number}); give every column its own name"
            )
        first[name] = number


def _ascii_compatible(encoding: str) -> bool:
    """True when a '"' byte can only be a quote (UTF-8, GBK, Latin-1; not UTF-16 or 32)."""
    try:
        return codecs.lookup(encoding).name not in _WIDE_ENCODINGS
    except LookupError:
        return False


_WIDE_ENCODINGS = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


def _check_quotes(path: str) -> None:
    """Refuse a file that ends inside a quoted field (an odd number of '"').

    pyarrow lets a quoted field run over line breaks and to the end of the file,
    so one quote that is never closed would silently swallow every later line into
    one value. A '"' opens or closes a quoted field wherever it stands and a quote
    inside one is written twice, so a whole file has an even number of them. The
    count costs one read of the file in 1 MiB chunks; only an odd count pays for a
    second read that finds the line of the quote left open.
    """
    total = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CSV_BLOCK_BYTES), b""):
            total += chunk.count(b'"')
    if total % 2 == 0:
        return
    line, opened_on, inside = 1, 1, False
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CSV_BLOCK_BYTES), b""):
            for match in _QUOTE_OR_NEWLINE.finditer(chunk):
                if match.group() == b"\n":
                    line += 1
                else:
                    inside = not inside
                    if inside:
                        opened_on = line
    raise SourceError(
        f"{path}: line {opened_on}: a quoted field is opened with '\"' and never closed, so "
        "every later line would be read into it; close the quote, or write a '\"' inside a "
        "value as '\"\"'"
    )


_QUOTE_OR_NEWLINE = re.compile(rb'["\n]')


class ParquetSource(Source):
    """A Parquet file, read row group by row group (``ParquetFile.iter_batches``)."""

    def __init__(self, uri: str, path: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        super().__init__(uri, batch_rows=batch_rows)
        self.path = path
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{path}: not a readable Parquet file") from exc
        self.progress.total_bytes = os.path.getsize(path)
        self._rows = self._file.metadata.num_rows

    @property
    def schema(self) -> pa.Schema:
        return self._file.schema_arrow

    def _batches(self) -> Iterator[pa.RecordBatch]:
        done = 0
        try:
            for batch in self._file.iter_batches(batch_size=self.batch_rows):
                done += batch.num_rows
                if self._rows:
                    # An estimate: Parquet is decoded by row group, not streamed by byte.
                    self.progress.bytes_read = self.progress.total_bytes * done // self._rows
                yield batch
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{self.path}: the Parquet file is damaged after row {done}") from exc
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()


class JsonLinesSource(Source):
    """A file of JSON objects, one per line, parsed in chunks of ``batch_rows`` lines.

    pyarrow.json reads a whole file at once, so the lines are chunked here and
    each chunk is parsed alone. The first chunk decides the schema; later
    chunks are parsed against it, so a field that changes type is reported with
    its line instead of silently becoming another column type.
    """

    def __init__(self, uri: str, path: str, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        super().__init__(uri, batch_rows=batch_rows)
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.progress.total_bytes = os.path.getsize(path)
        self._line = 0  # lines consumed so far
        self._pending: pa.Table | None = None
        first_chunk = self._read_chunk()
        if not first_chunk.strip():
            self.close()
            raise SourceError(f"{path}: the file has no JSON lines")
        if first_chunk.lstrip().startswith(b"["):
            self.close()
            raise SourceError(
                f"{path}: a JSON array is not supported; write one JSON object per line (JSON lines)"
            )
        try:
            self._pending = self._parse(first_chunk, first_line=1, schema=None)
        except SourceError:
            self.close()
            raise
        self._schema = self._pending.schema

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def _read_chunk(self) -> bytes:
        """Up to ``batch_rows`` lines (or about 16 MiB), ending at a line break."""
        lines: list[bytes] = []
        size = 0
        while len(lines) < self.batch_rows and size < JSON_CHUNK_BYTES:
            line = self._file.readline()
            if not line:
                break
            lines.append(line if line.endswith(b"\n") else line + b"\n")
            size += len(line)
        self._chunk_first_line = self._line + 1
        self._line += len(lines)
        self.progress.bytes_read = self._file.tell()
        return b"".join(lines)

    def _parse(self, chunk: bytes, *, first_line: int, schema: pa.Schema | None) -> pa.Table:
        options = pajson.ParseOptions(
            explicit_schema=schema,
            unexpected_field_behavior="error" if schema is not None else "infer",
            newlines_in_values=False,
        )
        # One block per chunk, so pyarrow's row numbers count from the chunk's first line.
        read = pajson.ReadOptions(use_threads=False, block_size=max(len(chunk) + 1, 1 << 16))
        try:
            return pajson.read_json(io.BytesIO(chunk), read_options=read, parse_options=options)
        except pa.ArrowInvalid as exc:
            raise self._translate(exc, chunk, first_line, schema) from exc

    def _translate(
        self, exc: Exception, chunk: bytes, first_line: int, schema: pa.Schema | None
    ) -> SourceError:
        message = str(exc)
        # pyarrow skips blank lines when it counts rows; map its row back to a file line.
        lines = chunk.split(b"\n")
        non_blank = [i for i, line in enumerate(lines) if line.strip()]
        changed = _JSON_CHANGED.search(message)
        if changed:
            field, old, new, row = changed.groups()
            line = first_line + non_blank[min(int(row), len(non_blank) - 1)]
            return SourceError(
                f"{self.path}: line {line}: field '{field.lstrip('/')}' changed from {old} to {new}; "
                "every line must give a field the same type"
            )
        if "unexpected field" in message and schema is not None:
            for i in non_blank:
                try:
                    record = json.loads(lines[i])
                except ValueError:
                    continue
                extra = (
                    [k for k in record if k not in schema.names] if isinstance(record, dict) else []
                )
                if extra:
                    return SourceError(
                        f"{self.path}: line {first_line + i}: field '{extra[0]}' does not appear in "
                        f"the first {self.batch_rows} lines, which fix the columns"
                    )
        row = _JSON_ROW.search(message)
        if row:
            line = first_line + non_blank[min(int(row.group(1)), len(non_blank) - 1)]
            return SourceError(f"{self.path}: line {line}: not a JSON object")
        return SourceError(f"{self.path}: lines {first_line}-{self._line}: not valid JSON lines")

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            if self._pending is not None:
                yield from self._pending.to_batches()
                self._pending = None
            while True:
                chunk = self._read_chunk()
                if not chunk:
                    break
                if not chunk.strip():
                    continue
                table = self._parse(chunk, first_line=self._chunk_first_line, schema=self._schema)
                yield from table.to_batches()
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()
