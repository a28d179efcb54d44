"""The released table as an analyst's tools open it (issue 26).

* **Integer types** where the values are integers: DuckDB sums whole numbers into
  ``decimal128(38, 0)``; a product holds them as ``int64`` whenever every value
  fits (:func:`integer_types`).
* **A flag per measure**: after each aggregate column ``<measure>``, a text column
  ``<measure>_flag`` says what the release did to that cell: ``suppressed`` (the
  value is empty), ``noised`` (the DP mode's noise), ``rounded`` (a count rounded
  to the base of ``round_10_5``), or nothing. A flag never says *why* a cell was
  suppressed (the operator's view of the check lists suppressed cells without
  their rules, :mod:`sandbox.run.views`), and ``rounded`` marks every released
  count of a rounded column, so it does not tell which true values were already
  multiples of the base. An empty value whose flag is empty is a missing value.
* **A CSV that Excel opens**: UTF-8 with a byte order mark, so Excel on a Chinese
  Windows desktop reads the county names as they are (:func:`csv_bytes`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from policies.disclosure.params import COUNTS, Mitigation

FLAG_SUFFIX = "_flag"
SUPPRESSED, NOISED, ROUNDED = "suppressed", "noised", "rounded"
FLAGS = (SUPPRESSED, NOISED, ROUNDED)
BOM = b"\xef\xbb\xbf"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def integer_types(table: pa.Table) -> pa.Table:
    """``table`` with every decimal column of scale 0 as ``int64`` when all values fit."""
    for position, field in enumerate(table.schema):
        kind = field.type
        if not pa.types.is_decimal(kind) or kind.scale != 0:
            continue
        column = table.column(position)
        low, high = pc.min(column).as_py(), pc.max(column).as_py()
        if low is not None and (low < INT64_MIN or high > INT64_MAX):
            continue
        table = table.set_column(
            position, pa.field(field.name, pa.int64(), field.nullable), column.cast(pa.int64())
        )
    return table


def flag_name(measure: str, taken: Iterable[str]) -> str:
    """``<measure>_flag``, with more underscores while a column has that name already."""
    names = set(taken)
    name = measure + FLAG_SUFFIX
    while name in names:
        name = "_" + name
    return name


def measures_in(table: pa.Table, manifest: Mapping, report: Mapping) -> dict[str, str | None]:
    """The table's aggregate columns and their functions.

    From the manifest's ``measures`` (written since issue 26); a job held for review
    before then has none, and the columns the check or the noise touched stand in.
    """
    given = manifest.get("measures")
    if given is not None:
        return {name: fn for name, fn in given.items() if name in table.column_names}
    touched = {c["column"] for c in report.get("suppressed_cells") or []}
    touched |= set((report.get("dp") or {}).get("columns") or {})
    return {name: None for name in table.column_names if name in touched}


def with_flags(table: pa.Table, manifest: Mapping, report: Mapping) -> pa.Table:
    """``table`` with a ``<measure>_flag`` column after each measure (module docstring)."""
    measures = measures_in(table, manifest, report)
    suppressed = {(c["row"], c["column"]) for c in report.get("suppressed_cells") or []}
    noised = set((report.get("dp") or {}).get("columns") or {})
    params = report.get("params") or {}
    rounding = params.get("mitigation") == Mitigation.ROUND_10_5.value
    columns: list[pa.ChunkedArray | pa.Array] = []
    fields: list[pa.Field] = []
    for field in table.schema:
        column = table.column(field.name)
        columns.append(column)
        fields.append(field)
        if field.name not in measures:
            continue
        rounds = rounding and measures[field.name] in COUNTS
        flags: list[str | None] = []
        for row, value in enumerate(column.to_pylist()):
            if (row, field.name) in suppressed:
                flags.append(SUPPRESSED)
            elif field.name in noised:
                flags.append(NOISED)
            elif rounds and value is not None:
                flags.append(ROUNDED)
            else:
                flags.append(None)
        columns.append(pa.array(flags, type=pa.string()))
        taken = [*table.column_names, *(f.name for f in fields)]
        fields.append(pa.field(flag_name(field.name, taken), pa.string()))
    # the schema's metadata (the DP mode's noise statement) goes with the table
    return pa.table(columns, schema=pa.schema(fields, metadata=table.schema.metadata))


def csv_bytes(table: pa.Table) -> bytes:
    """The CSV's bytes: a UTF-8 byte order mark, then the header and the rows."""
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return BOM + sink.getvalue()
