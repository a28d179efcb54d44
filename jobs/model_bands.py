"""A scoring service's definition (数据服务, Art. 4): which model, and the bands of grades a
consumer may get back, never a score or a feature.

A service answers "which grade does this subject's score fall in?" with one of the
declared grades, or ``not_found``. Its bands are declared, not learnt::

    {"name": "sme_credit", "model": "credit_tree",
     "bands": [{"grade": "a", "upto": 0.05}, {"grade": "b", "upto": 0.15},
               {"grade": "c", "upto": 1.0}]}

A score ``s`` gets the first band with ``s <= upto``. Between 2 and :data:`MAX_BANDS`
bands, bounds strictly increasing, the last one 1.0, so every score has a grade.
Every band must hold at least the disclosure threshold of scored entities
(:func:`require_band_sizes`, rule ``band_size``): a grade held by a handful of
entities would single them out.

Refusal rules: ``service_definition``, ``band_size``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from policies.errors import InputError, PolicyRefusal
from policies.suggest import did_you_mean

ARTICLE = "Art. 15"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
GRADE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
NOT_FOUND = "not_found"
MAX_BANDS = 10


def _refuse(
    rule: str, message: str, subject: str | None = None, hint: str | None = None
) -> NoReturn:
    raise PolicyRefusal(rule, f"{message} ({ARTICLE})", article=ARTICLE, subject=subject, hint=hint)


@dataclass(frozen=True)
class ServiceDefinition:
    """What an operator files to publish a model as a scoring service."""

    name: str
    model: str
    grades: tuple[str, ...]
    bounds: tuple[float, ...]
    description: str = ""

    FIELDS = frozenset({"name", "model", "bands", "description"})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceDefinition:
        if not isinstance(data, Mapping):
            raise InputError("a scoring service definition is a mapping: name, model, bands")
        unknown = sorted(set(data) - cls.FIELDS)
        if unknown:
            raise InputError(
                f"unknown field '{unknown[0]}' in the service definition; "
                + did_you_mean(unknown[0], cls.FIELDS)
            )
        for needed in ("name", "model"):
            value = data.get(needed)
            if not isinstance(value, str) or not NAME_PATTERN.match(value):
                raise InputError(
                    f"the service definition needs '{needed}': lower-case letters, digits "
                    "and '_', starting with a letter"
                )
        bands = data.get("bands")
        if not isinstance(bands, Sequence) or not 2 <= len(bands) <= MAX_BANDS:
            _refuse(
                "service_definition",
                f"a scoring service declares 2 to {MAX_BANDS} bands of grades",
                subject="bands",
            )
        grades, bounds = [], []
        for band in bands:
            if not isinstance(band, Mapping) or set(band) != {"grade", "upto"}:
                raise InputError("each band is {grade: <code>, upto: <score from 0 to 1>}")
            grade, upto = band["grade"], band["upto"]
            if not isinstance(grade, str) or not GRADE_PATTERN.match(grade) or grade == NOT_FOUND:
                raise InputError(
                    "a grade is a code: lower-case letters, digits and '_' (not 'not_found')"
                )
            if isinstance(upto, bool) or not isinstance(upto, int | float):
                raise InputError(f"band '{grade}': 'upto' must be a number from 0 to 1")
            grades.append(grade)
            bounds.append(float(upto))
        if len(set(grades)) != len(grades):
            _refuse("service_definition", "the bands' grades must differ", subject="bands")
        if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)) or bounds[0] <= 0:
            _refuse(
                "service_definition",
                "the bands' upper bounds must increase strictly from above 0",
                subject="bands",
            )
        if bounds[-1] != 1.0:
            _refuse(
                "service_definition",
                "the last band's upper bound is 1.0, so that every score has a grade",
                subject="bands",
            )
        return cls(
            name=str(data["name"]),
            model=str(data["model"]),
            grades=tuple(grades),
            bounds=tuple(bounds),
            description=str(data.get("description") or "")[:500],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "bands": [
                {"grade": g, "upto": u} for g, u in zip(self.grades, self.bounds, strict=True)
            ],
            "description": self.description,
        }

    @property
    def codes(self) -> tuple[str, ...]:
        """Every answer the service may give."""
        return (*self.grades, NOT_FOUND)

    def band_of(self, scores: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """The band index of each score (the first band whose bound it does not exceed)."""
        index = np.searchsorted(np.asarray(self.bounds), np.clip(scores, 0.0, 1.0), side="left")
        return np.minimum(index, len(self.bounds) - 1).astype(np.int64)


def require_band_sizes(
    definition: ServiceDefinition, bands: npt.NDArray[np.int64], k: int
) -> list[int]:
    """Every band holds at least ``k`` scored entities (rule ``band_size``); the counts."""
    counts = [int(np.count_nonzero(bands == i)) for i in range(len(definition.grades))]
    for grade, count in zip(definition.grades, counts, strict=True):
        if count < k:
            _refuse(
                "band_size",
                f"band '{grade}' would hold fewer than {k} scored entities, the disclosure "
                "threshold; its grade would single them out",
                subject=grade,
                hint="widen the band or merge it with its neighbour",
            )
    return counts
