"""HE aggregate jobs: the policy half (pure, no TenSEAL, no engine, no I/O).

An operator sends values encrypted under its own key with the join keys; the
platform joins the keys to public attributes of a granted dataset and sums the
ciphertexts per group (``sandbox.he.service`` does the work). What this module decides:

* the request's shape: the group-by columns are ``public`` columns of the
  dataset (``he_group_not_public``, Art. 15: the operator chooses its values, so
  one subject given a distinct value shows its group; only a group that is
  published anyway may be shown), the join key is an
  ``identifier`` column (``he_key_not_identifier``, Art. 15); grant and
  agreement scope are asked of ``sandbox.data.grants.may_run`` with these columns;
* the encryption parameters are at least 128-bit secure
  (``he_parameters_below_floor``, Art. 19), from the HomomorphicEncryption.org
  standard's table of largest coefficient moduli per ring degree;
* which groups may come back: only those with at least ``min_entities``
  matched subjects (the disclosure parameters of the grant and the platform);
  the others are refused before anything is computed for them (Art. 15). A
  refused group is simply not in the answer, like a group none of the keys
  reached: the answer says neither which nor how many groups were withheld, nor
  how many keys matched nothing (those counts and reasons are for the ledger).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from policies.admission import QueryScope
from policies.classes import Classification, ColumnClass
from policies.disclosure import DisclosureParams
from policies.errors import InputError, PolicyRefusal
from policies.suggest import did_you_mean

from .base import JobKind, table_of

KIND = "he_aggregate"
MAX_GROUP_COLUMNS = 3

# HomomorphicEncryption.org security standard (2018), classical, 128-bit, ternary
# secret: the largest total coefficient modulus (bits) per ring degree.
SECURITY_FLOOR_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


class Scheme(StrEnum):
    CKKS = "ckks"  # approximate arithmetic on decimals
    BFV = "bfv"  # exact arithmetic on integers


class GroupVerdict(Enum):
    RELEASE = "release"
    REFUSE = "refuse"


@dataclass(frozen=True)
class HeRequest:
    dataset: str
    key_column: str
    by: tuple[str, ...]
    scheme: Scheme = Scheme.CKKS

    @classmethod
    def from_mapping(cls, request: Mapping[str, Any]) -> HeRequest:
        """The request part of an upload's header; a missing field is an InputError."""
        try:
            by = request["by"]
            return cls(
                dataset=str(request["dataset"]),
                key_column=str(request["key_column"]),
                by=tuple(str(c) for c in (by if isinstance(by, list | tuple) else [by])),
                scheme=parse_scheme(request.get("scheme", "ckks")),
            )
        except KeyError as exc:
            raise InputError(f"the HE request needs '{exc.args[0]}'") from None

    def as_mapping(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "key_column": self.key_column,
            "by": list(self.by),
            "scheme": self.scheme.value,
        }


@dataclass(frozen=True)
class HePlan:
    """A checked request: what the platform joins on, groups by, and releases."""

    dataset: str
    key_column: str
    by: tuple[str, ...]
    scheme: Scheme
    entity_key: str  # what "subjects" counts
    min_subjects: int

    def columns(self) -> list[str]:
        return [self.key_column, *self.by]


@dataclass(frozen=True)
class GroupDecision:
    group: tuple[Any, ...]
    subjects: int  # never shown when refused
    verdict: GroupVerdict


def parse_scheme(value: str | Scheme) -> Scheme:
    try:
        return Scheme(str(value).strip().lower())
    except ValueError:
        raise InputError(
            f"unknown scheme '{value}'; " + did_you_mean(str(value), [s.value for s in Scheme])
        ) from None


def plan_he(request: HeRequest, classification: Classification, params: DisclosureParams) -> HePlan:
    """Check a request against the dataset's classification; refuse or return the plan."""
    by = tuple(request.by)
    if not by:
        raise InputError("name at least one column to group by (--by), such as county")
    if len(by) > MAX_GROUP_COLUMNS:
        raise InputError(f"group by at most {MAX_GROUP_COLUMNS} columns, not {len(by)}")
    if len(set(by)) != len(by):
        raise InputError("a group-by column is named twice")
    columns = classification.columns
    for name in (request.key_column, *by):
        if name not in columns:
            raise InputError(
                f"dataset '{request.dataset}' has no column '{name}'; "
                + did_you_mean(name, columns)
            )
    if columns[request.key_column] is not ColumnClass.IDENTIFIER:
        raise PolicyRefusal(
            "he_key_not_identifier",
            f"the join key '{request.key_column}' is a {columns[request.key_column].value} "
            "column, not an identifier",
            article="Art. 15",
            subject=request.key_column,
            hint="join on an identifier column of the dataset, such as its entity key",
        )
    for name in by:
        if columns[name] is not ColumnClass.PUBLIC:
            raise PolicyRefusal(
                "he_group_not_public",
                f"column '{name}' is a {columns[name].value} column; encrypted sums group "
                "only by public columns (Art. 15): the values are yours, so a value you "
                "choose for one key would show that subject's group",
                article="Art. 15",
                subject=name,
                hint="group by a column the classification declares public, such as the "
                "county of a registered enterprise",
            )
    if getattr(classification, "membership", "sensitive") != "non_sensitive":
        raise PolicyRefusal(
            "he_membership_sensitive",
            f"dataset '{request.dataset}' does not declare its membership non-sensitive: "
            "an encrypted sum over your keys says which of them are in it, and being in it "
            "may say something about a person (Art. 15)",
            article="Art. 15",
            subject=request.dataset,
            hint="encrypted sums run only over datasets whose provider declares "
            "'membership: non_sensitive' in the classification (a public register)",
        )
    return HePlan(
        dataset=request.dataset,
        key_column=request.key_column,
        by=by,
        scheme=parse_scheme(request.scheme),
        entity_key=classification.entity_key,
        min_subjects=params.min_entities,
    )


class HeAggregate(JobKind[HePlan]):
    """Encrypted sums per public group of a dataset the operator joins its keys to."""

    name = KIND
    article = "Art. 15"
    command = "sandbox he sum"

    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        return [HeRequest.from_mapping(request).dataset]

    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> HePlan:
        """:func:`plan_he` against the scope's one dataset, with the disclosure
        parameters in force (``scope.disclosure``: the smallest group released)."""
        he_request = HeRequest.from_mapping(request)
        if scope.disclosure is None:
            raise InputError("an HE plan needs the disclosure parameters in force")
        return plan_he(he_request, table_of(scope, he_request.dataset), scope.disclosure)


def check_security(scheme: Scheme, poly_modulus_degree: int, coeff_bits: Sequence[int]) -> None:
    """Refuse encryption parameters below 128-bit security (Art. 19)."""
    total = sum(coeff_bits)
    floor = SECURITY_FLOOR_128.get(poly_modulus_degree)
    if floor is None or total > floor:
        raise PolicyRefusal(
            "he_parameters_below_floor",
            f"{scheme.value.upper()} parameters with ring degree {poly_modulus_degree} and a "
            f"{total}-bit coefficient modulus are below 128-bit security",
            article="Art. 19",
            subject="context",
            hint="use poly_modulus_degree 8192 with coeff_mod_bit_sizes [60, 40, 40, 60] "
            "(the client's defaults)",
        )


def judge_groups(subjects: Mapping[tuple[Any, ...], int], min_subjects: int) -> list[GroupDecision]:
    """One decision per group, in sorted group order: release at >= min_subjects."""

    def order(group: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
        return tuple((v is None, str(v)) for v in group)

    return [
        GroupDecision(
            group,
            n,
            GroupVerdict.RELEASE if n >= min_subjects else GroupVerdict.REFUSE,
        )
        for group, n in sorted(subjects.items(), key=lambda item: order(item[0]))
    ]


def duplicate_count(keys: Collection[str]) -> int:
    """How many entries of a key list repeat an earlier one (a count, never which)."""
    return len(keys) - len(set(keys))


# --------------------------------------------------------------------------- wire format

SLOTS = 4096  # values per ciphertext: CKKS N=8192 has 4096 slots; BFV uses one row of 4096


MAGIC = b"SBHE1\n"


MAX_HEADER = 1 << 16


def pack(header: dict[str, Any], frames: Sequence[bytes]) -> bytes:
    """``MAGIC | u32 header length | header JSON | u32 frame count | (u64 length | bytes)*``."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    parts = [MAGIC, struct.pack(">I", len(head)), head, struct.pack(">I", len(frames))]
    for frame in frames:
        parts.append(struct.pack(">Q", len(frame)))
        parts.append(bytes(frame))
    return b"".join(parts)


def unpack(
    body: bytes, *, max_frames: int, max_frame: int
) -> tuple[dict[str, Any], list[memoryview]]:
    """Parse :func:`pack`'s format; every length is checked before it is used."""
    view = memoryview(body)

    def bad(why: str) -> InputError:
        return InputError(f"the HE request body is malformed: {why}")

    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise bad("it does not start with the HE format's magic bytes")
    at = len(MAGIC)
    if len(view) < at + 4:
        raise bad("it ends inside the header length")
    (head_len,) = struct.unpack(">I", view[at : at + 4])
    at += 4
    if head_len > MAX_HEADER or at + head_len > len(view):
        raise bad("the header length is out of range")
    try:
        header = json.loads(bytes(view[at : at + head_len]))
    except ValueError:
        raise bad("the header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    at += head_len
    if len(view) < at + 4:
        raise bad("it ends inside the frame count")
    (count,) = struct.unpack(">I", view[at : at + 4])
    at += 4
    if count > max_frames:
        raise bad(f"{count} frames, more than the {max_frames} allowed")
    frames = []
    for i in range(count):
        if len(view) < at + 8:
            raise bad(f"it ends inside the length of frame {i}")
        (size,) = struct.unpack(">Q", view[at : at + 8])
        at += 8
        if size > max_frame or at + size > len(view):
            raise bad(f"frame {i} is over its size limit or runs past the end")
        frames.append(view[at : at + size])
        at += size
    if at != len(view):
        raise bad("bytes follow the last frame")
    return header, frames


def frames_digest(frames: Sequence[bytes | memoryview]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(struct.pack(">Q", len(frame)))
        digest.update(frame)
    return digest.hexdigest()
