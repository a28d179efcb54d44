"""The inbox every role has, and the authority's agreements with their state and history,
suspended or restored with the article shown.

The same functions as the API's routes: :func:`sandbox.workflow.held.held_outputs` (the
held outputs a checker, an authority or an auditor may review),
:func:`sandbox.workflow.lists.list_page` (applications, data requests and agreements as
their readers may see them: a county authority its county's, a provider those on its
data), :func:`sandbox.registry.inbox.inbox_of` (the principal's notifications),
``agreement_dict`` and :func:`~sandbox.registry.jurisdiction.read_ledger` for an
agreement and its history, and :func:`~sandbox.workflow.agreements.suspend` and
``restore`` (Art. 24), which check the role, the jurisdiction and the state. An
agreement's evaluations (Art. 23) are listed as ``list_page`` gives them, and recorded from
its page with :func:`sandbox.workflow.supervision.evaluate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Form, Request
from fastapi.responses import Response

from policies.errors import PermissionDenied, SandboxError
from sandbox.console.web import (
    CurrentSession,
    FormSession,
    Id,
    console_router,
    redirect,
    render,
)
from sandbox.core.codes import status_for
from sandbox.core.principals import Principal, Role
from sandbox.registry.inbox import inbox_of
from sandbox.registry.jurisdiction import read_ledger
from sandbox.workflow import agreements, held, supervision
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


def _agreement(request: Request, me: Principal, agreement_id: int, **extra: Any) -> Response:
    """The agreement's page: its terms, its evaluations, its history; ``extra`` carries a
    refusal shown in place and the values typed."""
    platform = request.app.state.platform
    with platform.store.read() as conn:
        item = agreements.agreement_dict(conn, me, agreement_id)
        history = []
        if me.role in (Role.AUTHORITY, Role.AUDITOR):
            history = read_ledger(conn, me, subject=f"agreement:{agreement_id}", limit=200)
    evaluations = [e for e in listed(platform, me, "evaluations") if e["agreement"] == agreement_id]
    status = extra.pop("status", 200)
    context = {
        "a": item,
        "history": history,
        "evaluations": evaluations,
        "may_act": me.role is Role.AUTHORITY,
        "evaluation_form": {},
        "evaluation_error": None,
        **extra,
    }
    return render(request, "agreement.html", context, status=status)


@router.get("/agreements/{agreement_id}")
def agreement_page(
    request: Request,
    session: CurrentSession,
    agreement_id: Id,
) -> Response:
    return _agreement(request, session.principal, agreement_id)


@router.post("/agreements/{agreement_id}/evaluate")
def agreement_evaluate(
    request: Request,
    session: FormSession,
    agreement_id: Id,
    result: Annotated[Literal["pass", "fail"], Form()],
    notes: Annotated[str, Form(max_length=REASON_MAX)] = "",
    deadline: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Record an evaluation as ``sandbox evaluate`` and ``POST /v1/agreements/{id}/evaluations`` do
    (:func:`sandbox.workflow.supervision.evaluate`, Art. 23): a failed one sets the
    rectification deadline and suspends the agreement (Art. 24). A refusal is shown in
    the form, the values typed kept."""
    try:
        supervision.evaluate(
            request.app.state.platform,
            session.principal,
            agreement_id,
            passed=result == "pass",
            notes=notes.strip(),
            deadline=deadline.strip() or None,
        )
    except SandboxError as exc:
        typed = {"result": result, "notes": notes, "deadline": deadline}
        return _agreement(
            request,
            session.principal,
            agreement_id,
            evaluation_form=typed,
            evaluation_error=exc.to_dict(),
            status=status_for(exc),
        )
    return redirect(f"/agreements/{agreement_id}?evaluated=1")


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


@router.post("/agreements/{agreement_id}/rectify")
def agreement_rectify(
    request: Request,
    session: FormSession,
    agreement_id: Id,
    notes: Annotated[str, Form(max_length=REASON_MAX)] = "",
) -> Response:
    """Accept the rectification after a failed evaluation, as ``sandbox rectify`` and
    ``POST /v1/agreements/{id}/rectify`` do (:func:`sandbox.workflow.supervision.rectify`):
    the evaluation is marked rectified and the agreement restored (Art. 24)."""
    supervision.rectify(request.app.state.platform, session.principal, agreement_id, notes.strip())
    return redirect(f"/agreements/{agreement_id}?rectified=1")


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
