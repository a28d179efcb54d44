"""The terms of private set intersection (PSI) matches, as data, and the checks over them.

An authority sets :class:`PsiTerms` for an agreement (or a direct grant): which
column of which dataset may be matched, what the operator may learn (the
:class:`PsiMode`), the list sizes, a daily cap and the dimensions offered for
group cardinality. Nothing is allowed without terms (default deny, Art. 13).
:func:`check_ask` judges one match request (a *session*) against them and
:func:`check_chunk` each chunk of a session's list; each refusal names its rule
and article and never a list item:

* ``psi_not_in_terms``: no terms for this dataset column (Art. 13);
* ``psi_mode_not_allowed``: membership asked where the terms say cardinality (Art. 13);
* ``psi_group_not_allowed``: a group column the terms do not name (Art. 13); the
  column must be ``public`` (``psi_group_not_public``, :mod:`jobs.psi_match`);
* ``psi_group_membership``: groups are counted, never listed (Art. 15);
* ``psi_list_too_small``: fewer distinct items than the minimum: a short list in
  cardinality mode is a membership probe (Art. 15);
* ``psi_list_too_large``: more items than the terms allow (Art. 13);
* ``psi_daily_cap``: the day's match requests are used up (Art. 13); every
  opened session counts, refused ones too, and it is checked first, so refusals
  cannot be used to probe for free;
* ``psi_consent_required``: a match over persons needs the batch's consent
  reference (Art. 19), in cardinality mode too (see below);
* ``psi_chunk_too_small`` / ``psi_over_declared``: a chunk with fewer distinct items
  than the floor, or more items than the session declared (Art. 15).

Known limits, inherent to this PSI protocol with the operator as its client:

* a client may pad a list with made-up items, so a list of the minimum size can
  still carry a single real item. The minimum makes this costly, the daily cap
  bounds how often, and the ledger shows every list size;
* cardinality mode holds only for an honest client: one that encrypts each item
  under its own key can decrypt the sorted answer key by key and learns which
  items matched (and, with groups, each matched item's group). The platform cannot
  detect it (every encrypted item is a random-looking point, whatever the key), so
  the rules that protect persons treat cardinality as membership: consent over
  persons in every mode, groups only on public columns. Counts about persons
  without per-item consent are count sessions, the roles swapped: the platform counts
  and releases the count with differential-privacy noise (:func:`check_count_ask`,
  :mod:`sandbox.psi.counts`, docs/psi.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .errors import InputError, PolicyRefusal

DEFAULT_MIN_ITEMS = 100


class PsiMode(StrEnum):
    """What the operator learns: only the size of the intersection, or its items."""

    CARDINALITY = "cardinality"
    MEMBERSHIP = "membership"

    @property
    def reveals_items(self) -> bool:
        return self is PsiMode.MEMBERSHIP


def parse_mode(value: str) -> PsiMode:
    try:
        return PsiMode(str(value).strip().lower())
    except ValueError:
        raise InputError(
            f"unknown PSI mode '{value}'; use one of: " + ", ".join(m.value for m in PsiMode)
        ) from None


@dataclass(frozen=True)
class PsiTerms:
    """What one agreement (or direct grant) allows on one dataset column."""

    dataset: str
    column: str
    mode: PsiMode = PsiMode.CARDINALITY  # the most the operator may learn
    min_items: int = DEFAULT_MIN_ITEMS
    max_items: int = 1_000_000
    daily_cap: int = 20  # match requests (sessions) per operator and UTC day
    group_dimensions: frozenset[str] = frozenset()
    group_threshold: int = 10  # a group is counted only if the platform holds this many
    consent_required: bool = False  # demand a consent reference outside persons too
    agreement_id: int | None = None
    grant_id: int | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.min_items < 1:
            problems.append("min_items must be at least 1")
        if self.max_items < self.min_items:
            problems.append("max_items must be at least min_items")
        if self.daily_cap < 1:
            problems.append("daily_cap must be at least 1")
        if self.group_threshold < 1:
            problems.append("group_threshold must be at least 1")
        if (self.agreement_id is None) == (self.grant_id is None):
            problems.append("terms belong to exactly one agreement or one grant")
        if problems:
            raise InputError("PSI terms: " + "; ".join(problems), article="Art. 13")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "column": self.column,
            "mode": self.mode.value,
            "min_items": self.min_items,
            "max_items": self.max_items,
            "daily_cap": self.daily_cap,
            "group_dimensions": sorted(self.group_dimensions),
            "group_threshold": self.group_threshold,
            "consent_required": self.consent_required,
            "agreement_id": self.agreement_id,
            "grant_id": self.grant_id,
        }


@dataclass(frozen=True)
class PsiAsk:
    """One match request as the operator states it (never its items)."""

    dataset: str
    column: str
    mode: PsiMode
    list_size: int  # distinct items after normalisation
    consent: str | None = None
    group_by: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


def check_ask(
    terms: PsiTerms | None, ask: PsiAsk, *, used_today: int, over_persons: bool
) -> PsiTerms:
    """Return the terms that allow ``ask``, or raise the first rule it breaks."""
    subject = f"{ask.dataset}.{ask.column}"
    if terms is None:
        raise PolicyRefusal(
            "psi_not_in_terms",
            f"no PSI terms cover column '{ask.column}' of '{ask.dataset}'",
            article="Art. 13",
            subject=subject,
            hint="ask the authority to set PSI terms for your agreement",
        )
    # First: every opened session counts, refused ones too (the caller records them),
    # so once the cap is used up every request is refused for it alone.
    if used_today >= terms.daily_cap:
        raise PolicyRefusal(
            "psi_daily_cap",
            f"the daily cap of {terms.daily_cap} PSI match requests on '{subject}' is used up",
            article="Art. 13",
            subject=subject,
            hint="try again after midnight (UTC)",
        )
    if ask.mode.reveals_items and not terms.mode.reveals_items:
        raise PolicyRefusal(
            "psi_mode_not_allowed",
            f"your terms for '{subject}' allow only the size of the intersection",
            article="Art. 13",
            subject=subject,
            hint="use --mode cardinality",
        )
    if ask.group_by is not None:
        if ask.mode.reveals_items:
            raise PolicyRefusal(
                "psi_group_membership",
                "group counts are offered in cardinality mode only",
                article="Art. 15",
                subject=ask.group_by,
            )
        if ask.group_by not in terms.group_dimensions:
            named = ", ".join(sorted(terms.group_dimensions)) or "none"
            raise PolicyRefusal(
                "psi_group_not_allowed",
                f"column '{ask.group_by}' is not offered for group counts on '{subject}'",
                article="Art. 13",
                subject=ask.group_by,
                hint=f"group columns in your terms: {named}",
            )
    if ask.list_size < terms.min_items:
        raise PolicyRefusal(
            "psi_list_too_small",
            f"a list of {ask.list_size} distinct items is below the minimum of "
            f"{terms.min_items}: a short list would probe single subjects",
            article="Art. 15",
            subject=subject,
            hint="match a larger list, or use a verification product for single subjects",
        )
    if ask.list_size > terms.max_items:
        raise PolicyRefusal(
            "psi_list_too_large",
            f"a list of {ask.list_size} items is over the maximum of {terms.max_items}",
            article="Art. 13",
            subject=subject,
            hint="split the list over several days, or ask for larger terms",
        )
    # In cardinality mode too: a client that encrypts each item under its own key
    # learns which items matched, and the platform cannot tell (module docstring).
    needs_consent = over_persons or terms.consent_required
    if needs_consent and not (ask.consent or "").strip():
        raise PolicyRefusal(
            "psi_consent_required",
            "a match over persons needs the consent reference of this batch, in "
            "cardinality mode too (a client can learn which of its items matched)",
            article="Art. 19",
            subject=subject,
            hint="pass --consent REF (the record of the data subjects' consent)",
        )
    return terms


def chunk_floor(min_items: int, chunk_items: int) -> int:
    """Fewest distinct items in one chunk: the terms' minimum, at most half a chunk (so a
    list split into near-equal chunks always meets it)."""
    return max(1, min(min_items, chunk_items // 2))


def check_chunk(*, items: int, distinct: int, floor: int, received: int, declared: int) -> None:
    """Refuse a chunk whose answer would say more than a list of the minimum size."""
    if distinct < items:
        raise PolicyRefusal(
            "psi_chunk_too_small",
            f"a chunk repeats items ({items - distinct} repeats); send each item once",
            article="Art. 15",
            subject="chunk",
        )
    if distinct < floor:
        raise PolicyRefusal(
            "psi_chunk_too_small",
            f"a chunk of {distinct} distinct items is below the floor of {floor} per chunk",
            article="Art. 15",
            subject="chunk",
            hint="split the list into near-equal chunks",
        )
    if received + items > declared:
        raise PolicyRefusal(
            "psi_over_declared",
            f"the session declared {declared} items; this chunk would make {received + items}",
            article="Art. 15",
            subject="chunk",
            hint="open a new session for a longer list",
        )


def offered_groups(sizes: Mapping[str, int], threshold: int) -> list[str]:
    """Group values whose platform-side size reaches the threshold, in sorted order."""
    return sorted(value for value, size in sizes.items() if size >= threshold)


COUNT_MODE = "count"  # psi_sessions.mode of a count session (the roles swapped, DP noise)


def check_count_ask(terms: PsiTerms | None, ask: PsiAsk, *, used_today: int) -> PsiTerms:
    """The terms' rules for a count session (docs/psi.md, "Counts about persons"): the daily
    cap first, the group column the terms offer, the list sizes. No consent: the operator
    learns a noisy count, nothing item by item. ``ask.mode`` is ignored (a count session
    reveals less than cardinality, which every terms allow)."""
    plain = PsiAsk(ask.dataset, ask.column, PsiMode.CARDINALITY, ask.list_size, None, ask.group_by)
    if terms is None:
        return check_ask(None, plain, used_today=used_today, over_persons=False)
    relaxed = replace(terms, consent_required=False)
    check_ask(relaxed, plain, used_today=used_today, over_persons=False)
    return terms
