"""May this operator run this kind of job on these datasets now?

One pure function, :func:`decide`, answers that for every job submission (and,
later, every download and verification call). It is given the operator's
grants as plain data and refuses with the rule and the article:

* ``not_granted``: a dataset the operator holds no grant for (Art. 14);
* ``grant_not_started`` / ``grant_expired``: outside the grant's term (Art. 13);
* ``grant_suspended`` / ``grant_revoked``: data use suspended or ended (Art. 24);
* ``job_kind_not_granted``: a kind of job outside the grant's scope (Art. 13);
* ``column_not_granted``: a column outside the grant (Art. 14), when the caller names columns.

A grant made from an approved data request carries its ``agreement_id``; the
agreement is then asked too (:class:`AgreementTerms`), before the grant itself:

* ``agreement_suspended``: suspended after a failed evaluation or an incident (Art. 24);
* ``agreement_terminated``: ended for breach or an unrectified failure (Art. 24);
* ``agreement_expired`` / ``agreement_not_started``: outside the agreement's term (Art. 13);
* ``outside_agreement_scope``: a dataset or column the agreement does not cover (Art. 13);
* ``agreement_unknown``: the grant names an agreement the caller did not supply (default deny).

A grant without an agreement is an authority's direct grant (``sandbox grant add``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import PolicyRefusal
from .workflow import AgreementState


class GrantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


JOB_KINDS = ("sql_aggregate", "psi_match", "he_aggregate", "verification", "model_train")

# The aggregate families a grant may add beyond the counts, sums and means every grant
# allows (the grant's ``aggregates``; SQL admission reads them as QueryScope.extra_aggregates).
GRANTABLE_FAMILIES = frozenset({"min", "max", "median", "quantile", "stddev", "variance"})


@dataclass(frozen=True)
class Grant:
    """What one operator may do with one dataset, and until when."""

    id: int
    operator_id: int
    dataset: str
    valid_from: datetime
    valid_until: datetime
    status: GrantStatus = GrantStatus.ACTIVE
    columns: frozenset[str] | None = None
    extra_aggregates: frozenset[str] = frozenset()
    aggregate_expressions: bool = False
    job_kinds: frozenset[str] = frozenset({"sql_aggregate"})
    disclosure: Mapping[str, Any] = field(default_factory=dict)
    agreement_id: int | None = None  # None: an authority's direct grant
    review_required: bool = False  # outputs wait for the two-checker output review


@dataclass(frozen=True)
class AgreementTerms:
    """What an operation agreement allows (Art. 13), as the gate needs it.

    ``datasets`` maps each dataset in scope to its allowed columns (``None``: every
    classified column).
    """

    id: int
    state: AgreementState
    valid_from: datetime
    valid_until: datetime
    datasets: Mapping[str, frozenset[str] | None]
    job_kinds: frozenset[str]


def agreement_refusal(
    terms: AgreementTerms | None,
    agreement_id: int,
    dataset: str,
    job_kind: str,
    now: datetime,
    columns: Collection[str] | None = None,
) -> PolicyRefusal | None:
    """Why the agreement behind a grant does not allow this use now, or ``None``."""
    subject = f"agreement:{agreement_id}"
    if terms is None:
        return PolicyRefusal(
            "agreement_unknown",
            f"the grant for '{dataset}' names agreement {agreement_id}, which is not on record",
            article="Art. 13",
            subject=subject,
        )
    if terms.state is AgreementState.SUSPENDED:
        return PolicyRefusal(
            "agreement_suspended",
            f"agreement {agreement_id} is suspended: data use is stopped",
            article="Art. 24",
            subject=subject,
            hint="rectify as the authority asked; use resumes when it restores the agreement",
        )
    if terms.state is AgreementState.TERMINATED:
        return PolicyRefusal(
            "agreement_terminated",
            f"agreement {agreement_id} was terminated",
            article="Art. 24",
            subject=subject,
        )
    if terms.state is AgreementState.EXPIRED or now >= terms.valid_until:
        return PolicyRefusal(
            "agreement_expired",
            f"agreement {agreement_id} ended at {terms.valid_until.isoformat()}",
            article="Art. 13",
            subject=subject,
            hint="a new term needs a new agreement",
        )
    if now < terms.valid_from:
        return PolicyRefusal(
            "agreement_not_started",
            f"agreement {agreement_id} starts at {terms.valid_from.isoformat()}",
            article="Art. 13",
            subject=subject,
        )
    if dataset not in terms.datasets:
        return PolicyRefusal(
            "outside_agreement_scope",
            f"dataset '{dataset}' is outside the scope of agreement {agreement_id}",
            article="Art. 13",
            subject=dataset,
        )
    if job_kind not in terms.job_kinds:
        return PolicyRefusal(
            "job_kind_not_granted",
            f"jobs of kind '{job_kind}' are outside agreement {agreement_id}",
            article="Art. 13",
            subject=dataset,
            hint="allowed kinds: " + ", ".join(sorted(terms.job_kinds)),
        )
    allowed = terms.datasets[dataset]
    if columns is not None and allowed is not None:
        outside = sorted(set(columns) - allowed)
        if outside:
            return PolicyRefusal(
                "outside_agreement_scope",
                f"column '{outside[0]}' of '{dataset}' is outside agreement {agreement_id}",
                article="Art. 13",
                subject=outside[0],
            )
    return None


def _column_refusal(grant: Grant, columns: Collection[str] | None) -> PolicyRefusal | None:
    if columns is None or grant.columns is None:
        return None
    outside = sorted(set(columns) - grant.columns)
    if not outside:
        return None
    return PolicyRefusal(
        "column_not_granted",
        f"column '{outside[0]}' of '{grant.dataset}' is outside your grant",
        article="Art. 14",
        subject=outside[0],
        hint="request the column under your agreement",
    )


def decide(
    grants: Sequence[Grant],
    operator_id: int,
    datasets: Sequence[str],
    job_kind: str,
    now: datetime,
    agreements: Mapping[int, AgreementTerms] | None = None,
    columns: Mapping[str, Collection[str]] | None = None,
) -> dict[str, Grant]:
    """Return the grant that covers each dataset, or refuse naming the first problem.

    ``agreements`` holds the terms of every agreement the grants name; ``columns``
    (optional) the columns used per dataset, checked against grant and agreement.
    """
    agreements = agreements or {}
    columns = columns or {}
    chosen: dict[str, Grant] = {}
    for name in datasets:
        mine = [g for g in grants if g.operator_id == operator_id and g.dataset == name]
        if not mine:
            raise PolicyRefusal(
                "not_granted",
                f"you hold no grant for dataset '{name}'",
                article="Art. 14",
                subject=name,
                hint="request the data under your agreement and wait for approval",
            )
        used = columns.get(name)

        def blocker(
            g: Grant, name: str = name, used: Collection[str] | None = used
        ) -> PolicyRefusal | None:

            if g.agreement_id is None:
                return _column_refusal(g, used)
            terms = agreements.get(g.agreement_id)
            return agreement_refusal(terms, g.agreement_id, name, job_kind, now, used) or (
                _column_refusal(g, used)
            )

        usable = [
            g
            for g in mine
            if g.status is GrantStatus.ACTIVE
            and g.valid_from <= now < g.valid_until
            and job_kind in g.job_kinds
            and blocker(g) is None
        ]
        if usable:
            chosen[name] = max(usable, key=lambda g: g.valid_until)
            continue
        raise _why_unusable(mine, name, job_kind, now, agreements, used, blocker)
    return chosen


def _why_unusable(
    mine: Sequence[Grant],
    name: str,
    job_kind: str,
    now: datetime,
    agreements: Mapping[int, AgreementTerms],
    used: Collection[str] | None,
    blocker: Callable[[Grant], PolicyRefusal | None],
) -> PolicyRefusal:
    """Why none of the operator's grants for ``name`` is usable, judged on the grant that
    ends last: the agreement, then its status, job kind, term, and last the columns."""
    grant = max(mine, key=lambda g: g.valid_until)
    if grant.agreement_id is not None:
        problem = agreement_refusal(
            agreements.get(grant.agreement_id), grant.agreement_id, name, job_kind, now, used
        )
        if problem is not None:
            return problem
    if grant.status is GrantStatus.SUSPENDED:
        return PolicyRefusal(
            "grant_suspended",
            f"data use of '{name}' is suspended",
            article="Art. 24",
            subject=name,
            hint="rectify as the authority asked; use resumes when it restores the grant",
        )
    if grant.status is GrantStatus.REVOKED:
        return PolicyRefusal(
            "grant_revoked",
            f"the grant for dataset '{name}' was ended",
            article="Art. 24",
            subject=name,
        )
    if job_kind not in grant.job_kinds:
        return PolicyRefusal(
            "job_kind_not_granted",
            f"jobs of kind '{job_kind}' are outside your grant for '{name}'",
            article="Art. 13",
            subject=name,
            hint="allowed kinds: " + ", ".join(sorted(grant.job_kinds)),
        )
    if now < grant.valid_from:
        return PolicyRefusal(
            "grant_not_started",
            f"your grant for '{name}' starts at {grant.valid_from.isoformat()}",
            article="Art. 13",
            subject=name,
        )
    if now >= grant.valid_until:
        return PolicyRefusal(
            "grant_expired",
            f"your grant for '{name}' ended at {grant.valid_until.isoformat()}",
            article="Art. 13",
            subject=name,
            hint="a new term needs a new or extended agreement",
        )
    # Status, kind, term and agreement allow it: only the columns can be left.
    return blocker(grant) or PolicyRefusal(
        "not_granted", f"no usable grant for '{name}'", article="Art. 14", subject=name
    )
