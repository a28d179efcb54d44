"""Declared domains of columns, and what table mode computes from them alone.

A provider may declare, in the classification file (``domains``, see
:mod:`policies.classes`), the values a dimension, quasi or public column can
take: a code list, integer bands, or a range of years or integers. Table mode
(docs/disclosure.md, "Declared grids") lists every combination of
its grouping keys' declared values, so a row's presence says nothing, and caps
the grid's size from the domain sizes before the run. Everything here depends
only on the declared metadata, never on the data, except :func:`values_outside`
and :func:`check_values`, which check data against its declaration when a
dataset is registered.

- :class:`Codes`: the column's values are these codes (text, numbers or
  booleans; a date column's codes are ISO dates as text, ``"2025-01-01"``).
- :class:`Bands`: the column holds integers in ``[edges[0], edges[-1])``; its
  generalised value is the lower edge of the band a value falls in.
- :class:`Range`: integers ``start..stop`` inclusive; on a date column the
  range declares its years (the generalised value is the year).

A column is named by ``(dataset, column)``; ``classifications`` maps dataset
names to their :class:`~policies.classes.Classification`. The file's shape of a
domain (:class:`DomainSpec`, pydantic) is here too; :mod:`policies.classes`
parses the whole file with it and names the column in every message.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from .errors import ClassificationError

# The most values one declared domain may have (codes, bands or years): a code list
# of a few thousand values is a classification (GB/T 4754 classes, districts), more
# is a list of values seen, which is not a declared domain.
MAX_DOMAIN_VALUES = 5000

Code = bool | int | float | str
ColumnRef = tuple[str, str]  # (dataset, column)


class Classification(Protocol):
    """What this module reads of a :class:`policies.classes.Classification` (which
    imports this module, so it is not imported here)."""

    @property
    def columns(self) -> Mapping[str, Any]: ...
    @property
    def domains(self) -> Mapping[str, Domain]: ...
    @property
    def entity_kind(self) -> str | None: ...


@dataclass(frozen=True)
class Codes:
    """The column's values are these codes."""

    values: tuple[Code, ...]


@dataclass(frozen=True)
class Bands:
    """Integer bands ``[edges[i], edges[i + 1])``; a value is generalised to its lower edge."""

    edges: tuple[int, ...]

    @property
    def width(self) -> int | None:
        """The common width of the bands, if they are all equally wide."""
        widths = {b - a for a, b in zip(self.edges, self.edges[1:], strict=False)}
        return widths.pop() if len(widths) == 1 else None


@dataclass(frozen=True)
class Range:
    """Integers (or the years of dates) from ``start`` to ``stop``, both included."""

    start: int
    stop: int


Domain = Codes | Bands | Range


def canonical(value: Any) -> str:
    """The text a code or a data value is compared as: ``true``, ``12``, ``1.5``, ``2025-01-01``.

    An integral float reads as its integer (a CSV column of whole numbers may be
    read as floats), a date or a time as its ISO text.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def domain_to_dict(domain: Domain) -> dict[str, Any]:
    """The domain as the classification file writes it (bands of one width as from/to/width)."""
    if isinstance(domain, Codes):
        return {"codes": list(domain.values)}
    if isinstance(domain, Range):
        return {"range": {"from": domain.start, "to": domain.stop}}
    width = domain.width
    if width is not None:
        return {"bands": {"from": domain.edges[0], "to": domain.edges[-1], "width": width}}
    return {"bands": {"edges": list(domain.edges)}}


def domain_size(domain: Domain) -> int:
    """How many values the domain has: codes, bands, or integers of the range."""
    if isinstance(domain, Codes):
        return len(domain.values)
    if isinstance(domain, Bands):
        return len(domain.edges) - 1
    return domain.stop - domain.start + 1


def declared_values(domain: Domain) -> list[Code]:
    """The declared values, in their declared order: the codes, the bands' lower
    edges (the generalised value of a banded column), or the range's integers."""
    if isinstance(domain, Codes):
        return list(domain.values)
    if isinstance(domain, Bands):
        return list(domain.edges[:-1])
    return list(range(domain.start, domain.stop + 1))


# --- the file's shape of a domain --------------------------------------------------------------

DOMAIN_KEYS = ("codes", "bands", "range")
BAND_KEYS = ("from", "to", "width", "edges")


def _one_of(*keys: str) -> dict[str, Any]:
    return {"oneOf": [{"required": [key]} for key in keys]}


class BandsSpec(BaseModel):
    """Integer bands: ``from``, ``to`` and ``width``, or explicit ``edges``."""

    model_config = ConfigDict(
        extra="forbid", title="Bands", json_schema_extra=_one_of("width", "edges")
    )

    start: StrictInt | None = Field(None, alias="from", description="The lowest edge.")
    to: StrictInt | None = Field(None, description="The highest edge (values stay below it).")
    width: StrictInt | None = Field(None, description="The width of every band, positive.")
    edges: list[StrictInt] | None = Field(
        None,
        description="Instead of from/to/width: the edges, increasing; band i is [edge i, edge i+1).",
    )

    @model_validator(mode="after")
    def _fits(self) -> BandsSpec:
        if self.edges is not None:
            if (self.start, self.to, self.width) != (None, None, None):
                raise ValueError("bands take either 'edges' or 'from', 'to' and 'width', not both")
            if len(self.edges) < 2 or any(b <= a for a, b in pairwise(self.edges)):
                raise ValueError("bands need at least two edges, each above the one before")
            count = len(self.edges) - 1
        else:
            given = {"from": self.start, "to": self.to, "width": self.width}
            missing = [key for key, value in given.items() if value is None]
            if missing:
                raise ValueError(
                    f"bands need 'from', 'to' and 'width' (or 'edges'); '{missing[0]}' is missing"
                )
            start, to, width = self.start or 0, self.to or 0, self.width or 0
            if width <= 0:
                raise ValueError(f"bands need a positive width, not {width}")
            if to <= start:
                raise ValueError(f"bands need 'to' above 'from', not {to} after {start}")
            if (to - start) % width:
                raise ValueError(f"bands: 'to' - 'from' must be a multiple of the width {width}")
            count = (to - start) // width
        if count > MAX_DOMAIN_VALUES:
            raise ValueError(f"{count} bands, more than {MAX_DOMAIN_VALUES}")
        return self

    def edge_list(self) -> list[int]:
        if self.edges is not None:
            return list(self.edges)
        start, to, width = self.start or 0, self.to or 0, self.width or 1
        return list(range(start, to + 1, width))


class RangeSpec(BaseModel):
    """Integers, or the years of a date column, from ``from`` to ``to``, both included."""

    model_config = ConfigDict(extra="forbid", title="Range")

    start: StrictInt = Field(
        alias="from", description="The first value (a year for a date column)."
    )
    to: StrictInt = Field(description="The last value, included.")

    @model_validator(mode="after")
    def _fits(self) -> RangeSpec:
        if self.to < self.start:
            raise ValueError(f"range: 'to' ({self.to}) is before 'from' ({self.start})")
        if self.to - self.start + 1 > MAX_DOMAIN_VALUES:
            raise ValueError(
                f"range of {self.to - self.start + 1} values, more than {MAX_DOMAIN_VALUES}"
            )
        return self


class DomainSpec(BaseModel):
    """One declared domain: exactly one of ``codes``, ``bands``, ``range``."""

    model_config = ConfigDict(
        extra="forbid", title="Domain", json_schema_extra=_one_of(*DOMAIN_KEYS)
    )

    codes: list[Code] | None = Field(
        None,
        description=(
            f"The column's values: text, numbers or booleans, 1 to {MAX_DOMAIN_VALUES}, no "
            "duplicates; a date column's codes are ISO dates as text ('2025-01-01')."
        ),
    )
    bands: BandsSpec | None = Field(
        None, description="Integer bands; the generalised value is a band's lower edge."
    )
    range_: RangeSpec | None = Field(
        None, alias="range", description="Integers from..to; on a date column, its years."
    )

    @field_validator("codes", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):  # YAML reads 2025-01-01 as a date
            return [canonical(v) if isinstance(v, dt.date) else v for v in value]
        return value

    @model_validator(mode="after")
    def _fits(self) -> DomainSpec:
        given = [
            key
            for key, v in zip(DOMAIN_KEYS, (self.codes, self.bands, self.range_), strict=True)
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "a domain has exactly one of 'codes', 'bands', 'range'"
                + (f", not {' and '.join(given)}" if given else "")
            )
        if self.codes is not None:
            _check_codes(self.codes)
        return self

    def domain(self) -> Domain:
        if self.codes is not None:
            return Codes(tuple(self.codes))
        if self.bands is not None:
            return Bands(tuple(self.bands.edge_list()))
        assert self.range_ is not None
        return Range(self.range_.start, self.range_.to)


def _check_codes(codes: list[Code]) -> None:
    if not codes:
        raise ValueError("the code list is empty")
    if len(codes) > MAX_DOMAIN_VALUES:
        raise ValueError(f"{len(codes)} codes, more than {MAX_DOMAIN_VALUES}")
    kinds = {
        "booleans" if isinstance(c, bool) else "text" if isinstance(c, str) else "numbers"
        for c in codes
    }
    if len(kinds) > 1:
        raise ValueError(
            f"the codes mix {' and '.join(sorted(kinds))}; quote numbers to make them text"
        )
    seen: set[str] = set()
    for code in codes:
        text = canonical(code)
        if text in seen:
            raise ValueError(f"code {text!r} is listed twice")
        seen.add(text)


# --- grids -------------------------------------------------------------------------------------


def domain_of(column: ColumnRef, classifications: Mapping[str, Classification]) -> Domain | None:
    """The declared domain of ``(dataset, column)``, or None when none is declared."""
    dataset, name = column
    if dataset not in classifications:
        raise KeyError(f"dataset '{dataset}' is not among the classifications given")
    classification = classifications[dataset]
    if name not in classification.columns:
        raise KeyError(f"column '{name}' is not a column of dataset '{dataset}'")
    return classification.domains.get(name)


def grid_size(
    columns: Sequence[ColumnRef], classifications: Mapping[str, Classification]
) -> int | None:
    """The number of cells of the grid over ``columns``: the product of their domain
    sizes (1 for no column), or None when a column has no declared domain (such an
    output cannot list its grid: it goes to review)."""
    size = 1
    for column in columns:
        domain = domain_of(column, classifications)
        if domain is None:
            return None
        size *= domain_size(domain)
    return size


def grid(
    columns: Sequence[ColumnRef],
    classifications: Mapping[str, Classification],
    *,
    names: Sequence[str] | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Every combination of the declared values of ``columns``, one row each.

    Rows come in the order of :func:`itertools.product` over the declared values
    (the first column varies slowest); the table's columns are named ``names`` or
    the columns' names. Raises :class:`ClassificationError` when a column has no
    declared domain, or when the grid has more than ``limit`` cells (decided from
    the declaration before anything is built).
    """
    names = [c for _, c in columns] if names is None else list(names)
    if len(names) != len(columns):
        raise ValueError("grid: one name is needed per column")
    size = grid_size(columns, classifications)
    if size is None:
        undeclared = [f"{d}.{c}" for d, c in columns if domain_of((d, c), classifications) is None]
        raise ClassificationError(
            f"column '{undeclared[0]}' has no declared domain; values seen in the data "
            "are not a declared domain, so the output's grid cannot be listed"
        )
    if limit is not None and size > limit:
        raise ClassificationError(
            f"the grid over {', '.join(names) or 'no column'} has {size} cells by the declared "
            f"domains, more than the limit of {limit}"
        )
    arrays = []
    repeat = size
    for column in columns:
        domain = domain_of(column, classifications)
        assert domain is not None  # grid_size said every column has one
        values = pa.array(declared_values(domain))
        n = len(values)
        repeat //= n
        index = np.tile(np.repeat(np.arange(n, dtype=np.int64), repeat), size // (n * repeat))
        arrays.append(values.take(pa.array(index)))
    return pa.table(arrays, names=names) if columns else pa.table({})


def is_person_job(classifications_reached: Iterable[Classification]) -> bool:
    """Whether a job reaching these datasets is a person job: True when any of them
    is a person dataset or does not declare its entity kind (undeclared is treated as
    person), and when none is given; False only when every one is an organisation."""
    kinds = [c.entity_kind for c in classifications_reached]
    return not kinds or any(kind != "organisation" for kind in kinds)


# --- data against its declaration ----------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, dt.date):  # a datetime is a date too
        return value.year
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _inside(value: Any, domain: Domain, codes: frozenset[str]) -> bool:
    if isinstance(domain, Codes):
        return canonical(value) in codes
    if isinstance(domain, Range):
        year = _as_int(value)
        return year is not None and domain.start <= year <= domain.stop
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    return domain.edges[0] <= value < domain.edges[-1]


def values_outside(
    values: pa.Array | pa.ChunkedArray, domain: Domain, *, limit: int = 3
) -> tuple[int, list[Any]]:
    """How many distinct non-null values of ``values`` lie outside ``domain``, and up
    to ``limit`` of them (the smallest first). Nulls are missing values, not outside."""
    distinct = pc.unique(values).drop_null().to_pylist()
    codes = (
        frozenset(canonical(c) for c in domain.values) if isinstance(domain, Codes) else frozenset()
    )
    outside = [v for v in distinct if not _inside(v, domain, codes)]
    outside.sort(key=canonical)
    return len(outside), outside[:limit]


def check_values(data: pa.Table | pa.RecordBatch, classification: Classification) -> None:
    """Refuse data whose columns hold values outside their declared domains.

    Meant for a dataset's registration, batch by batch as the snapshot is written
    (one ``pc.unique`` per declared column and batch). The message names the
    column and, except for a quasi-identifier, a few of the values outside.
    """
    for name, domain in classification.domains.items():
        if name not in data.column_names:
            continue  # check_against names a missing column
        count, examples = values_outside(data.column(name), domain)
        if not count:
            continue
        kind = next(iter(domain_to_dict(domain)))
        shown = ""
        if classification.columns[name].value != "quasi":
            shown = (
                " ("
                + ", ".join(repr(canonical(v)) for v in examples)
                + (", ..." if count > len(examples) else "")
                + ")"
            )
        raise ClassificationError(
            f"column '{name}': {count} value(s) of the data outside its declared {kind}{shown}; "
            f"widen domains.{name} or correct the data"
        )
