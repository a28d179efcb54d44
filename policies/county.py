"""The county column of a dataset: which column names each row's county (Art. 5).

A provider declares it in the classification (``county: {column, codes}``). A county
authority's agreement reads only the rows of its county, cut by this declaration
(``sandbox.data.places``); a dataset without one cannot be read under a county agreement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


@dataclass(frozen=True)
class CountyColumn:
    """Which column names each row's county, and how: ``codes`` maps a county's
    6-digit code to the column's value for it; empty, the column holds the codes."""

    column: str
    codes: Mapping[str, str] = field(default_factory=dict)

    def value_of(self, county: str) -> str | None:
        """The column's value for ``county``; None when the provider declared no value
        for it (its rows cannot be told apart, so a county job may not read them)."""
        if not self.codes:
            return county
        return self.codes.get(county)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column}
        if self.codes:
            out["codes"] = dict(self.codes)
        return out


class CountySpec(BaseModel):
    """The ``county`` declaration: the column naming each row's county (Art. 5)."""

    model_config = ConfigDict(extra="forbid", title="County")

    column: str = Field(
        min_length=1,
        description="The dimension, quasi or public column that names each row's county.",
    )
    codes: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Optional: each county's 6-digit code -> the column's value for it (e.g. "
            "'370811': 任城区); omitted, the column holds the 6-digit codes themselves."
        ),
    )

    @field_validator("codes", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            return value
        return {str(code): str(given) for code, given in value.items()}

    @field_validator("codes")
    @classmethod
    def _six_digits(cls, value: dict[str, str]) -> dict[str, str]:
        for code in value:
            if not (len(code) == 6 and code.isdigit()):
                raise ValueError(
                    f"county, codes: '{code}' is not a county's 6-digit code (e.g. 370811)"
                )
        if len(set(value.values())) != len(value):
            raise ValueError("county, codes: two counties have the same value")
        return value
