"""May this operator run this kind of job on these datasets now?

One pure function, :func:`decide`, answers that for every job submission (and,
later, every download and verification call). It is given the operator's
grants as plain data and refuses with the rule and the article:

* ``not_granted``: a dataset the operator holds no grant for (Art. 14);
* ``grant_not_started`` / ``grant_expired``: outside the grant's term (Art. 13);
* ``grant_suspended`` / ``grant_revoked``: data use suspended or ended (Art. 24);
* ``job_kind_not_granted``: a kind of job outside the grant's scope (Art. 13).

Until the workflow (notices, agreements, data requests) lands, grants are made
directly by an authority (``sandbox grant add``); the workflow will create the
same records from approved data requests under an active agreement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import PolicyRefusal


class GrantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


JOB_KINDS = ("sql_aggregate", "psi_match", "he_aggregate", "verification")


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


def decide(
    grants: Sequence[Grant], operator_id: int, datasets: Sequence[str], job_kind: str, now: datetime
) -> dict[str, Grant]:
    """Return the grant that covers each dataset, or refuse naming the first problem."""
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
        usable = [
            g
            for g in mine
            if g.status is GrantStatus.ACTIVE
            and g.valid_from <= now < g.valid_until
            and job_kind in g.job_kinds
        ]
        if usable:
            chosen[name] = max(usable, key=lambda g: g.valid_until)
            continue
        grant = max(mine, key=lambda g: g.valid_until)
        if grant.status is GrantStatus.SUSPENDED:
            raise PolicyRefusal(
                "grant_suspended",
                f"data use of '{name}' is suspended",
                article="Art. 24",
                subject=name,
                hint="rectify as the authority asked; use resumes when it restores the grant",
            )
        if grant.status is GrantStatus.REVOKED:
            raise PolicyRefusal(
                "grant_revoked",
                f"the grant for dataset '{name}' was ended",
                article="Art. 24",
                subject=name,
            )
        if job_kind not in grant.job_kinds:
            raise PolicyRefusal(
                "job_kind_not_granted",
                f"jobs of kind '{job_kind}' are outside your grant for '{name}'",
                article="Art. 13",
                subject=name,
                hint="allowed kinds: " + ", ".join(sorted(grant.job_kinds)),
            )
        if now < grant.valid_from:
            raise PolicyRefusal(
                "grant_not_started",
                f"your grant for '{name}' starts at {grant.valid_from.isoformat()}",
                article="Art. 13",
                subject=name,
            )
        raise PolicyRefusal(
            "grant_expired",
            f"your grant for '{name}' ended at {grant.valid_until.isoformat()}",
            article="Art. 13",
            subject=name,
            hint="a new term needs a new or extended agreement",
        )
    return chosen
