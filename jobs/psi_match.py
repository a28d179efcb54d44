"""PSI match jobs: the policy part, pure (no platform, no cryptography).

A PSI match is not a SQL job: nothing runs over the data at the operator's
request. The platform's encrypted set is built once per dataset version
(:mod:`sandbox.psi.service`), and a match is a *session*: the operator states the
dataset, column, mode and the size of its list (:class:`policies.psi.PsiAsk`),
then sends its encrypted list in chunks. :class:`PsiMatch` is the kind behind
:class:`jobs.base.JobKind`: its plan is the checked ask (the session executes it).
The module also offers the pieces both halves share:

* :func:`parse_ask` turns a request mapping into a checked ``PsiAsk``;
* :func:`check_columns` says which columns may be matched (identifiers or public
  facts) and grouped (``public`` columns only), from the provider's classification;
* :func:`over_persons` says whether a column identifies persons (Art. 19 consent);
* :func:`plan_chunks` splits a list into near-equal chunks that each meet the floor;
* :func:`pack_parts` / :func:`unpack_parts` frame the setup *bundle*: the
  platform's encrypted set as one or more parts (shards whose matches are
  united, or one part per group value whose matches are counted per group).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from policies.admission import QueryScope
from policies.classes import Classification, ColumnClass
from policies.errors import InputError, PolicyRefusal
from policies.psi import PsiAsk, parse_mode
from policies.suggest import did_you_mean

from .base import JobKind, table_of

KIND = "psi_match"
MATCHABLE = (ColumnClass.IDENTIFIER, ColumnClass.PUBLIC)
MAGIC = b"PSIB1"


class BundleKind(IntEnum):
    """How the parts of a setup bundle combine on the client."""

    SHARDS = 0  # one set split in parts: the intersection is the union over parts
    GROUPS = 1  # one part per group value: intersection sizes are counted per part


def parse_ask(request: Mapping[str, Any]) -> PsiAsk:
    """A match request (JSON body or CLI options) as a checked :class:`PsiAsk`."""
    known = {"dataset", "column", "mode", "list_size", "consent", "group_by"}
    unknown = sorted(set(request) - known)
    if unknown:
        raise InputError(f"unknown field '{unknown[0]}'; " + did_you_mean(unknown[0], known))
    for name in ("dataset", "column"):
        if not isinstance(request.get(name), str) or not request[name]:
            raise InputError(f"'{name}' is required: the dataset and column to match against")
    size = request.get("list_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InputError("'list_size' must be the number of distinct items in your list")
    consent = request.get("consent")
    group_by = request.get("group_by")
    return PsiAsk(
        dataset=request["dataset"],
        column=request["column"],
        mode=parse_mode(request.get("mode") or "cardinality"),
        list_size=size,
        consent=str(consent) if consent else None,
        group_by=str(group_by) if group_by else None,
    )


def check_columns(classification: Classification, column: str, group_by: str | None) -> None:
    """Refuse a match column that is not an identifier or public fact (Art. 15:
    quasi-identifiers and measures never match), or a group column that is not
    ``public``: a client that encrypts each item under its own key learns each matched
    item's group (docs/psi.md), so a group must be one that is published anyway."""
    columns = classification.columns
    for name in (column, group_by):
        if name is not None and name not in columns:
            raise InputError(f"no column '{name}' in the dataset; " + did_you_mean(name, columns))
    if columns[column] not in MATCHABLE:
        raise PolicyRefusal(
            "psi_column_class",
            f"column '{column}' is a {columns[column].value}; PSI matches identifiers "
            "or public facts only",
            article="Art. 15",
            subject=column,
        )
    if group_by is not None and columns[group_by] is not ColumnClass.PUBLIC:
        raise PolicyRefusal(
            "psi_group_not_public",
            f"column '{group_by}' is a {columns[group_by].value} column; PSI groups only by "
            "public columns (Art. 15): a client can learn the group of each item it matches",
            article="Art. 15",
            subject=group_by,
            hint="group by a column the classification declares public",
        )


def over_persons(classification: Classification, column: str) -> bool:
    """True when the column or the dataset's entity key is a resident ID (GB 11643)."""
    formats = classification.formats
    return "cn_resident_id" in (formats.get(column), formats.get(classification.entity_key))


@dataclass(frozen=True)
class PsiMatchPlan:
    """A match that passed admission: the ask, and whether it is over persons (then the
    terms ask for the subjects' consent, Art. 19)."""

    ask: PsiAsk
    over_persons: bool


class PsiMatch(JobKind[PsiMatchPlan]):
    """PSI match sessions: the column is matchable and any group is public (Art. 15)."""

    name = KIND
    article = "Art. 15"
    command = "sandbox psi"

    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        return [parse_ask(request).dataset]

    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> PsiMatchPlan:
        ask = parse_ask(request)
        classification = table_of(scope, ask.dataset)
        check_columns(classification, ask.column, ask.group_by)
        return PsiMatchPlan(ask, over_persons(classification, ask.column))


def ask_request(ask: PsiAsk) -> dict[str, Any]:
    """The request mapping of a parsed ask (what :func:`parse_ask` reads back)."""
    request: dict[str, Any] = {
        "dataset": ask.dataset,
        "column": ask.column,
        "mode": ask.mode.value,
        "list_size": ask.list_size,
    }
    if ask.consent:
        request["consent"] = ask.consent
    if ask.group_by:
        request["group_by"] = ask.group_by
    return request


def plan_chunks(n: int, chunk_items: int) -> list[int]:
    """Sizes of near-equal chunks of at most ``chunk_items`` that add up to ``n``."""
    if n <= 0:
        return []
    count = math.ceil(n / chunk_items)
    base, extra = divmod(n, count)
    return [base + 1] * extra + [base] * (count - extra)


# --- the setup bundle ------------------------------------------------------------------------

_HEAD = struct.Struct(">5sBI")  # magic, kind, number of parts
_LABEL = struct.Struct(">H")
_DATA = struct.Struct(">Q")


def pack_parts(kind: BundleKind, parts: Sequence[tuple[str, bytes]]) -> bytes:
    out = [_HEAD.pack(MAGIC, int(kind), len(parts))]
    for label, data in parts:
        raw = label.encode("utf-8")
        out += [_LABEL.pack(len(raw)), raw, _DATA.pack(len(data)), data]
    return b"".join(out)


def unpack_parts(blob: bytes) -> tuple[BundleKind, list[tuple[str, bytes]]]:
    """The parts of a bundle; a damaged bundle is an InputError, never a crash."""
    view = memoryview(blob)
    try:
        magic, kind, count = _HEAD.unpack_from(view, 0)
        if magic != MAGIC:
            raise ValueError("magic")
        at = _HEAD.size
        parts = []
        for _ in range(count):
            (size,) = _LABEL.unpack_from(view, at)
            at += _LABEL.size
            label = bytes(view[at : at + size]).decode("utf-8")
            at += size
            (size,) = _DATA.unpack_from(view, at)
            at += _DATA.size
            if at + size > len(view):
                raise ValueError("truncated")
            parts.append((label, bytes(view[at : at + size])))
            at += size
        return BundleKind(kind), parts
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InputError("the PSI setup bundle is damaged; download it again") from exc


# --- count sessions: one JSON header and one binary payload --------------------------------

COUNT_MAGIC = b"PSIC1"
_MESSAGE = struct.Struct(">5sI")  # magic, length of the JSON header


def pack_message(header: Mapping[str, Any], payload: bytes) -> bytes:
    """A count-session message: the header (JSON, never an item) and a serialised PSI
    message (the operator's setup, or the platform's request)."""
    raw = json.dumps(dict(header), sort_keys=True).encode("utf-8")
    return _MESSAGE.pack(COUNT_MAGIC, len(raw)) + raw + payload


def unpack_message(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and payload of :func:`pack_message`; damage is an InputError."""
    try:
        magic, size = _MESSAGE.unpack_from(blob, 0)
        if magic != COUNT_MAGIC or _MESSAGE.size + size > len(blob):
            raise ValueError("framing")
        header = json.loads(blob[_MESSAGE.size : _MESSAGE.size + size].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            "the PSI count message is damaged: expected PSIC1, a JSON header and a PSI message"
        ) from exc
    return header, bytes(blob[_MESSAGE.size + size :])
