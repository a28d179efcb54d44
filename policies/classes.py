"""Column classes and the classification a provider files with each dataset.

A classification says, for every column of a dataset, which class it belongs to
(DESIGN.md, "Column classes"), which column is the entity key (the person or
enterprise whose contributions are counted), and optionally a format that the
quality profile checks (``cn_resident_id``: GB 11643, ``cn_credit_code``:
GB 32100). Unclassified columns are refused: default deny.

The YAML file looks like::

    entity_key: pid
    columns:
      pid: identifier
      name: identifier
      birth_date: quasi
      county: dimension
      income: measure
    formats:
      pid: cn_resident_id
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import ClassificationError


class ColumnClass(StrEnum):
    IDENTIFIER = "identifier"
    QUASI = "quasi"
    DIMENSION = "dimension"
    MEASURE = "measure"
    PUBLIC = "public"


FORMATS = {
    "cn_resident_id": "GB 11643 resident identity number (18 characters, check digit)",
    "cn_credit_code": "GB 32100 unified social credit code (18 characters, check character)",
}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A short suggestion for a misspelt name, or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known: " + ", ".join(known)


@dataclass(frozen=True)
class Classification:
    """The provider's statement about each column of one dataset."""

    columns: Mapping[str, ColumnClass]
    entity_key: str
    formats: Mapping[str, str] = field(default_factory=dict)

    def class_of(self, column: str) -> ColumnClass:
        return self.columns[column]

    def to_dict(self) -> dict:
        return {
            "entity_key": self.entity_key,
            "columns": {name: cls.value for name, cls in self.columns.items()},
            "formats": dict(self.formats),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Classification:
        """Parse and validate the shape of a classification (not yet its fit to data)."""
        if not isinstance(data, Mapping):
            raise ClassificationError(
                "the classification must be a mapping with 'columns' and 'entity_key'"
            )
        unknown_keys = set(data) - {"columns", "entity_key", "formats"}
        if unknown_keys:
            key = sorted(unknown_keys)[0]
            raise ClassificationError(
                f"unknown key '{key}' in the classification; "
                + did_you_mean(key, ["columns", "entity_key", "formats"])
            )
        raw_columns = data.get("columns")
        if not isinstance(raw_columns, Mapping) or not raw_columns:
            raise ClassificationError(
                "the classification needs 'columns': a mapping of column name to class"
            )
        known = [c.value for c in ColumnClass]
        columns: dict[str, ColumnClass] = {}
        for name, value in raw_columns.items():
            try:
                columns[str(name)] = ColumnClass(str(value).strip().lower())
            except ValueError:
                raise ClassificationError(
                    f"column '{name}': unknown class '{value}'; " + did_you_mean(str(value), known)
                ) from None
        entity_key = data.get("entity_key")
        if not entity_key:
            raise ClassificationError(
                "the classification needs 'entity_key': the column naming the person or enterprise"
            )
        if entity_key not in columns:
            raise ClassificationError(
                f"entity_key '{entity_key}' is not among the classified columns; "
                + did_you_mean(str(entity_key), columns)
            )
        formats = dict(data.get("formats") or {})
        for name, fmt in formats.items():
            if name not in columns:
                raise ClassificationError(
                    f"format declared for column '{name}', which is not classified; "
                    + did_you_mean(str(name), columns)
                )
            if fmt not in FORMATS:
                raise ClassificationError(
                    f"column '{name}': unknown format '{fmt}'; " + did_you_mean(str(fmt), FORMATS)
                )
        return cls(columns=columns, entity_key=str(entity_key), formats=formats)

    def check_against(self, column_names: Iterable[str]) -> None:
        """Refuse unless the classification covers exactly the data's columns."""
        names = list(column_names)
        for name in names:
            if name not in self.columns:
                raise ClassificationError(
                    f"column '{name}' of the data is not classified (default deny, Art. 15); "
                    "add it to 'columns' with one of: " + ", ".join(c.value for c in ColumnClass),
                    article="Art. 15",
                )
        for name in self.columns:
            if name not in names:
                raise ClassificationError(
                    f"column '{name}' is classified but missing from the data; "
                    + did_you_mean(name, names)
                )
