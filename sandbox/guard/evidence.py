"""Each cell's contributors as a roaring bitmap: folded where the engine ran, read back
by the release checks (issue 25).

The evidence query gives every output row the numbers of its distinct entities
(``__entities``, a list; ``jobs.sql_evidence``). The local worker folds the list
of each row into a serialized roaring bitmap batch by batch, before it writes its
answer, so memory stays bounded by the bitmaps and the answer's size by the
compressed sets rather than by the contributions. An engine that returns the
lists themselves (Spark) has them folded by the platform the same way.
:func:`entity_bitmaps` reads either form.

Light on purpose: the worker imports this module before its task arrives.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
import pyarrow as pa
from pyroaring import BitMap

ENTITIES = "__entities"  # jobs.sql_evidence.ENTITIES (not imported: the worker stays light)


def _is_list(type_: pa.DataType) -> bool:
    return bool(pa.types.is_list(type_) or pa.types.is_large_list(type_))


def _bitmap(numbers: np.ndarray) -> BitMap:
    return BitMap(array.array("I", np.sort(numbers).tobytes()))


def _fold(lists: pa.Array) -> pa.Array:
    values = lists.values
    if values.null_count:  # a key without a number: never guess, fail closed
        raise RuntimeError("an entity of the output has no number")
    numbers = values.cast(pa.uint32()).to_numpy()
    offsets = lists.offsets.to_pylist()
    valid = lists.is_valid().to_pylist()
    # sorted first: a roaring bitmap is built from sorted numbers several times faster
    bitmaps = [
        _bitmap(numbers[offsets[r] : offsets[r + 1]]).serialize() if valid[r] else None
        for r in range(len(lists))
    ]
    return pa.array(bitmaps, type=pa.binary())


def fold_entities(data: Any) -> Any:
    """``data`` (a record batch or a table) with its ``__entities`` lists folded into
    serialized bitmaps; unchanged if it has none or they are folded already."""
    if ENTITIES not in data.schema.names:
        return data
    index = data.schema.get_field_index(ENTITIES)
    column = data.column(index)
    if not _is_list(column.type):
        return data
    if isinstance(column, pa.ChunkedArray):
        folded: Any = pa.chunked_array([_fold(chunk) for chunk in column.chunks], type=pa.binary())
    else:
        folded = _fold(column)
    return data.set_column(index, pa.field(ENTITIES, pa.binary()), folded)


def entity_bitmaps(table: pa.Table, rows: set[int] | None = None) -> list[BitMap | None]:
    """Each row's contributors (only of ``rows``, if given; None elsewhere and for a row
    without evidence)."""
    table = fold_entities(table)
    blobs = table.column(ENTITIES).to_pylist()
    return [
        BitMap.deserialize(blob) if blob is not None and (rows is None or r in rows) else None
        for r, blob in enumerate(blobs)
    ]
