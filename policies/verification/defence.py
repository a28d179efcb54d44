"""A caller's consent record and the enumeration defence's verdicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.errors import PolicyRefusal
from policies.verification.common import Standing


@dataclass(frozen=True)
class Consent:
    """The data subject's consent (Art. 19): who consented, for what purpose, when, and the
    consumer's reference to its record. ``who`` names the consenting party (``subject``,
    ``guardian``, an id in the consumer's records), never a key value."""

    reference: str
    who: str
    purpose: str
    given_at: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Consent:
        if not isinstance(data, Mapping):
            raise PolicyRefusal(
                "consent_required",
                "a person-level verification needs the subject's consent: "
                "reference, who, purpose, given_at",
                article="Art. 19",
                subject="consent",
            )
        values: dict[str, str] = {}
        for name in ("reference", "who", "purpose", "given_at"):
            value = data.get(name)
            if not isinstance(value, str) or not value.strip() or len(value) > 500:
                raise PolicyRefusal(
                    "consent_required",
                    f"the consent needs '{name}' (text, at most 500 characters)",
                    article="Art. 19",
                    subject=f"consent.{name}",
                )
            values[name] = value.strip()
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "who": self.who,
            "purpose": self.purpose,
            "given_at": self.given_at,
        }


# --------------------------------------------------------------------------- the defence


@dataclass(frozen=True)
class Thresholds:
    """When guessing shows: settings ``verify.*`` (docs/settings.md)."""

    guess_ids_throttle: int = 3
    guess_ids_block: int = 5
    miss_min_calls: int = 50
    miss_share_throttle: float = 0.6
    miss_share_block: float = 0.9


@dataclass(frozen=True)
class Signals:
    """One consumer's signals today, including the call being decided."""

    missed_ids_for_one_name: int  # the most distinct subjects missed for one check value
    calls: int
    misses: int


def assess(signals: Signals, limits: Thresholds) -> tuple[Standing, str]:
    """The standing the signals call for, and why (no key values in the words)."""
    ids = signals.missed_ids_for_one_name
    share = signals.misses / signals.calls if signals.calls else 0.0
    enough = signals.calls >= limits.miss_min_calls
    if ids >= limits.guess_ids_block:
        return Standing.BLOCKED, f"{ids} different subjects tried without a match for one name"
    if enough and share >= limits.miss_share_block:
        return Standing.BLOCKED, f"{share:.0%} of {signals.calls} answers today were misses"
    if ids >= limits.guess_ids_throttle:
        return Standing.THROTTLED, f"{ids} different subjects tried without a match for one name"
    if enough and share >= limits.miss_share_throttle:
        return Standing.THROTTLED, f"{share:.0%} of {signals.calls} answers today were misses"
    return Standing.OK, ""


def worse(a: Standing, b: Standing) -> Standing:
    order = [Standing.OK, Standing.THROTTLED, Standing.BLOCKED]
    return max(a, b, key=order.index)
