"""Excel workbooks (``.xlsx``, ``.xlsm``, ``.xls``, ``.xlsb``) and OpenDocument sheets (``.ods``).

Read with python-calamine. ``data/x.xlsx``, ``file:///abs/x.xlsx?sheet=...`` or
``excel://data/x.xlsx?sheet=...`` (``excel://`` takes the rest literally, as ``csv://``
does; a plain path may carry the options too: ``data/x.xlsx?sheet=人口``).

Options:

``sheet``     the sheet's name (default: the first sheet)
``header``    the header's row number, ``1`` by default, or two rows ``1-2`` whose
              names are joined with ``_`` (a group title over its sub-titles); the
              rows above it are skipped (a title, a date line)
``last_row``  the last row of the table (a total line or a note below it is left out)
``text``      columns to read as text, comma-separated (codes with leading zeros,
              a column mixing numbers and words)
``dates``     columns whose numbers are Excel date serials (a date typed in a cell
              formatted "General"); the 1900 date system

What a workbook holds and how it is read:

* merged cells: a merged range's value fills every cell of the range, so a county
  merged over the rows of its towns is the county of each row. A header merged
  across columns names the first and ``name_2``, ``name_3`` ... the next ones.
* empty rows and columns at the end are dropped; an empty row with values below it
  is refused (a second table or a note), naming the row: give ``last_row``.
* a column's type comes from all its cells: numbers (integers when every one is
  whole), dates, date-times, times, booleans or text. Numbers stored as text are
  read as numbers (``1,250.5`` too), unless one has a leading zero (``007``: a code)
  or more than 15 digits (an identity number): then the column stays text. Any other
  mix is refused naming the first cell that does not fit, with the option that reads it.
* a number of 16 or more digits is refused naming its cell: Excel keeps 15
  significant digits, so an identity number typed as a number has already lost
  its last digits; such a column must be stored as text in the workbook.
* an error cell (``#N/A``, ``#DIV/0!``) is read as empty (the reader gives no value).

Known shortcut: the sheet is read whole before the first batch (the reader has no
streaming mode, and the column types need every cell); a sheet has at most
1,048,576 rows, so memory is bounded by the workbook, not by ``batch_rows``.
The tests write ``.xlsx`` only: the other formats go through the same reader.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from policies.errors import SourceError
from policies.suggest import did_you_mean

from .base import DEFAULT_BATCH_ROWS, Source, split_options, split_scheme

SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
SCHEMES = ("excel", "xlsx")
OPTIONS = ("sheet", "header", "last_row", "text", "dates")
EXACT_DIGITS = 15  # significant digits Excel keeps in a number
_EPOCH = dt.datetime(1899, 12, 30)  # day 0 of the 1900 date system (past its leap-year bug)
_NUMBER_TEXT = re.compile(r"[+-]?(0|[1-9][0-9]*)(\.[0-9]+)?")


def is_workbook(path: str) -> bool:
    """True when the path (without any ``?options``) names a workbook by its extension."""
    return Path(path.partition("?")[0]).suffix.lower() in SUFFIXES


def cell_name(row: int, col: int) -> str:
    """``B7`` for the 0-based row 6 and column 1."""
    letters = ""
    col += 1
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


def open_excel(uri: str, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> ExcelSource:
    scheme, rest = split_scheme(uri)
    options: dict[str, str]
    if scheme == "" and os.path.isfile(uri):
        path, options = uri, {}
    else:
        path, options = split_options(rest, OPTIONS, uri)
        if scheme == "file":
            path = unquote(path[len("localhost") :] if path.startswith("localhost/") else path)
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise SourceError(f"{path}: {what}")
    return ExcelSource(uri, path, options, batch_rows=batch_rows)


def _rows_option(options: dict[str, str], uri: str) -> tuple[int, int, int | None]:
    """The header's first and last row and the table's last row, 0-based."""
    header = options.get("header", "1").strip()
    match = re.fullmatch(r"([1-9][0-9]*)(?:-([1-9][0-9]*))?", header)
    if match is None or (match.group(2) and int(match.group(2)) - int(match.group(1)) != 1):
        raise SourceError(
            f"{uri}: option header must be a row number (header=2) or two rows (header=1-2), "
            f"not '{header}'"
        )
    first = int(match.group(1)) - 1
    last = int(match.group(2) or match.group(1)) - 1
    end = None
    if "last_row" in options:
        text = options["last_row"].strip()
        if not text.isdigit() or int(text) <= last + 1:
            raise SourceError(
                f"{uri}: option last_row must be a row number below the header (row {last + 1})"
            )
        end = int(text) - 1
    return first, last, end


def _names(options: dict[str, str], key: str) -> list[str]:
    return [c.strip() for c in options.get(key, "").split(",") if c.strip()]


class ExcelSource(Source):
    """One sheet of a workbook, read whole at open, handed out in batches."""

    def __init__(
        self, uri: str, path: str, options: dict[str, str], *, batch_rows: int = DEFAULT_BATCH_ROWS
    ):
        super().__init__(uri, batch_rows=batch_rows)
        self.path = path
        self.progress.total_bytes = os.path.getsize(path)
        header_first, header_last, end = _rows_option(options, self.uri)
        grid, merged, self.sheet = self._read(options.get("sheet"))
        _fill_merged(grid, merged)
        where = f"{path}, sheet '{self.sheet}'"
        if len(grid) <= header_last:
            raise SourceError(f"{where}: the sheet has no row {header_last + 1} to read a header")
        header = _header(grid, header_first, header_last, merged, where)
        rows = _data_rows(grid, header_last + 1, end, where)
        text, dates = _names(options, "text"), _names(options, "dates")
        for option, columns in (("text", text), ("dates", dates)):
            for column in columns:
                if column not in [name for name, _ in header]:
                    raise SourceError(
                        f"{where}: option {option} names column '{column}', which the sheet "
                        "does not have; " + did_you_mean(column, [n for n, _ in header])
                    )
        arrays, fields = [], []
        for name, col in header:
            cells = [(r, row[col] if col < len(row) else None) for r, row in rows]
            kind = "text" if name in text else "dates" if name in dates else None
            array = _column(cells, col, name, kind, where)
            arrays.append(array)
            fields.append(pa.field(name, array.type))
        self._table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        self.progress.bytes_read = self.progress.total_bytes

    def _read(self, sheet: str | None) -> tuple[list[list[Any]], list, str]:
        import python_calamine as calamine

        try:
            book = calamine.CalamineWorkbook.from_path(self.path)
        except calamine.PasswordError:
            raise SourceError(f"{self.path}: the workbook is protected by a password") from None
        except Exception:  # noqa: BLE001 - the reader's errors have no common base class
            raise SourceError(
                f"{self.path}: not a readable workbook (.xlsx, .xlsm, .xls, .xlsb or .ods)"
            ) from None
        try:
            names = book.sheet_names
            if sheet is not None and sheet not in names:
                raise SourceError(
                    f"{self.path}: the workbook has no sheet '{sheet}'; "
                    + did_you_mean(sheet, names)
                )
            name = sheet if sheet is not None else names[0]
            try:
                found = book.get_sheet_by_name(name)
                grid = found.to_python(skip_empty_area=False)
                merged = list(found.merged_cell_ranges or [])
            except SourceError:
                raise
            except Exception:  # noqa: BLE001
                raise SourceError(f"{self.path}: sheet '{name}' cannot be read") from None
        finally:
            book.close()
        return [[None if _empty(v) else v for v in row] for row in grid], merged, name

    @property
    def schema(self) -> pa.Schema:
        return self._table.schema

    def _batches(self) -> Iterator[pa.RecordBatch]:
        yield from self._table.to_batches(max_chunksize=self.batch_rows)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _fill_merged(grid: list[list[Any]], merged: list) -> None:
    """Every cell of a merged range takes the value of its top-left cell."""
    for (top, left), (bottom, right) in merged:
        if top >= len(grid):
            continue
        value = grid[top][left] if left < len(grid[top]) else None
        for r in range(top, min(bottom, len(grid) - 1) + 1):
            row = grid[r]
            for c in range(left, right + 1):
                if c < len(row) and (r, c) != (top, left):
                    row[c] = value


def _as_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


def _header(
    grid: list[list[Any]], first: int, last: int, merged: list, where: str
) -> list[tuple[str, int]]:
    """(name, column index) of every column that has a name or a value."""
    width = max(len(row) for row in grid)
    # column -> the first column of the horizontal merge over the header it is in
    spans: dict[int, int] = {}
    for (top, left), (bottom, right) in merged:
        if top <= last and bottom >= first and right > left:
            for c in range(left, right + 1):
                spans.setdefault(c, left)
    out: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for col in range(width):
        parts: list[str] = []
        for r in range(first, last + 1):
            value = grid[r][col] if col < len(grid[r]) else None
            if value is not None and _as_name(value) not in parts:
                parts.append(_as_name(value))
        name = "_".join(parts)
        if not name:
            if any(col < len(row) and row[col] is not None for row in grid[last + 1 :]):
                raise SourceError(
                    f"{where}: cell {cell_name(last, col)} (the header of a column with values) "
                    "is empty; name the column, or give the header's row with ?header=N"
                )
            continue
        if name in seen:
            if col in spans and spans.get(seen[name]) == spans[col]:
                name = f"{name}_{col - spans[col] + 1}"
            else:
                # the cells, not their text: a data row taken for the header (a workbook
                # exported without its title row) would put a value in the ledger
                raise SourceError(
                    f"{where}: cells {cell_name(last, seen[name])} and {cell_name(last, col)} "
                    "give two columns the same name; give every column its own name, or give "
                    "the header's row with ?header=N"
                )
        seen.setdefault(name, col)
        out.append((name, col))
    if not out:
        raise SourceError(f"{where}: row {last + 1} names no column; give the header's row")
    return out


def _data_rows(
    grid: list[list[Any]], start: int, end: int | None, where: str
) -> list[tuple[int, list[Any]]]:
    """(row index, cells) of the table's rows; trailing empty rows dropped."""
    stop = len(grid) if end is None else min(end + 1, len(grid))
    rows = [(r, grid[r]) for r in range(start, stop)]
    while rows and all(v is None for v in rows[-1][1]):
        rows.pop()
    for r, row in rows:
        if all(v is None for v in row):
            raise SourceError(
                f"{where}: row {r + 1} is empty and rows with values follow it (a note or a "
                f"second table?); end the table with ?last_row={r}, or delete the row"
            )
    if not rows:
        raise SourceError(f"{where}: the sheet has a header but no data rows")
    return rows


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, dt.timedelta):
        return "duration"
    return "text"


_TYPES = {
    frozenset({"bool"}): pa.bool_(),
    frozenset({"date"}): pa.date32(),
    frozenset({"datetime"}): pa.timestamp("us"),
    frozenset({"date", "datetime"}): pa.timestamp("us"),
    frozenset({"time"}): pa.time64("us"),
    frozenset({"duration"}): pa.duration("us"),
    frozenset({"text"}): pa.string(),
    frozenset(): pa.string(),
}


def _column(
    cells: list[tuple[int, Any]], col: int, name: str, option: str | None, where: str
) -> pa.Array:
    """One column's cells as an Arrow array, or a SourceError naming the first misfit cell."""
    for r, v in cells:
        if isinstance(v, float) and v.is_integer() and abs(v) >= 10**EXACT_DIGITS:
            raise SourceError(
                f"{where}: cell {cell_name(r, col)} holds a number of {EXACT_DIGITS + 1} or more "
                f"digits; Excel keeps {EXACT_DIGITS} significant digits, so an identity number "
                f"stored as a number has lost its last digits. Store column '{name}' as text "
                "in the workbook and export it again"
            )
    values = [v for _, v in cells]
    if option == "text":
        return pa.array([None if v is None else _as_text(v) for v in values], pa.string())
    if option == "dates":
        return _serial_dates(cells, col, name, where)
    kinds = {_kind(v) for v in values if v is not None}
    if kinds == {"number"} or (kinds <= {"number", "text"} and all(
        _number_text(v) is not None for v in values if isinstance(v, str)
    )):  # fmt: skip
        return _numbers(values)
    if frozenset(kinds) in _TYPES:
        kind = _TYPES[frozenset(kinds)]
        if pa.types.is_timestamp(kind):
            values = [v if not isinstance(v, dt.date) or isinstance(v, dt.datetime)
                      else dt.datetime.combine(v, dt.time()) for v in values]  # fmt: skip
        return pa.array(values, kind)
    if kinds & {"date", "datetime"} and "number" in kinds:
        main = "date"  # numbers among dates: serials typed in cells formatted "General"
    else:
        counts: dict[str, int] = {}  # in the order the kinds first appear: a tie goes to the first
        for v in values:
            if v is not None:
                counts[_kind(v)] = counts.get(_kind(v), 0) + 1
        main = max(counts, key=lambda k: counts[k])
    fits = {main, "datetime"} if main == "date" else {main}
    r, misfit = next((r, v) for r, v in cells if v is not None and _kind(v) not in fits)
    if main == "date" and _kind(misfit) == "number":
        hint = (
            f"a date stored as a serial number? Read the column's numbers as Excel date serials "
            f"with ?dates={name}, or format the cell as a date"
        )
    else:
        hint = f"read the column as text with ?text={name}, or correct the cell"
    found = {"number": "a number", "text": "text"}.get(_kind(misfit), f"a {_kind(misfit)} value")
    raise SourceError(
        f"{where}: cell {cell_name(r, col)} holds {found} in column '{name}', a column of "
        f"{main}s; {hint}"
    )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


def _number_text(value: str) -> float | None:
    """The number a text cell holds ("1,234.5", " 12 "), or None: a leading zero makes it a
    code, and more than 15 digits an identity number (both stay text)."""
    text = value.strip().replace(",", "")
    digits = sum(ch.isdigit() for ch in text)
    if digits > EXACT_DIGITS or not _NUMBER_TEXT.fullmatch(text):
        return None
    return float(text)


def _numbers(values: list[Any]) -> pa.Array:
    """Numbers, with numbers stored as text read as numbers; integers when all are whole."""
    out = [_number_text(v) if isinstance(v, str) else v for v in values]
    if all(v is None or (float(v).is_integer() and abs(v) < 2**53) for v in out):
        return pa.array([None if v is None else int(v) for v in out], pa.int64())
    return pa.array(out, pa.float64())


def _serial_dates(cells: list[tuple[int, Any]], col: int, name: str, where: str) -> pa.Array:
    """A column of dates where some or all are Excel serial numbers (1900 date system)."""
    out: list[dt.datetime | None] = []
    whole = True
    for r, v in cells:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not 61 <= v < 2958466:  # 1900-03-01 .. 9999-12-31
                raise SourceError(
                    f"{where}: cell {cell_name(r, col)} in column '{name}' is not a date serial "
                    "between 61 (1900-03-01) and 2958465 (9999-12-31)"
                )
            v = _EPOCH + dt.timedelta(days=float(v))
        elif isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            v = dt.datetime.combine(v, dt.time())
        elif v is not None and not isinstance(v, dt.datetime):
            raise SourceError(
                f"{where}: cell {cell_name(r, col)} in column '{name}' (option dates) holds "
                f"{_kind(v)}, neither a date nor a date serial; correct the cell"
            )
        if v is not None and v.time() != dt.time():
            whole = False
        out.append(v)
    if whole:
        return pa.array([None if v is None else v.date() for v in out], pa.date32())
    return pa.array(out, pa.timestamp("us"))
