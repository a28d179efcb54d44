"""Operation agreements (Art. 13) and their lifecycle (Art. 24).

An agreement follows a passed review and carries every field Art. 13 names:
parties, scope (datasets and columns, job kinds, product kinds, disclosure
parameters), term, rights and duties, security requirements, exit conditions,
breach liability and the disposal of derived products at expiry
(:mod:`sandbox.registry.disposal`). States::

    active -> suspended -> active | terminated | expired;   active -> expired

Suspension (failed evaluation or incident) cancels the queued and running jobs
that read data under the agreement's grants (the operator's other agreements go
on) and freezes its held outputs, in the same transaction. At expiry
(and at termination) the disposal clause runs: the operator's products made
under the agreement are deleted or handed to the signing authority, each
recorded. :mod:`sandbox.registry.terms` gives the job gate
(:func:`sandbox.data.grants.may_run`) what it needs to refuse outside an active,
in-term, in-scope agreement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.disclosure import DisclosureParams
from policies.errors import Conflict, InputError, NotFound, PermissionDenied
from policies.workflow import (
    AgreementState,
    ApplicationState,
    Disposal,
    EvaluationState,
    refuse,
)
from sandbox.core.ledger import Actor
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import grants
from sandbox.registry.base import (
    create,
    get,
    move,
    need_text,
    now_or,
    parse_time,
    require_authority,
)
from sandbox.registry.disposal import dispose_in, expire, products_under
from sandbox.registry.inbox import tell_agreement
from sandbox.registry.tables import (
    agreements,
    applications,
    evaluations,
    notices,
)
from sandbox.workflow import schedules
from sandbox.workflow.countersign import names_provider_data, signatures_of
from sandbox.workflow.reporting import check_every, set_in

# expiry and disposal live in sandbox.registry.disposal; their callers find them here too
__all__ = [
    "active_of",
    "agreement_dict",
    "expire",
    "products_under",
    "restore",
    "restore_in",
    "sign",
    "suspend",
    "suspend_in",
    "terminate",
]


def sign(
    platform: Platform,
    authority: Principal,
    application_id: int,
    *,
    valid_from: str | datetime,
    valid_until: str | datetime,
    rights_duties: str,
    security_requirements: str,
    exit_conditions: str,
    breach_liability: str,
    disposal: Disposal,
    review_required: bool = False,
    disclosure: Mapping | None = None,
    aggregates: Sequence[str] = (),
    report_every: str | None = None,
    training_every: str | None = None,
    drill_every: str | None = None,
    evaluate_every: str | None = None,
) -> int:
    """Sign the agreement of a passed application; it is active from signing.
    ``report_every`` (month or quarter) makes the operator's usage reports due on that
    schedule (Art. 16, :mod:`sandbox.workflow.reporting`); ``training_every``,
    ``drill_every`` and ``evaluate_every`` (month, quarter or year) its trainings, drills
    and evaluations (Art. 20, 21, 23, :mod:`sandbox.workflow.schedules`)."""
    check_every(report_every)
    duties = schedules.check({"training": training_every, "drill": drill_every,
                              "evaluation": evaluate_every})  # fmt: skip
    texts = {"rights_duties": rights_duties, "security_requirements": security_requirements,
             "exit_conditions": exit_conditions, "breach_liability": breach_liability}  # fmt: skip
    need_text(texts, "Art. 13")
    disposal = Disposal(disposal)
    start, end = _term(valid_from, valid_until)
    overrides = dict(disclosure or {})
    DisclosureParams().tightened(overrides)  # validates names and values
    with platform.store.transaction() as conn:
        app, notice = _signable(conn, authority, application_id)
        operator = by_id(conn, app.operator_id)
        scope = _scope(app, overrides, aggregates)
        agreement_id = create(
            platform,
            conn,
            agreements,
            "agreement",
            AgreementState.ACTIVE,
            authority.actor,
            {
                "application_id": application_id,
                "operator_id": operator.id,
                "signed_by": authority.id,
                "jurisdiction": notice.jurisdiction,
                "scope_json": json.dumps(scope, sort_keys=True),
                "valid_from": start.isoformat(),
                "valid_until": end.isoformat(),
                "rights_duties": rights_duties,
                "security_requirements": security_requirements,
                "exit_conditions": exit_conditions,
                "breach_liability": breach_liability,
                "disposal": disposal.value,
                "review_required": bool(review_required),
            },
            {
                "parties": {"authority": authority.name, "operator": operator.name},
                "application": application_id,
                "scope": scope,
                "term": [start.isoformat(), end.isoformat()],
                "disposal": disposal.value,
                "review_required": bool(review_required),
                "report_every": report_every,
                "duties_every": {d.value: every for d, every in duties.items()},
            },
        )
        if report_every:
            set_in(conn, agreement_id, report_every)
        schedules.set_in(conn, agreement_id, duties, start, authority.id)
        return agreement_id


def _scope(app: Row, disclosure: dict, aggregates: Sequence[str]) -> dict:
    """What the agreement covers: the application's datasets and kinds, with the
    signing's stricter disclosure parameters and extra aggregates."""
    return {
        "datasets": json.loads(app.datasets_json),
        "job_kinds": json.loads(app.job_kinds_json),
        "product_kinds": json.loads(app.product_kinds_json),
        "disclosure": disclosure,
        "aggregates": sorted(set(aggregates)),
    }


def _term(valid_from: str | datetime, valid_until: str | datetime) -> tuple[datetime, datetime]:
    start = parse_time(valid_from, "--from")
    end = parse_time(valid_until, "--until", end=True)
    if end <= start:
        raise InputError(
            "the agreement's term must end after it starts (Art. 13)", article="Art. 13"
        )
    return start, end


def _signable(conn: Connection, authority: Principal, application_id: int) -> tuple[Row, Row]:
    """The application and its notice, if this authority may sign for it now: the
    notice is in its jurisdiction, the review passed, a security officer is named, and
    no agreement exists yet (Art. 13, 20)."""
    app = get(conn, applications, application_id, "application")
    notice = get(conn, notices, app.notice_id, "notice")
    require_authority(authority, notice.jurisdiction, "sign agreements", "Art. 13")
    if ApplicationState(app.status) is not ApplicationState.PASSED:
        raise refuse(
            "review_not_passed",
            f"application {application_id} is {app.status}; an agreement needs a passed "
            "qualification review",
            "Art. 13",
            f"application:{application_id}",
        )
    if not app.security_officer.strip():
        raise refuse(
            "security_officer_required",
            "the operator names no data-security officer",
            "Art. 20",
            f"application:{application_id}",
        )
    if conn.execute(
        select(agreements.c.id).where(agreements.c.application_id == application_id)
    ).first():
        raise Conflict(f"application {application_id} already has an agreement")
    return app, notice


# --- suspension, restoration, termination -------------------------------------------------


def _cancel_jobs(
    platform: Platform, conn: Connection, agreement_id: int, reason: str, article: str
) -> list[int]:
    """The queued and running jobs that read data under this agreement's grants fail at
    once (Art. 24); the operator's jobs under its other agreements go on."""
    from sandbox.workflow.providers import cancel_jobs_using

    mine = conn.execute(select(grants.c.id).where(grants.c.agreement_id == agreement_id))
    return cancel_jobs_using(platform, conn, list(mine.scalars()), reason, article)


def suspend_in(
    platform: Platform,
    conn: Connection,
    actor: Actor,
    agreement_id: int,
    reason: str,
    article: str = "Art. 24",
    deadline: datetime | None = None,
    tell: bool = True,
) -> None:
    """Suspend inside the caller's transaction: cancel jobs, freeze held outputs, and
    tell the operator (``tell=False`` when the caller sends its own notice)."""
    from sandbox.workflow.airlock import freeze

    row = get(conn, agreements, agreement_id, "agreement")
    move(
        platform,
        conn,
        agreements,
        "agreement",
        agreement_id,
        AgreementState.SUSPENDED,
        actor,
        {"reason": reason, "rectify_by": deadline.isoformat() if deadline else None},
        article,
        rectify_deadline=deadline.isoformat() if deadline else None,
    )
    cancelled = _cancel_jobs(platform, conn, agreement_id, reason, article)
    freeze(platform, conn, actor, row.operator_id, agreement_id)
    if tell:
        body = {"reason": reason, "rectify_by": deadline.isoformat() if deadline else None,
                "cancelled_jobs": cancelled}  # fmt: skip
        tell_agreement(platform, conn, actor, row, "agreement_suspended", body, article)


def restore_in(
    platform: Platform, conn: Connection, actor: Actor, agreement_id: int, reason: str
) -> None:
    from sandbox.workflow.airlock import unfreeze

    row = get(conn, agreements, agreement_id, "agreement")
    move(
        platform,
        conn,
        agreements,
        "agreement",
        agreement_id,
        AgreementState.ACTIVE,
        actor,
        {"reason": reason},
        "Art. 24",
        rectify_deadline=None,
    )
    unfreeze(platform, conn, actor, row.operator_id, agreement_id)
    tell_agreement(platform, conn, actor, row, "agreement_restored", {"reason": reason}, "Art. 24")


def _authority_row(
    conn: Connection, authority: Principal, agreement_id: int, action: str, article: str
) -> Row:
    row = get(conn, agreements, agreement_id, "agreement")
    require_authority(authority, row.jurisdiction, action, article)
    return row


def suspend(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    reason: str,
    deadline: str | datetime | None = None,
) -> None:
    need_text({"reason": reason}, "Art. 24")
    until = parse_time(deadline, "--deadline", end=True) if deadline else None
    with platform.store.transaction() as conn:
        _authority_row(conn, authority, agreement_id, "suspend agreements", "Art. 24")
        suspend_in(platform, conn, authority.actor, agreement_id, reason, "Art. 24", until)


def restore(platform: Platform, authority: Principal, agreement_id: int, reason: str) -> None:
    need_text({"reason": reason}, "Art. 24")
    with platform.store.transaction() as conn:
        _authority_row(conn, authority, agreement_id, "restore agreements", "Art. 24")
        restore_in(platform, conn, authority.actor, agreement_id, reason)


def terminate(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    reason: str,
    now: datetime | None = None,
) -> list[str]:
    """End a suspended agreement whose rectification deadline passed (Art. 24)."""
    need_text({"reason": reason}, "Art. 24")
    with platform.store.transaction() as conn:
        row = _authority_row(conn, authority, agreement_id, "terminate agreements", "Art. 24")
        if row.rectify_deadline and now_or(now) < parse_time(row.rectify_deadline):
            raise refuse(
                "rectification_pending",
                f"agreement {agreement_id} may be rectified until {row.rectify_deadline}",
                "Art. 24",
                f"agreement:{agreement_id}",
                "terminate after the deadline, or mark it rectified",
            )
        move(
            platform,
            conn,
            agreements,
            "agreement",
            agreement_id,
            AgreementState.TERMINATED,
            authority.actor,
            {"reason": reason},
        )
        for ev in conn.execute(
            select(evaluations.c.id).where(
                evaluations.c.agreement_id == agreement_id,
                evaluations.c.status == EvaluationState.FAILED.value,
            )
        ).all():
            move(
                platform,
                conn,
                evaluations,
                "evaluation",
                ev.id,
                EvaluationState.TERMINATED,
                authority.actor,
                {"agreement": agreement_id},
            )
        done = dispose_in(platform, conn, authority.actor, row)
        body = {"reason": reason, "disposal": row.disposal, "products": done}
        tell_agreement(
            platform, conn, authority.actor, row, "agreement_terminated", body, "Art. 24"
        )
        return done


# --- reading ---------------------------------------------------------------------------------


def agreement_dict(conn: Connection, viewer: Principal, agreement_id: int) -> dict:
    row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
    if row is None or (viewer.role is Role.OPERATOR and row.operator_id != viewer.id):
        raise NotFound(f"no agreement {agreement_id} that you may read")
    if viewer.role is Role.AUTHORITY:
        require_authority(viewer, row.jurisdiction, "read agreements", "Art. 5")
    elif viewer.role is Role.PROVIDER and not names_provider_data(conn, viewer, row):
        raise NotFound(f"no agreement {agreement_id} that you may read")  # not its data
    elif viewer.role not in (Role.OPERATOR, Role.AUDITOR, Role.PROVIDER):
        raise PermissionDenied(
            f"a {viewer.role.value} may not read agreements (Art. 13)", article="Art. 13"
        )
    return {
        "id": row.id,
        "status": row.status,
        "parties": {
            "authority": by_id(conn, row.signed_by).name,
            "operator": by_id(conn, row.operator_id).name,
            # the providers, each signing for its own datasets (Art. 4, 13)
            "providers": signatures_of(conn, row),
        },
        "application": row.application_id,
        "jurisdiction": row.jurisdiction,
        "scope": json.loads(row.scope_json),
        "term": {"from": row.valid_from, "until": row.valid_until},
        "rights_duties": row.rights_duties,
        "security_requirements": row.security_requirements,
        "exit_conditions": row.exit_conditions,
        "breach_liability": row.breach_liability,
        "disposal": row.disposal,
        "review_required": bool(row.review_required),
        "rectify_deadline": row.rectify_deadline,
        "grants": [
            r.id for r in conn.execute(select(grants.c.id).where(grants.c.agreement_id == row.id))
        ],
        "schedules": schedules.schedules_of(conn, row, now_or(None)),
    }


def active_of(conn: Connection, operator_id: int) -> Sequence[Row]:
    return conn.execute(
        select(agreements)
        .where(
            agreements.c.operator_id == operator_id,
            agreements.c.status == AgreementState.ACTIVE.value,
        )
        .order_by(agreements.c.id)
    ).all()
