"""Qualification review (Art. 12): appointed experts score an application.

The authority of the notice's jurisdiction appoints reviewers; a reviewer of
the applicant's own organisation is refused (separation of duties). Each
reviewer scores capability, scenario and security (0 to 100) once. When every
appointed reviewer has scored and there are enough of them, the notice's pass
rule (:func:`policies.workflow.review_verdict`) moves the application to
passed or failed, in the same transaction as the last score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select

from policies.errors import Conflict, InputError, PermissionDenied
from policies.workflow import (
    DIMENSIONS,
    Aggregate,
    ApplicationState,
    PassRule,
    ReviewState,
    check_not_own_org,
    check_scores,
    review_verdict,
)
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name, require_role
from sandbox.registry.base import create, get, move, names, require_authority
from sandbox.registry.inbox import notify
from sandbox.registry.tables import applications, notices, review_appointments


def appoint(
    platform: Platform, authority: Principal, application_id: int, reviewers: Sequence[str]
) -> list[int]:
    """Appoint reviewers to an application; returns the appointment ids."""
    wanted = names(reviewers)
    if not wanted:
        raise InputError("name at least one --reviewer (Art. 12)", article="Art. 12")
    with platform.store.transaction() as conn:
        app = get(conn, applications, application_id, "application")
        notice = get(conn, notices, app.notice_id, "notice")
        require_authority(authority, notice.jurisdiction, "appoint reviewers", "Art. 12")
        state = ApplicationState(app.status)
        if state not in (ApplicationState.SUBMITTED, ApplicationState.UNDER_REVIEW):
            raise Conflict(
                f"application {application_id} is {state.value}; its review is closed (Art. 12)",
                article="Art. 12",
            )
        applicant = by_id(conn, app.operator_id)
        ids = []
        for name in wanted:
            reviewer = by_name(conn, name, Role.REVIEWER)
            check_not_own_org(
                reviewer.name, reviewer.org, applicant.org, "application it is", "Art. 12"
            )
            taken = conn.execute(
                select(review_appointments.c.id).where(
                    review_appointments.c.application_id == application_id,
                    review_appointments.c.reviewer_id == reviewer.id,
                )
            ).first()
            if taken:
                raise Conflict(f"{name} is already appointed to application {application_id}")
            ids.append(
                create(
                    platform,
                    conn,
                    review_appointments,
                    "review",
                    ReviewState.APPOINTED,
                    authority.actor,
                    {
                        "application_id": application_id,
                        "reviewer_id": reviewer.id,
                        "appointed_by": authority.id,
                    },
                    {"application": application_id, "reviewer": name},
                )
            )
        if state is ApplicationState.SUBMITTED:
            move(
                platform,
                conn,
                applications,
                "application",
                application_id,
                ApplicationState.UNDER_REVIEW,
                authority.actor,
                {"reviewers": wanted},
            )
    return ids


def score(
    platform: Platform,
    reviewer: Principal,
    application_id: int,
    *,
    capability: int,
    scenario: int,
    security: int,
    comment: str = "",
) -> ApplicationState:
    """Record one reviewer's scores; returns the application's state afterwards."""
    require_role(reviewer, Role.REVIEWER, action="score applications", article="Art. 12")
    scores = check_scores({"capability": capability, "scenario": scenario, "security": security})
    with platform.store.transaction() as conn:
        app = get(conn, applications, application_id, "application")
        applicant = by_id(conn, app.operator_id)
        check_not_own_org(
            reviewer.name, reviewer.org, applicant.org, "application it is", "Art. 12"
        )
        mine = conn.execute(
            select(review_appointments).where(
                review_appointments.c.application_id == application_id,
                review_appointments.c.reviewer_id == reviewer.id,
            )
        ).first()
        if mine is None:
            raise PermissionDenied(
                f"{reviewer.name} is not appointed to review application {application_id} "
                "(Art. 12)",
                article="Art. 12",
                code="not_appointed",
            )
        if ApplicationState(app.status) is not ApplicationState.UNDER_REVIEW:
            raise Conflict(f"application {application_id} is {app.status}, not under review")
        move(
            platform,
            conn,
            review_appointments,
            "review",
            mine.id,
            ReviewState.SCORED,
            reviewer.actor,
            {"application": application_id, "scores": scores},
            scores_json=json.dumps(scores),
            comment=comment,
        )
        rows = conn.execute(
            select(review_appointments.c.scores_json).where(
                review_appointments.c.application_id == application_id
            )
        ).all()
        if any(r.scores_json is None for r in rows):
            return ApplicationState.UNDER_REVIEW
        notice = get(conn, notices, app.notice_id, "notice")
        rule = PassRule.from_dict(json.loads(notice.pass_rule_json))
        verdict = review_verdict([json.loads(r.scores_json) for r in rows], rule)
        if verdict is None:
            return ApplicationState.UNDER_REVIEW
        move(
            platform,
            conn,
            applications,
            "application",
            application_id,
            verdict,
            reviewer.actor,
            {"rule": rule.to_dict(), "reviewers": len(rows)},
        )
        body = {"application": application_id, "result": verdict.value,
                "scores": _combined([json.loads(r.scores_json) for r in rows], rule),
                "pass_score": rule.min_score}  # fmt: skip
        for recipient in sorted({app.operator_id, notice.published_by}):
            notify(platform, conn, reviewer.actor, recipient, f"application_{verdict.value}",
                   f"application:{application_id}", body, "Art. 12")  # fmt: skip
        return verdict


def _combined(scores: list[dict], rule: PassRule) -> dict[str, float]:
    """Each dimension's combined score, as the pass rule combines them (mean or min); the
    applicant learns the result, not each reviewer's marks (Art. 12)."""
    if rule.aggregate is Aggregate.MIN:
        return {d: min(s[d] for s in scores) for d in DIMENSIONS}
    return {d: round(sum(s[d] for s in scores) / len(scores), 1) for d in DIMENSIONS}


def reviews_of(platform: Platform, viewer: Principal, application_id: int) -> list[dict]:
    """The scores of an application, for its authority and auditors (after the fact): an
    authority whose jurisdiction covers the application's notice (Art. 5)."""
    require_role(viewer, Role.AUTHORITY, Role.AUDITOR, action="read reviews", article="Art. 12")
    with platform.store.read() as conn:
        if viewer.role is Role.AUTHORITY:
            app = get(conn, applications, application_id, "application")
            notice = get(conn, notices, app.notice_id, "notice")
            require_authority(viewer, notice.jurisdiction, "read reviews", "Art. 12")
        rows = conn.execute(
            select(review_appointments)
            .where(review_appointments.c.application_id == application_id)
            .order_by(review_appointments.c.id)
        ).all()
        return [
            {
                "review": r.id,
                "reviewer": by_id(conn, r.reviewer_id).name,
                "status": r.status,
                "scores": json.loads(r.scores_json) if r.scores_json else None,
            }
            for r in rows
        ]
