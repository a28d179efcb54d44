"""HE aggregate jobs: the policy half (pure, no TenSEAL, no engine, no I/O).

An operator sends values encrypted under its own key with the join keys; the
platform joins the keys to public attributes of a granted dataset and sums the
ciphertexts per group (``sandbox.he.service`` does the work). What this module decides:

* the request's shape: the group-by columns are ``dimension`` columns of the
  dataset (``he_group_not_dimension``, Art. 15), the join key is an
  ``identifier`` column (``he_key_not_identifier``, Art. 15); grant and
  agreement scope are asked of ``sandbox.data.grants.may_run`` with these columns;
* the encryption parameters are at least 128-bit secure
  (``he_parameters_below_floor``, Art. 19), from the HomomorphicEncryption.org
  standard's table of largest coefficient moduli per ring degree;
* which groups may come back: only those with at least ``min_entities``
  matched subjects (the disclosure parameters of the grant and the platform);
  the others are refused before anything is computed for them (Art. 15).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum

from policies.classes import Classification, ColumnClass, did_you_mean
from policies.disclosure import DisclosureParams
from policies.errors import InputError, PolicyRefusal

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
    group: tuple
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
        if columns[name] is not ColumnClass.DIMENSION:
            raise PolicyRefusal(
                "he_group_not_dimension",
                f"column '{name}' is a {columns[name].value} column; only dimension columns "
                "may group encrypted sums",
                article="Art. 15",
                subject=name,
                hint="group by a dimension such as county or industry",
            )
    return HePlan(
        dataset=request.dataset,
        key_column=request.key_column,
        by=by,
        scheme=parse_scheme(request.scheme),
        entity_key=classification.entity_key,
        min_subjects=params.min_entities,
    )


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


def judge_groups(subjects: Mapping[tuple, int], min_subjects: int) -> list[GroupDecision]:
    """One decision per group, in sorted group order: release at >= min_subjects."""

    def order(group: tuple) -> tuple:
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
