"""The regulation's workflow as data: states, allowed transitions, and pure rules.

Art. 9 fixes the flow: notice, application, qualification review, agreement,
data supply, product service, feedback; Art. 20 to 24 add supervision. Each
object with a lifecycle has an ``Enum`` of states and one table of allowed
transitions here; ``sandbox.workflow`` moves objects along these tables, one
ledger entry per move, and asks the small functions below every question that
has a rule behind it:

* :func:`review_verdict`: the qualification pass rule (Art. 12);
* :func:`check_jurisdiction`: a county authority acts only within its county (Art. 5);
* :func:`check_not_own_org`: nobody reviews, approves or checks the work of its own
  organisation (separation of duties);
* :func:`airlock_verdict`: two blind, independent votes decide a held output.

Nothing here touches the store: every function takes plain values, so the
rules can be tested (and property-tested) on their own::

    notice:      published (open until its deadline)
    application: submitted -> under_review -> passed | failed
    review:      appointed -> scored
    agreement:   active -> suspended -> active | terminated | expired;  active -> expired
    request:     submitted -> approved | refused
    ticket:      open -> answered
    evaluation:  passed;  failed -> rectified | terminated
    airlock:     pending -> approved | returned | rejected;  pending <-> frozen
    hold:        suspended -> lifted | terminated;  terminated (a provider's hold on the
                 use of its data under one agreement)
    inspection:  open -> rectified -> closed;  open -> closed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .errors import Conflict, InputError, PermissionDenied, PolicyRefusal


class NoticeState(StrEnum):
    PUBLISHED = "published"  # open for applications until its deadline (Art. 10, 11)


class ApplicationState(StrEnum):
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    PASSED = "passed"
    FAILED = "failed"


class ReviewState(StrEnum):
    APPOINTED = "appointed"
    SCORED = "scored"


class AgreementState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    EXPIRED = "expired"


class RequestState(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REFUSED = "refused"


class TicketState(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"


class EvaluationState(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    RECTIFIED = "rectified"
    TERMINATED = "terminated"


class AirlockState(StrEnum):
    PENDING = "pending"
    FROZEN = "frozen"
    APPROVED = "approved"
    RETURNED = "returned"
    REJECTED = "rejected"


class HoldState(StrEnum):
    """A provider's hold on the use of its dataset under one agreement (Art. 5, 13, 24).

    An authorizing unit supervises the use of what it authorized: it suspends the use
    (the grants stop, the jobs reading them are cancelled) and lifts or ends it."""

    SUSPENDED = "suspended"
    LIFTED = "lifted"
    TERMINATED = "terminated"


class InspectionState(StrEnum):
    """An inspection (Art. 22): its findings and tasks are open until the operator reports
    them rectified; the inspector closes it (an inspection without tasks, at once)."""

    OPEN = "open"
    RECTIFIED = "rectified"
    CLOSED = "closed"


class Vote(StrEnum):
    APPROVE = "approve"
    RETURN = "return"
    REJECT = "reject"


class Disposal(StrEnum):
    """What happens to an operator's derived products when its agreement expires (Art. 13)."""

    DELETE = "delete"
    HAND_OVER = "hand_over"


class Aggregate(StrEnum):
    """How several reviewers' scores of one dimension are combined."""

    MEAN = "mean"
    MIN = "min"


# What a security incident was (Art. 21); here, not in sandbox.workflow.supervision, so
# that the API's request bodies (and the client, which builds them) import no workflow.
class IncidentKind(StrEnum):
    LEAK = "leak"
    DAMAGE = "damage"
    LOSS = "loss"
    MISUSE = "misuse"  # a product used beyond its purpose (a consumer's report, Art. 21)


DIMENSIONS = ("capability", "scenario", "security")  # Art. 12
PRODUCT_KINDS = ("report", "verification", "psi_match", "he_aggregate", "model")  # Art. 4

_TRANSITIONS: dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]] = {
    NoticeState: {},
    ReviewState: {ReviewState.APPOINTED: frozenset({ReviewState.SCORED})},
    ApplicationState: {
        ApplicationState.SUBMITTED: frozenset({ApplicationState.UNDER_REVIEW}),
        ApplicationState.UNDER_REVIEW: frozenset(
            {ApplicationState.PASSED, ApplicationState.FAILED}
        ),
    },
    AgreementState: {
        AgreementState.ACTIVE: frozenset({AgreementState.SUSPENDED, AgreementState.EXPIRED}),
        AgreementState.SUSPENDED: frozenset(
            {AgreementState.ACTIVE, AgreementState.TERMINATED, AgreementState.EXPIRED}
        ),
    },
    RequestState: {
        RequestState.SUBMITTED: frozenset({RequestState.APPROVED, RequestState.REFUSED}),
    },
    TicketState: {TicketState.OPEN: frozenset({TicketState.ANSWERED})},
    EvaluationState: {
        EvaluationState.FAILED: frozenset({EvaluationState.RECTIFIED, EvaluationState.TERMINATED}),
    },
    AirlockState: {
        AirlockState.PENDING: frozenset(
            {
                AirlockState.FROZEN,
                AirlockState.APPROVED,
                AirlockState.RETURNED,
                AirlockState.REJECTED,
            }
        ),
        AirlockState.FROZEN: frozenset({AirlockState.PENDING}),
    },
    HoldState: {HoldState.SUSPENDED: frozenset({HoldState.LIFTED, HoldState.TERMINATED})},
    InspectionState: {
        InspectionState.OPEN: frozenset({InspectionState.RECTIFIED, InspectionState.CLOSED}),
        InspectionState.RECTIFIED: frozenset({InspectionState.CLOSED}),
    },
}

# The article each state is reached under, for the ledger entry of the move. Keyed by
# Enum type first: StrEnum members of different types with one value compare equal.
_ARTICLES: dict[type[StrEnum], dict[str, str]] = {
    NoticeState: {
        NoticeState.PUBLISHED.value: "Art. 10",
    },
    ReviewState: {
        ReviewState.APPOINTED.value: "Art. 12",
        ReviewState.SCORED.value: "Art. 12",
    },
    ApplicationState: {
        ApplicationState.SUBMITTED.value: "Art. 11",
        ApplicationState.UNDER_REVIEW.value: "Art. 12",
        ApplicationState.PASSED.value: "Art. 12",
        ApplicationState.FAILED.value: "Art. 12",
    },
    AgreementState: {
        AgreementState.ACTIVE.value: "Art. 13",
        AgreementState.SUSPENDED.value: "Art. 24",
        AgreementState.TERMINATED.value: "Art. 24",
        AgreementState.EXPIRED.value: "Art. 13",
    },
    RequestState: {
        RequestState.SUBMITTED.value: "Art. 14",
        RequestState.APPROVED.value: "Art. 14",
        RequestState.REFUSED.value: "Art. 14",
    },
    TicketState: {
        TicketState.OPEN.value: "Art. 14",
        TicketState.ANSWERED.value: "Art. 14",
    },
    EvaluationState: {
        EvaluationState.PASSED.value: "Art. 23",
        EvaluationState.FAILED.value: "Art. 24",
        EvaluationState.RECTIFIED.value: "Art. 24",
        EvaluationState.TERMINATED.value: "Art. 24",
    },
    AirlockState: {
        AirlockState.PENDING.value: "Art. 15",
        AirlockState.FROZEN.value: "Art. 24",
        AirlockState.APPROVED.value: "Art. 15",
        AirlockState.RETURNED.value: "Art. 15",
        AirlockState.REJECTED.value: "Art. 15",
    },
    InspectionState: {s.value: "Art. 22" for s in InspectionState},
    HoldState: {
        HoldState.SUSPENDED.value: "Art. 24",
        HoldState.LIFTED.value: "Art. 24",
        HoldState.TERMINATED.value: "Art. 24",
    },
}


def article_of(state: StrEnum) -> str:
    """The regulation article under which an object reaches ``state``."""
    return _ARTICLES[type(state)][state.value]


def allowed(state: StrEnum) -> frozenset[StrEnum]:
    """The states an object may move to from ``state`` (empty: a final state)."""
    return _TRANSITIONS[type(state)].get(state, frozenset())


def check_transition(subject: str, old: StrEnum, new: StrEnum) -> None:
    """Refuse a move the state table does not allow, naming both states."""
    if new not in allowed(old):
        nexts = ", ".join(sorted(s.value for s in allowed(old))) or "none: it is final"
        raise Conflict(
            f"{subject} is {old.value} and cannot become {new.value} (allowed next: {nexts})",
            article=article_of(new),
        )


# --- jurisdiction and separation of duties ----------------------------------------------


def covers(authority_jurisdiction: str | None, target: str) -> bool:
    """The city authority covers every county; a county authority only its own (Art. 5)."""
    return authority_jurisdiction == "city" or authority_jurisdiction == target


def check_jurisdiction(authority: str, authority_jurisdiction: str | None, target: str) -> None:
    if not covers(authority_jurisdiction, target):
        raise PermissionDenied(
            f"{authority} acts for county {authority_jurisdiction} and may not act on an "
            f"object of jurisdiction '{target}' (Art. 5)",
            article="Art. 5",
            code="outside_jurisdiction",
        )


def check_not_own_org(
    actor: str, actor_org: str, subject_org: str, duty: str, article: str = "Art. 5"
) -> None:
    """Separation of duties: nobody reviews, approves or checks its own organisation's work."""
    if actor_org == subject_org:
        raise PermissionDenied(
            f"{actor} belongs to '{actor_org}', the organisation whose {duty}; "
            f"separation of duties forbids it ({article})",
            article=article,
            code="own_organisation",
        )


# --- the qualification review (Art. 12) ---------------------------------------------------


@dataclass(frozen=True)
class PassRule:
    """Default: every dimension scores at least 60 (mean of reviewers) from at least two."""

    min_score: int = 60
    min_reviewers: int = 2
    aggregate: Aggregate = Aggregate.MEAN

    def __post_init__(self) -> None:
        if not 0 <= self.min_score <= 100:
            raise InputError(
                "the pass score must be between 0 and 100 (Art. 12)", article="Art. 12"
            )
        if self.min_reviewers < 1:
            raise InputError("a review needs at least one reviewer (Art. 12)", article="Art. 12")

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_score": self.min_score,
            "min_reviewers": self.min_reviewers,
            "aggregate": self.aggregate.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PassRule:
        return cls(
            int(data.get("min_score", 60)),
            int(data.get("min_reviewers", 2)),
            Aggregate(data.get("aggregate", "mean")),
        )


def check_scores(scores: Mapping[str, int]) -> dict[str, int]:
    """Exactly the three dimensions of Art. 12, each an integer from 0 to 100."""
    missing = [d for d in DIMENSIONS if d not in scores]
    extra = [d for d in scores if d not in DIMENSIONS]
    if missing or extra:
        raise InputError(
            "a review scores exactly capability, scenario and security (Art. 12)",
            article="Art. 12",
        )
    out = {}
    for name in DIMENSIONS:
        value = scores[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise InputError(
                f"score '{name}' must be a whole number from 0 to 100 (Art. 12)", article="Art. 12"
            )
        out[name] = value
    return out


def review_verdict(
    scores: Sequence[Mapping[str, int]], rule: PassRule = PassRule()
) -> ApplicationState | None:
    """Passed or failed once enough reviewers scored; ``None`` while too few have."""
    if len(scores) < rule.min_reviewers:
        return None
    for name in DIMENSIONS:
        values = [s[name] for s in scores]
        combined = min(values) if rule.aggregate is Aggregate.MIN else sum(values) / len(values)
        if combined < rule.min_score:
            return ApplicationState.FAILED
    return ApplicationState.PASSED


# --- the airlock (output review) -----------------------------------------------------------


def airlock_verdict(votes: Sequence[Vote], needed: int = 2) -> AirlockState:
    """Any reject rejects; any return returns; all approving approves; else still pending."""
    if len(votes) < needed:
        return AirlockState.PENDING
    if Vote.REJECT in votes:
        return AirlockState.REJECTED
    if Vote.RETURN in votes:
        return AirlockState.RETURNED
    return AirlockState.APPROVED


def refuse(
    rule: str, message: str, article: str, subject: str | None = None, hint: str | None = None
) -> PolicyRefusal:
    """A PolicyRefusal for workflow rules (the same shape the job gate uses)."""
    return PolicyRefusal(rule, message, article=article, subject=subject, hint=hint)
