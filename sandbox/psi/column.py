"""The platform's column as PSI items: read from the snapshot and normalised in Arrow.

The normal form is :func:`connectors.normalise.normalise`, the one the operator's client
applies to its list; here it is computed over the whole column at once instead of item
by item in Python (issue 23: per item, the Python loop cost a few percent of the
elliptic-curve work and ran before any of it could start). For ASCII text the rule is
Arrow kernels with exactly the function's meaning:

* no full-width form (they are not ASCII), so nothing to convert;
* ``str.strip()`` removes, from ASCII text, the ten characters of :data:`ASCII_SPACE`
  (``str.isspace``), so :func:`pyarrow.compute.ascii_trim` with those;
* 18 ASCII letters and digits are upper-cased (a regular expression, ``ascii_upper``).

Any other value (non-ASCII text, a type other than text or integers) goes through
:func:`normalise` itself, so the two paths cannot disagree on it. A blank result is dropped.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.normalise import ID_LENGTH, normalise

ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "  # the ASCII characters str.isspace() accepts
_ID = f"^[A-Za-z0-9]{{{ID_LENGTH}}}$"  # ASCII letters and digits, ID_LENGTH of them


def _as_text(values: pa.Array) -> pa.Array | None:
    """The values as Arrow text with ``str(value)``'s spelling, or None when the type has
    no such cast (then Python does it)."""
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values
    if pa.types.is_integer(kind):
        return values.cast(pa.string())  # decimal digits and a minus: str(int)'s spelling
    return None


def normalised(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``normalise(value)`` of every value, in order: ``""`` for a blank, null for a null.

    No Python value is turned into an Arrow one on the usual path (a scalar argument
    would be): that imports pandas into the server on its first build."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    text = _as_text(values)
    if text is None:
        return pa.array(
            [None if v is None else normalise(v) for v in values.to_pylist()], pa.string()
        )
    trimmed = pc.ascii_trim(text, characters=ASCII_SPACE)
    out = pc.if_else(
        pc.match_substring_regex(trimmed, pattern=_ID), pc.ascii_upper(trimmed), trimmed
    )
    other = pc.invert(pc.string_is_ascii(text))  # null for a null: kept null below
    if pc.any(other).as_py():  # full-width forms, other scripts: the function itself
        odd = [normalise(v) for v in text.filter(other).to_pylist()]
        out = pc.replace_with_mask(out, other, pa.array(odd, out.type))
    return out


def _nonblank(items: pa.Array) -> pa.Array:
    return pc.cast(pc.binary_length(items), pa.bool_())  # null for a null, false for ""


def read_columns(snapshot: Path, names: list[str]) -> pa.Table:
    """Columns of a version's snapshot (one Parquet file). Read as a file: ``read_table``
    would import ``pyarrow.dataset``, and with it pandas, on a server's first build
    (half a second of CPU, the measure of issue 23)."""
    with pq.ParquetFile(snapshot) as parquet:
        return parquet.read(columns=names)


def distinct_items(snapshot: Path, column: str) -> list[str]:
    """The distinct normalised items of the column, in first-seen order; blanks dropped."""
    items = normalised(read_columns(snapshot, [column]).column(column))
    return pc.unique(items.filter(_nonblank(items))).to_pylist()


def distinct_items_by_group(snapshot: Path, column: str, group_by: str) -> dict[str, list[str]]:
    """Per group value (``str`` of it), the distinct normalised items of that group's rows,
    in first-seen order; rows without an item or a group are dropped."""
    table = read_columns(snapshot, [column, group_by])
    items = normalised(table.column(column)).to_pylist()
    groups: dict[str, dict[str, None]] = {}
    for text, group in zip(items, table.column(group_by).to_pylist(), strict=True):
        if text and group is not None:
            groups.setdefault(str(group), {}).setdefault(text, None)
    return {g: list(found) for g, found in groups.items()}
