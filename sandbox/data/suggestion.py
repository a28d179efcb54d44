"""A suggested classification for a provider's source (``sandbox dataset suggest``).

The provider names a source; :func:`connectors.suggest.suggest` profiles its first rows
and proposes a class for every column with the evidence. Nothing is registered: the
provider edits the proposal and registers with it (:func:`sandbox.data.vault.register`).
The suggestion is ledgered (the source, the rows read, the classes proposed), never
its code lists: those are values of the data.
"""

from __future__ import annotations

from typing import Any

from connectors.suggest import DEFAULT_ROWS, MAX_CODES, suggest, to_yaml
from policies.errors import InputError
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role

MAX_ROWS = 10_000_000


def suggest_classification(
    platform: Platform, provider: Principal, uri: str, *, rows: int | None = None
) -> dict[str, Any]:
    """source, rows, complete, classification, evidence, notes and the YAML text to edit."""
    require_role(provider, Role.PROVIDER, action="profile sources", article="Art. 14")
    rows = DEFAULT_ROWS if rows is None else rows
    if not 1 <= rows <= MAX_ROWS:
        raise InputError(f"rows: read between 1 and {MAX_ROWS:,} rows, not {rows:,}")
    result = suggest(uri, rows=rows, max_codes=MAX_CODES)
    out = result.to_dict()
    out["yaml"] = to_yaml(result)
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            provider.actor,
            "dataset.suggest",
            f"source:{result.source}",
            {
                "rows": result.rows,
                "complete": result.complete,
                "classes": {c.name: c.cls for c in result.columns},
            },
            "Art. 14",
        )
    return out
