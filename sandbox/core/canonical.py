"""Canonical JSON for hashing: RFC 8785 (the JSON Canonicalization Scheme) through the
``rfc8785`` package, so that any tool implementing the RFC recomputes a ledger entry's
hash; and the form ledgers were begun with before (:func:`legacy_canonical`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import rfc8785

CANONICAL_FORM = "RFC 8785"  # named in each new platform's platform.init entry
SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): larger integers are written as strings


def canonical(data: Any) -> bytes:
    """``data`` in the JSON Canonicalization Scheme (RFC 8785).

    Integers beyond I-JSON's safe range and non-finite floats become strings (the RFC
    admits neither). Data of strings, safe integers, booleans and null only, with no
    key outside the Basic Multilingual Plane, comes out of ``json.dumps`` byte for byte
    as the RFC writes it (a property test holds the two equal), and that is the fast
    path: the ledger appends an entry for every verification call. A lone surrogate,
    which neither may write, fails the fast path's UTF-8 encoding and goes to the
    library, which names it."""
    if _plain(data):
        try:
            return _dumps(data)
        except UnicodeEncodeError:
            pass
    return rfc8785.dumps(_i_json(data))


def legacy_canonical(data: Any) -> bytes:
    """The canonical form of ledgers begun before RFC 8785 (``json.dumps`` with sorted keys)."""
    return _dumps(data)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_OUTSIDE_BMP = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")  # sorts apart in UTF-16


def _plain(data: Any) -> bool:
    """True when ``json.dumps`` writes ``data`` as the RFC does (floats, unsafe integers
    and keys that sort apart in UTF-16 are the library's)."""
    kind = type(data)
    if kind is str or kind is bool or data is None:
        return True
    if kind is int:
        return -SAFE_INTEGER <= data <= SAFE_INTEGER
    if kind is dict:
        return all(
            type(k) is str and (k.isascii() or _OUTSIDE_BMP.search(k) is None) for k in data
        ) and all(_plain(v) for v in data.values())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in data)
    return False


def _i_json(data: Any) -> Any:
    if isinstance(data, bool) or data is None or isinstance(data, str):
        return data
    if isinstance(data, int):
        return data if -SAFE_INTEGER <= data <= SAFE_INTEGER else str(data)
    if isinstance(data, float):
        return data if math.isfinite(data) else str(data)
    if isinstance(data, list | tuple):
        return [_i_json(v) for v in data]
    if isinstance(data, Mapping):
        return {str(k): _i_json(v) for k, v in data.items()}
    return data  # the library names what it cannot write
