"""A pydantic validation error of a classification file, told as one sentence: the first
problem in the order of the file's keys, naming the column and the key, with a
suggestion where a name is near a known one (:func:`first_problem`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from policies.suggest import did_you_mean

from .domains import BAND_KEYS, DOMAIN_KEYS


def first_problem(
    exc: ValidationError, keys: Sequence[str], formats: Collection[str], classes: Collection[str]
) -> str:
    """The message of the first problem, in the order of the file's keys."""
    order = {"": 0, "columns": 2, "entity_key": 3, **{k: i + 2 for i, k in enumerate(keys)}}
    errors = exc.errors(include_url=False)
    ranked = sorted(
        errors,
        key=lambda e: (
            1 if e["type"] == "extra_forbidden" and len(e["loc"]) == 1 else order.get(_top(e), 9)
        ),
    )
    return _describe(ranked[0], keys, formats, classes)


def _top(error: ErrorDetails) -> str:
    return str(error["loc"][0]) if error["loc"] else ""


def _describe(
    error: ErrorDetails, keys: Sequence[str], formats: Collection[str], classes: Collection[str]
) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    top = _top(error)
    if kind == "model_type" and not loc:
        return "the classification must be a mapping with 'columns' and 'entity_key'"
    if kind == "extra_forbidden" and len(loc) == 1:
        return f"unknown key '{top}' in the classification; " + did_you_mean(top, keys)
    if top in ("entity_kind", "membership", "domains", "derived"):
        return _describe_declaration(error)
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if top == "columns" and len(loc) == 2:
        known = list(classes)
        return f"column '{loc[1]}': unknown class '{value}'; " + did_you_mean(str(value), known)
    if top == "columns":
        return "the classification needs 'columns': a mapping of column name to class"
    if top == "entity_key" and value is not None and kind not in ("missing", "string_too_short"):
        return f"entity_key must be the name of a column, not {value!r}"
    if top == "entity_key":
        return "the classification needs 'entity_key': the column naming the person or enterprise"
    if top == "formats" and len(loc) == 2:
        return f"column '{loc[1]}': unknown format '{value}'; " + did_you_mean(str(value), formats)
    if top == "formats":
        return "'formats', if given, must be a mapping of column name to format"
    if top == "rows_per_entity":
        return f"rows_per_entity must be a whole number from 1 to 10000, not {value!r}"
    if top == "bounds":
        if len(loc) == 1:
            return "'bounds', if given, must be a mapping of measure column to [low, high]"
        return f"bounds, column '{loc[1]}' must be a pair [low, high] of numbers, not {value!r}"
    return f"{'.'.join(map(str, loc))}: {error['msg']}"  # not expected; pydantic's own words


def _describe_declaration(error: ErrorDetails) -> str:
    """The message of a problem in entity_kind, membership, domains or derived."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    top = _top(error)
    if top in ("entity_kind", "membership"):
        words = (
            ("person", "organisation") if top == "entity_kind" else ("sensitive", "non_sensitive")
        )
        return f"{top} must be '{words[0]}' or '{words[1]}', not {value!r}; " + did_you_mean(
            str(value), words
        )
    if top == "derived":
        if len(loc) == 1:
            return "'derived', if given, must be a mapping of name to an expression over measures"
        return f"derived measure '{loc[1]}' must be an expression as text, not {value!r}"
    if len(loc) == 1:
        return (
            "'domains', if given, must be a mapping of column name to one of: codes, bands, range"
        )
    where = f"domains, column '{loc[1]}'"
    if kind == "value_error":
        return f"{where}: {error['ctx']['error']}"
    if kind == "extra_forbidden":
        known = DOMAIN_KEYS if len(loc) == 3 else BAND_KEYS if loc[2] == "bands" else ("from", "to")
        return f"{where}: unknown key '{loc[-1]}'; " + did_you_mean(str(loc[-1]), known)
    if len(loc) == 2:
        return f"{where}: a domain is a mapping with one of 'codes', 'bands', 'range'"
    if loc[2] == "codes" and len(loc) > 3:
        return f"{where}: code {value!r} is not text, a number or a boolean"
    if loc[2] == "codes":
        return f"{where}: 'codes' must be a list of values"
    part = ".".join(map(str, loc[2:4]))
    if kind == "missing":
        return f"{where}: '{part}' is missing"
    if kind.startswith("int") or kind == "list_type":
        return f"{where}: '{part}' must be {'a list of integers' if kind == 'list_type' else 'an integer'}, not {value!r}"
    if kind == "model_type":
        return f"{where}: '{part}' must be a mapping of " + ", ".join(
            f"'{k}'" for k in (BAND_KEYS if loc[2] == "bands" else ("from", "to"))
        )
    return f"{where}: {part}: {error['msg']}"
