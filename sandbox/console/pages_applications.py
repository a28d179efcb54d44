"""Applications (Art. 11, 12): the reviewers appointed to one read it and score it.

The same functions as the CLI and the API: :func:`sandbox.workflow.lists.list_page` for the
applications and reviews a principal may list (a reviewer those it is appointed to),
:func:`sandbox.workflow.reading.application_for` for one application (the applicant, a
covering authority, the appointed reviewers, auditors), ``reviews_of`` for the scores
(its authority and auditors), and :func:`sandbox.workflow.reviews.score`, the function of
``sandbox review score`` and ``POST /v1/applications/{id}/scores``: a reviewer of the
applicant's organisation, one not appointed, a second score and an application no longer
under review are refused there, by name, and shown in place.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from policies.errors import PermissionDenied, SandboxError
from sandbox.console.web import CurrentSession, FormSession, Id, console_router, redirect, render
from sandbox.core.codes import status_for
from sandbox.core.principals import Principal, Role
from sandbox.workflow import notices, reviews
from sandbox.workflow.lists import MAX_PAGE, list_page
from sandbox.workflow.reading import application_for

router = console_router()

COMMENT_MAX = 2000
DIMENSIONS = ("capability", "scenario", "security")


def _mine(platform, me: Principal) -> dict[int, dict[str, Any]]:
    """The reviewer's own reviews, by application."""
    if me.role is not Role.REVIEWER:
        return {}
    items = list_page(platform, me, "reviews", limit=MAX_PAGE)["items"]
    return {r["application"]: r for r in items}


@router.get("/applications")
def applications_page(request: Request, session: CurrentSession) -> Response:
    platform, me = request.app.state.platform, session.principal
    items = list_page(platform, me, "applications", limit=MAX_PAGE)["items"]
    return render(request, "applications.html", {"items": items, "mine": _mine(platform, me)})


def _application(request: Request, me: Principal, application_id: int, **extra: Any) -> Response:
    platform = request.app.state.platform
    with platform.store.read() as conn:
        item = application_for(conn, me, application_id)
        notice = notices.notice_dict(conn, item["notice"])
    scores = []
    if me.role in (Role.AUTHORITY, Role.AUDITOR):
        scores = reviews.reviews_of(platform, me, application_id)
    mine = _mine(platform, me).get(application_id)
    status = extra.pop("status", 200)
    context = {
        "app": item,
        "notice": notice,
        "scores": scores,
        "mine": mine,
        "may_score": mine is not None
        and mine["status"] != "scored"
        and item["status"] == "under_review",
        "dimensions": DIMENSIONS,
        "form": {},
        "error": None,
        **extra,
    }
    return render(request, "application.html", context, status=status)


@router.get("/applications/{application_id}")
def application_page(request: Request, session: CurrentSession, application_id: Id) -> Response:
    return _application(request, session.principal, application_id)


@router.post("/applications/{application_id}/score")
def application_score(
    request: Request,
    session: FormSession,
    application_id: Id,
    capability: Annotated[int, Form()],
    scenario: Annotated[int, Form()],
    security: Annotated[int, Form()],
    comment: Annotated[str, Form(max_length=COMMENT_MAX)] = "",
) -> Response:
    """Score as ``POST /v1/applications/{id}/scores`` does; a refusal is shown in place."""
    me = session.principal
    try:
        reviews.score(
            request.app.state.platform,
            me,
            application_id,
            capability=capability,
            scenario=scenario,
            security=security,
            comment=comment.strip(),
        )
    except SandboxError as exc:
        typed = {"capability": capability, "scenario": scenario, "security": security}
        try:
            return _application(
                request,
                me,
                application_id,
                form={**typed, "comment": comment},
                error=exc.to_dict(),
                status=status_for(exc),
            )
        except PermissionDenied:
            raise exc from None  # it may not read the application either: the score's refusal
    return redirect(f"/applications/{application_id}?scored=1")
