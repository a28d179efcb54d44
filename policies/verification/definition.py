"""A verification product's definition as filed: name, dataset, keys, codes, rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.errors import InputError
from policies.suggest import did_you_mean
from policies.verification.common import (
    CODE_PATTERN,
    DEFAULT_MISS_CODES,
    MAX_KEYS,
    NAME_PATTERN,
    refuse,
)


@dataclass(frozen=True)
class Definition:
    """What an operator files: the question, as data."""

    name: str
    dataset: str
    keys: tuple[str, ...]
    codes: tuple[str, ...]
    rule: str
    miss_codes: tuple[str, ...] = ()
    person_level: bool | None = None  # None: decided from the key columns' formats
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Definition:
        known = {
            "name",
            "dataset",
            "keys",
            "codes",
            "rule",
            "miss_codes",
            "person_level",
            "description",
        }
        if not isinstance(data, Mapping):
            raise InputError("a verification definition is a mapping: " + ", ".join(sorted(known)))
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown field '{unknown[0]}' in the definition; "
                + did_you_mean(unknown[0], known)
            )
        for needed in ("name", "dataset", "keys", "codes", "rule"):
            if not data.get(needed):
                raise InputError(f"the definition needs '{needed}'")
        name = str(data["name"])
        if not NAME_PATTERN.match(name):
            raise InputError(
                f"product name '{name[:64]}': lower-case letters, digits and '_', "
                "starting with a letter"
            )
        keys = tuple(str(k) for k in data["keys"])
        codes = tuple(str(c) for c in data["codes"])
        if not 1 <= len(keys) <= MAX_KEYS or len(set(keys)) != len(keys):
            raise InputError(f"the definition needs 1 to {MAX_KEYS} distinct key columns")
        if len(codes) < 2 or len(set(codes)) != len(codes):
            raise InputError("the definition needs at least two distinct codes")
        for code in codes:
            if not CODE_PATTERN.match(code):
                raise InputError(
                    f"code '{code[:40]}': lower-case letters, digits and '_' (a code, not a value)"
                )
        miss = data.get("miss_codes")
        miss_codes = (
            tuple(str(c) for c in miss)
            if miss is not None
            else tuple(c for c in DEFAULT_MISS_CODES if c in codes)
        )
        for code in miss_codes:
            if code not in codes:
                raise InputError(f"miss code '{code}' is not a declared code")
        person = data.get("person_level")
        return cls(
            name=name,
            dataset=str(data["dataset"]),
            keys=keys,
            codes=codes,
            rule=str(data["rule"]),
            miss_codes=miss_codes,
            person_level=None if person is None else bool(person),
            description=str(data.get("description") or ""),
        )

    def require_misses(self, unknown_code: str | None = None) -> None:
        """A mismatch is always a miss: the definition must name its miss codes, among them
        ``mismatch`` and ``not_found`` when it declares them, and (once the index knows it)
        the code of an unknown subject. Refused otherwise (rule ``miss_codes``): the
        per-consumer defence counts misses, and ``miss_codes: []`` once let guesses through
        uncounted. Calls count structural misses anyway (``sandbox.verification``)."""
        if not self.miss_codes:
            refuse(
                "miss_codes",
                f"product '{self.name}' declares no miss codes; the codes that say 'not this "
                "subject' or 'no such subject' are misses, and no definition may turn their "
                "counting off",
                subject="miss_codes",
                hint="list them under miss_codes, e.g. [mismatch, not_found]",
            )
        for code in (*DEFAULT_MISS_CODES, unknown_code):
            if code is not None and code in self.codes and code not in self.miss_codes:
                refuse(
                    "miss_codes",
                    f"product '{self.name}': code '{code}' says the subject or value is not "
                    "known, so it is a miss; it must be among miss_codes",
                    subject="miss_codes",
                    hint=f"add '{code}' to miss_codes",
                )

    def to_dict(self) -> dict[str, Any]:

        return {
            "name": self.name,
            "dataset": self.dataset,
            "keys": list(self.keys),
            "codes": list(self.codes),
            "rule": self.rule,
            "miss_codes": list(self.miss_codes),
            "person_level": self.person_level,
            "description": self.description,
        }
