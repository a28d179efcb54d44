"""What every part of a verification product shares: its states, the consumer's
standing, the names and limits of a definition, and the refusal helper.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import NoReturn

from policies.errors import PolicyRefusal

ARTICLE = "Art. 15"
DIALECT = "duckdb"
CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DEFAULT_MISS_CODES = ("mismatch", "not_found")
MAX_KEYS = 4
NORMALISE_FN = "vnorm"  # the DuckDB UDF the platform registers (sandbox.verification.keys)


class ProductState(StrEnum):
    """``defined -> published | rejected``; ``published -> withdrawn -> published``."""

    DEFINED = "defined"
    PUBLISHED = "published"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


TRANSITIONS: Mapping[ProductState, frozenset[ProductState]] = {
    ProductState.DEFINED: frozenset({ProductState.PUBLISHED, ProductState.REJECTED}),
    ProductState.PUBLISHED: frozenset({ProductState.WITHDRAWN, ProductState.PUBLISHED}),
    ProductState.WITHDRAWN: frozenset({ProductState.PUBLISHED}),
    ProductState.REJECTED: frozenset(),
}


def may_move(old: ProductState, new: ProductState) -> bool:
    return new in TRANSITIONS[old]


class Standing(StrEnum):
    """A consumer's standing under the enumeration defence."""

    OK = "ok"
    THROTTLED = "throttled"
    BLOCKED = "blocked"


def refuse(
    rule: str, message: str, subject: str | None = None, hint: str | None = None
) -> NoReturn:

    raise PolicyRefusal(rule, f"{message} ({ARTICLE})", article=ARTICLE, subject=subject, hint=hint)
