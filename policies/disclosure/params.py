"""The disclosure rules' parameters (platform settings, only ever tightened by a grant or
an agreement) and the verdicts a cell and an output can get.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from policies.errors import ConfigError, PolicyRefusal
from policies.suggest import did_you_mean

ARTICLE = "Art. 15"
COUNTS = frozenset({"count", "count_star", "count_distinct"})


class CellVerdict(Enum):
    PASS = "pass"
    SUPPRESS = "suppress"
    REVIEW = "review"


class OutputVerdict(Enum):
    RELEASED = "released"
    RELEASED_WITH_SUPPRESSIONS = "released_with_suppressions"
    HELD_FOR_REVIEW = "held_for_review"
    REFUSED = "refused"


class Mitigation(Enum):
    SUPPRESS = "suppress"
    ROUND_10_5 = "round_10_5"  # suppress below 10, round the other COUNT cells to a base


# Strictness orders for check_not_below / tightened: later is stricter.
# REVIEW is weaker than SUPPRESS for zero cells: a reviewer may still release a
# reviewed zero, a suppressed one never leaves.
_ZERO_ORDER = (CellVerdict.PASS, CellVerdict.REVIEW, CellVerdict.SUPPRESS)
_MITIGATION_ORDER = (Mitigation.SUPPRESS, Mitigation.ROUND_10_5)


@dataclass(frozen=True)
class DisclosureParams:
    """The disclosure parameters of one output check.

    Stricter means "suppresses at least the same cells": a higher
    ``min_entities``, ``dominance_n``, ``p_ratio`` and ``rounding_base``, a lower
    ``dominance_k``, rounding over plain suppression, and for zeros and missing
    values PASS < REVIEW < SUPPRESS. A larger ``dominance_n`` is *stricter* at the same
    ``k``: the top two always hold at least the top one's share.
    """

    min_entities: int = field(default=10, metadata={"help": "fewest entities per cell and row"})
    dominance_n: int = field(default=2, metadata={"help": "(n, k) rule: how many top entities"})
    dominance_k: float = field(default=0.90, metadata={"help": "(n, k) rule: largest share"})
    p_ratio: float = field(default=0.10, metadata={"help": "p% rule: least uncertainty"})
    mitigation: Mitigation = field(
        default=Mitigation.SUPPRESS, metadata={"help": "suppress, or round_10_5 for counts"}
    )
    rounding_base: int = field(default=5, metadata={"help": "base of ROUND_10_5 rounding"})
    zero_cells: CellVerdict = field(
        default=CellVerdict.REVIEW, metadata={"help": "verdict for COUNT cells equal to 0"}
    )
    # ACRO's check_missing_values: off (pass, a note) by default, as in ACRO
    missing_cells: CellVerdict = field(
        default=CellVerdict.PASS,
        metadata={"help": "verdict for cells that left out rows with a missing value"},
    )
    # The class rule and the interval audit (docs/disclosure.md, "Interval audit")
    class_share: float = field(
        default=0.90,
        metadata={"help": "class rule: suppress a count cell holding this share of a margin"},
    )
    protection_share: float = field(
        default=0.10,
        metadata={"help": "interval audit: protection as a share of a suppressed cell's value"},
    )
    protection_minimum: float = field(
        default=1.0, metadata={"help": "interval audit: least protection on each side"}
    )

    def __post_init__(self) -> None:
        for name in ("min_entities", "dominance_n", "rounding_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"disclosure parameter '{name}' must be a whole number")
        for name in (
            "dominance_k",
            "p_ratio",
            "class_share",
            "protection_share",
            "protection_minimum",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ConfigError(f"disclosure parameter '{name}' must be a number")
        if not isinstance(self.mitigation, Mitigation):
            raise ConfigError("disclosure parameter 'mitigation' must be a Mitigation")
        for name in ("zero_cells", "missing_cells"):
            if not isinstance(getattr(self, name), CellVerdict):
                raise ConfigError(f"disclosure parameter '{name}' must be a CellVerdict")
        if self.min_entities < 1:
            raise ConfigError("disclosure parameter 'min_entities' must be at least 1")
        if self.dominance_n not in (1, 2):
            raise ConfigError(
                "disclosure parameter 'dominance_n' must be 1 or 2: the evidence carries "
                "the two largest contributions only"
            )
        if not 0 < self.dominance_k <= 1:
            raise ConfigError("disclosure parameter 'dominance_k' must be above 0 and at most 1")
        if not 0 <= self.p_ratio <= 1:
            raise ConfigError("disclosure parameter 'p_ratio' must be between 0 and 1")
        if not 0 < self.class_share <= 1:
            raise ConfigError("disclosure parameter 'class_share' must be above 0 and at most 1")
        if not 0 <= self.protection_share <= 1 or self.protection_minimum < 0:
            raise ConfigError(
                "disclosure parameters 'protection_share' (0 to 1) and 'protection_minimum' "
                "(at least 0) are out of range"
            )
        if self.rounding_base < 1:
            raise ConfigError("disclosure parameter 'rounding_base' must be at least 1")
        if self.mitigation is Mitigation.ROUND_10_5 and self.min_entities < 10:
            raise ConfigError(
                "disclosure parameter 'min_entities' must be at least 10 with mitigation "
                "'round_10_5', which suppresses counts below 10"
            )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["mitigation"] = self.mitigation.value
        out["zero_cells"] = self.zero_cells.value
        out["missing_cells"] = self.missing_cells.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DisclosureParams:
        """Parse a mapping (from YAML, the store or an agreement); missing keys keep defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError("disclosure parameters must be a mapping of name to value")
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(
                    f"unknown disclosure parameter '{key}'; " + did_you_mean(str(key), known)
                )
            if key == "mitigation":
                value = _enum(Mitigation, key, value)
            elif key in ("zero_cells", "missing_cells"):
                value = _enum(CellVerdict, key, value)
            values[key] = value
        return cls(**values)

    def tightened(self, overrides: Mapping[str, Any]) -> DisclosureParams:
        """These parameters made stricter by an agreement's ``overrides``.

        Each parameter named in ``overrides`` (validated on its own, as by
        :meth:`from_dict`) takes the stricter of the two values, so an agreement
        can raise strictness but never lower it: the result always passes
        ``result.check_not_below(self)``.
        """
        asked = DisclosureParams.from_dict(overrides)
        stricter = {
            name: _stricter(name, getattr(self, name), getattr(asked, name)) for name in overrides
        }
        return replace(self, **stricter)

    def check_not_below(self, minimums: DisclosureParams) -> None:
        """Refuse parameters weaker than the authority's minimums (Art. 15).

        Compared one parameter at a time; each must be at least as strict.
        """
        weaker = [
            name
            for name in _ORDER
            if _stricter(name, getattr(self, name), getattr(minimums, name)) != getattr(self, name)
        ]
        if weaker:
            described = ", ".join(
                f"{name} {_show(getattr(self, name))} (minimum {_show(getattr(minimums, name))})"
                for name in weaker
            )
            raise PolicyRefusal(
                "disclosure_minimum",
                f"disclosure parameters weaker than the authority's minimum: {described}",
                article=ARTICLE,
                subject=weaker[0],
                hint="use parameters at least as strict as the authority's",
            )


def _enum(kind: type[Enum], key: str, value: object) -> Enum:
    if isinstance(value, kind):
        return value
    text = str(value).strip().lower()
    try:
        return kind(text)
    except ValueError:
        names = [m.value for m in kind]
        raise ConfigError(
            f"disclosure parameter '{key}': unknown value '{value}'; " + did_you_mean(text, names)
        ) from None


def _show(value: object) -> str:
    return value.value if isinstance(value, Enum) else str(value)


# name -> key whose larger value is stricter.
_ORDER: dict[str, Callable[[Any], Any]] = {
    "min_entities": lambda v: v,
    "dominance_n": lambda v: v,
    "dominance_k": lambda v: -v,
    "p_ratio": lambda v: v,
    "mitigation": _MITIGATION_ORDER.index,
    "rounding_base": lambda v: v,
    "zero_cells": _ZERO_ORDER.index,
    "missing_cells": _ZERO_ORDER.index,
    "class_share": lambda v: -v,
    "protection_share": lambda v: v,
    "protection_minimum": lambda v: v,
}


def _stricter(name: str, a: Any, b: Any) -> Any:
    return b if _ORDER[name](b) > _ORDER[name](a) else a
