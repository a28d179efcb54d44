"""Supervision: evaluations (Art. 23, 24), incidents (Art. 21), inspections (Art. 22).

* An authority records an evaluation of an agreement with figures drawn from
  the ledger (:func:`sandbox.workflow.usage.figures`). A failed one sets a
  rectification deadline, suspends the agreement and notifies the operator;
  :func:`rectify` restores it; after the deadline the authority may terminate
  it (:func:`sandbox.workflow.agreements.terminate`).
* An incident (leak, damage, loss), reported by the operator or an authority,
  suspends every active agreement and direct grant of the operator at once and
  notifies each responsible authority and each provider whose data the operator
  holds a grant on (authorizing units, Art. 5, 21).
* An inspection records findings and rectification tasks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.access import GrantStatus
from policies.errors import Conflict, InputError, NotFound
from policies.workflow import EvaluationState, IncidentKind
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name, require_role
from sandbox.core.store import datasets, grants, inserted_id, principals
from sandbox.registry.base import (
    create,
    get,
    move,
    need_text,
    now_or,
    parse_time,
    require_authority,
)
from sandbox.registry.inbox import notifications_of, notify
from sandbox.registry.jurisdiction import operator_in_scope
from sandbox.registry.tables import agreements, evaluations, incidents
from sandbox.run.jobstate import cancel_operator_jobs
from sandbox.workflow.agreements import active_of, restore_in, suspend_in
from sandbox.workflow.airlock import freeze
from sandbox.workflow.evaluations import basis_in, check_score
from sandbox.workflow.inspections import inspect
from sandbox.workflow.usage import figures

__all__ = ["evaluate", "inspect", "notifications_of", "notify", "rectify", "report_incident"]


def evaluate(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    *,
    passed: bool,
    notes: str,
    deadline: str | datetime | None = None,
    now: datetime | None = None,
    materials: Sequence[int] = (),
    score: int | None = None,
) -> int:
    """Record an evaluation; a failed one suspends the agreement until rectified. It names
    the materials the operator submitted that it considered, and may give a score from 0
    to 100 (:mod:`sandbox.workflow.evaluations`)."""
    moment = now_or(now)
    need_text({"notes": notes}, "Art. 23")
    check_score(score)
    until = None
    if not passed:
        if deadline is None:
            raise InputError(
                "a failed evaluation sets a rectification --deadline (Art. 24)", article="Art. 24"
            )
        until = parse_time(deadline, "--deadline", end=True)
        if until <= moment:
            raise InputError(
                "the rectification deadline must be in the future (Art. 24)", article="Art. 24"
            )
    with platform.store.transaction() as conn:
        row = get(conn, agreements, agreement_id, "agreement")
        require_authority(authority, row.jurisdiction, "evaluate operators", "Art. 23")
        operator = by_id(conn, row.operator_id)
        facts = figures(conn, operator.name, parse_time(row.valid_from), moment)
        facts.pop("weeks")
        state = EvaluationState.PASSED if passed else EvaluationState.FAILED
        ev = create(
            platform,
            conn,
            evaluations,
            "evaluation",
            state,
            authority.actor,
            {
                "agreement_id": agreement_id,
                "authority_id": authority.id,
                "figures_json": json.dumps(facts),
                "notes": notes,
                "deadline": until.isoformat() if until else None,
            },
            {
                "agreement": agreement_id,
                "operator": operator.name,
                "figures": facts,
                "deadline": until.isoformat() if until else None,
                "materials": sorted(set(materials)),
                "score": score,
            },
        )
        basis_in(conn, agreement_id, ev, materials, score)
        if not passed:
            assert until is not None  # a failed evaluation has its deadline (checked above)
            _failed_in(platform, conn, authority, row, ev, until, notes)
        return ev


def _failed_in(
    platform: Platform,
    conn: Connection,
    authority: Principal,
    row,
    ev: int,
    until: datetime,
    notes: str,
) -> None:
    """A failed evaluation suspends the agreement until the deadline and tells the
    operator, in the evaluation's transaction (Art. 24)."""
    suspend_in(
        platform,
        conn,
        authority.actor,
        row.id,
        f"failed evaluation {ev}",
        "Art. 24",
        until,
        tell=False,  # the evaluation_failed notice below says it
    )
    notify(
        platform,
        conn,
        authority.actor,
        row.operator_id,
        "evaluation_failed",
        f"agreement:{row.id}",
        {"evaluation": ev, "rectify_by": until.isoformat(), "notes": notes},
        "Art. 24",
    )


def rectify(platform: Platform, authority: Principal, agreement_id: int, notes: str) -> None:
    """Mark the open failed evaluation rectified and restore the agreement (Art. 24)."""
    need_text({"notes": notes}, "Art. 24")
    with platform.store.transaction() as conn:
        row = get(conn, agreements, agreement_id, "agreement")
        require_authority(authority, row.jurisdiction, "accept rectifications", "Art. 24")
        open_ev = (
            conn.execute(
                select(evaluations.c.id).where(
                    evaluations.c.agreement_id == agreement_id,
                    evaluations.c.status == EvaluationState.FAILED.value,
                )
            )
            .scalars()
            .all()
        )
        if not open_ev:
            raise Conflict(f"agreement {agreement_id} has no failed evaluation to rectify")
        for ev in open_ev:
            move(
                platform,
                conn,
                evaluations,
                "evaluation",
                ev,
                EvaluationState.RECTIFIED,
                authority.actor,
                {"agreement": agreement_id, "notes": notes},
            )
        restore_in(platform, conn, authority.actor, agreement_id, f"rectified: {notes}")


def report_incident(
    platform: Platform, reporter: Principal, operator: str, kind: IncidentKind, description: str
) -> dict:
    """Suspend the operator's data use at once and notify the responsible authorities.

    A county authority reports incidents of operators that hold an agreement of its
    county (the same reach as an inspection, Art. 5); the report then stops all of
    that operator's data use, wherever it was granted."""
    kind = IncidentKind(kind)
    need_text({"description": description}, "Art. 21")
    require_role(
        reporter, Role.OPERATOR, Role.AUTHORITY, action="report incidents", article="Art. 21"
    )
    with platform.store.transaction() as conn:
        op = by_name(conn, operator, Role.OPERATOR)
        if reporter.role is Role.OPERATOR and reporter.id != op.id:
            raise NotFound(
                "an operator reports its own incidents only; the authority reports "
                "others' (Art. 21)"
            )
        if reporter.role is Role.AUTHORITY and not operator_in_scope(conn, reporter, op.id):
            require_authority(
                reporter, "city", "report incidents of operators outside its county", "Art. 21"
            )
        mine = active_of(conn, op.id)
        direct = _direct_grants(conn, op.id)
        scope = {"agreements": [a.id for a in mine], "grants": direct}
        inserted = conn.execute(
            incidents.insert().values(
                operator_id=op.id,
                reported_by=reporter.id,
                kind=kind.value,
                description=description,
                suspended_json=json.dumps(scope),
                created_at=now_utc(),
            )
        )
        incident = inserted_id(inserted)
        platform.record(
            conn,
            reporter.actor,
            "incident.reported",
            f"incident:{incident}",
            {"operator": op.name, "kind": kind.value, **scope},
            "Art. 21",
        )
        _suspend_everything(platform, conn, reporter, op, mine, direct, incident, kind)
        signers = {a.signed_by for a in mine} or _city_authorities(conn)
        signers |= _providers_of(conn, op.id)
        notified = [
            notify(
                platform,
                conn,
                reporter.actor,
                s,
                "incident",
                f"incident:{incident}",
                {"operator": op.name, "kind": kind.value, "description": description},
                "Art. 21",
            )
            for s in sorted(signers)
        ]
    return {"incident": incident, "suspended": scope["agreements"], "grants": direct,
            "notified": notified}  # fmt: skip


def _direct_grants(conn: Connection, operator_id: int) -> list[int]:
    """The operator's active grants made without an agreement (``sandbox grant add``)."""
    return list(
        conn.execute(
            select(grants.c.id).where(
                grants.c.operator_id == operator_id,
                grants.c.agreement_id.is_(None),
                grants.c.status == GrantStatus.ACTIVE.value,
            )
        ).scalars()
    )


def _suspend_everything(
    platform: Platform, conn: Connection, reporter: Principal, op, mine, direct, incident, kind
) -> None:
    """Every active agreement and direct grant of the operator suspended, its jobs
    cancelled and its held outputs frozen, in the reporting transaction (Art. 21)."""
    reason = f"incident {incident} ({kind.value})"
    for agreement in mine:
        suspend_in(platform, conn, reporter.actor, agreement.id, reason, "Art. 21")
    for grant_id in direct:
        conn.execute(
            grants.update()
            .where(grants.c.id == grant_id)
            .values(status=GrantStatus.SUSPENDED.value)
        )
        platform.record(
            conn,
            reporter.actor,
            "grant.suspended",
            f"grant:{grant_id}",
            {"from": "active", "to": "suspended", "reason": reason},
            "Art. 21",
        )
    cancel_operator_jobs(platform, conn, op.id, reason, "Art. 21")  # all of its data use
    freeze(platform, conn, reporter.actor, op.id, None)


def _providers_of(conn: Connection, operator_id: int) -> set[int]:
    """The providers of the datasets the operator holds a grant on: the authorizing
    units of its data use, told of its incidents (Art. 5, 21)."""
    return set(
        conn.execute(
            select(datasets.c.provider_id)
            .join(grants, grants.c.dataset_id == datasets.c.id)
            .where(grants.c.operator_id == operator_id)
        ).scalars()
    )


def _city_authorities(conn: Connection) -> set[int]:
    return set(
        conn.execute(
            select(principals.c.id).where(
                principals.c.role == Role.AUTHORITY.value, principals.c.jurisdiction == "city"
            )
        ).scalars()
    )
