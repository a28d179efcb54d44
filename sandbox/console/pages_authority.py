"""The authority's pages: an inbox of what waits for it, and the agreements with their
state and history, suspended or restored with the article shown.

The same functions as the API's routes: :func:`sandbox.workflow.held.held_outputs`,
:func:`sandbox.workflow.reading.applications_for`,
:func:`sandbox.workflow.supervision.notifications_of`,
:func:`sandbox.workflow.agreements.agreements_for` and ``agreement_dict`` (a county
authority sees its county only), :func:`~sandbox.workflow.jurisdiction.read_ledger` for an
agreement's history, and :func:`~sandbox.workflow.agreements.suspend` and ``restore``
(Art. 24), which check the role, the jurisdiction and the state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from sandbox.console.web import (
    PREFIX,
    ConsoleRoute,
    CurrentSession,
    FormSession,
    redirect,
    render,
)
from sandbox.core.principals import Role
from sandbox.workflow import agreements, held, reading, supervision
from sandbox.workflow.jurisdiction import read_ledger

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

MAX_ID = 2**53
REASON_MAX = 2000
WAITING = ("submitted", "under_review")


@router.get("/inbox")
def inbox(request: Request, session: CurrentSession) -> Response:
    platform = request.app.state.platform
    me = session.principal
    outputs = []
    if me.role in (Role.REVIEWER, Role.AUTHORITY, Role.AUDITOR):
        outputs = [o for o in held.held_outputs(platform, me) if o["status"] != "approved"]
    with platform.store.read() as conn:
        waiting = reading.applications_for(conn, me, WAITING)
        deals = agreements.agreements_for(conn, me)
    return render(
        request,
        "inbox.html",
        {
            "outputs": outputs,
            "applications": waiting,
            "suspended": [a for a in deals if a["status"] == "suspended"],
            "notifications": list(reversed(supervision.notifications_of(platform, me)))[:50],
        },
    )


@router.get("/agreements")
def agreements_page(request: Request, session: CurrentSession) -> Response:
    with request.app.state.platform.store.read() as conn:
        items = agreements.agreements_for(conn, session.principal)
    return render(request, "agreements.html", {"items": items})


@router.get("/agreements/{agreement_id}")
def agreement_page(
    request: Request,
    session: CurrentSession,
    agreement_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
) -> Response:
    me = session.principal
    with request.app.state.platform.store.read() as conn:
        item = agreements.agreement_dict(conn, me, agreement_id)
        history = []
        if me.role in (Role.AUTHORITY, Role.AUDITOR):
            history = read_ledger(conn, me, subject=f"agreement:{agreement_id}", limit=200)
    return render(
        request,
        "agreement.html",
        {"a": item, "history": history, "may_act": me.role is Role.AUTHORITY},
    )


@router.post("/agreements/{agreement_id}/suspend")
def agreement_suspend(
    request: Request,
    session: FormSession,
    agreement_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
) -> Response:
    """Suspend as ``POST /v1/agreements/{id}/suspend`` does: jobs stop, reads stop (Art. 24)."""
    platform = request.app.state.platform
    agreements.suspend(platform, session.principal, agreement_id, reason)
    return redirect(f"/agreements/{agreement_id}")


@router.post("/agreements/{agreement_id}/restore")
def agreement_restore(
    request: Request,
    session: FormSession,
    agreement_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
) -> Response:
    platform = request.app.state.platform
    agreements.restore(platform, session.principal, agreement_id, reason)
    return redirect(f"/agreements/{agreement_id}")
