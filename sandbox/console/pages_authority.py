"""The inbox every role has, and the authority's agreements with their state and history,
suspended or restored with the article shown.

The same functions as the API's routes: :func:`sandbox.workflow.held.held_outputs` (the
held outputs a checker, an authority or an auditor may review),
:func:`sandbox.workflow.lists.list_page` (applications, data requests and agreements as
their readers may see them: a county authority its county's, a provider those on its
data), :func:`sandbox.registry.inbox.inbox_of` (the principal's notifications),
``agreement_dict`` and :func:`~sandbox.registry.jurisdiction.read_ledger` for an
agreement and its history, and :func:`~sandbox.workflow.agreements.suspend` and
``restore`` (Art. 24), which check the role, the jurisdiction and the state.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from policies.errors import PermissionDenied
from sandbox.console.web import (
    CurrentSession,
    FormSession,
    Id,
    console_router,
    redirect,
    render,
)
from sandbox.core.principals import Principal, Role
from sandbox.registry.inbox import inbox_of
from sandbox.registry.jurisdiction import read_ledger
from sandbox.workflow import agreements, held
from sandbox.workflow.lists import MAX_PAGE, list_page

router = console_router()

REASON_MAX = 2000
NOTES = 50


def listed(platform, me: Principal, kind: str, *states: str) -> list[dict[str, Any]]:
    """The ``kind`` objects in ``states`` that ``me`` may see; none for a role that sees
    none of that kind (the list refuses it by name)."""
    try:
        items = list_page(platform, me, kind, limit=MAX_PAGE)["items"]
    except PermissionDenied:
        return []
    return [i for i in items if not states or i["status"] in states]


@router.get("/inbox")
def inbox(request: Request, session: CurrentSession) -> Response:
    platform = request.app.state.platform
    me = session.principal
    outputs = []
    if me.role in (Role.REVIEWER, Role.AUTHORITY, Role.AUDITOR):
        outputs = [o for o in held.held_outputs(platform, me) if o["status"] != "approved"]
    return render(
        request,
        "inbox.html",
        {
            "outputs": outputs,
            "applications": listed(platform, me, "applications", "submitted", "under_review"),
            "requests": listed(platform, me, "requests", "submitted"),
            "suspended": listed(platform, me, "agreements", "suspended"),
            "notifications": inbox_of(platform, me, limit=NOTES)["items"],
            "may_decide": me.role is Role.PROVIDER,
        },
    )


@router.get("/agreements")
def agreements_page(request: Request, session: CurrentSession) -> Response:
    items = listed(request.app.state.platform, session.principal, "agreements")
    return render(request, "agreements.html", {"items": items})


@router.get("/agreements/{agreement_id}")
def agreement_page(
    request: Request,
    session: CurrentSession,
    agreement_id: Id,
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
    agreement_id: Id,
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
    agreement_id: Id,
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
) -> Response:
    platform = request.app.state.platform
    agreements.restore(platform, session.principal, agreement_id, reason)
    return redirect(f"/agreements/{agreement_id}")
