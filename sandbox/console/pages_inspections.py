"""Inspections (Art. 22): an authority, a provider or an auditor records findings and
rectification tasks with a deadline; the operator reads them and reports them rectified;
the inspector closes the inspection.

The functions of ``sandbox inspect`` and its routes, :mod:`sandbox.workflow.inspections`:
``inspect`` (who may inspect which operator: an authority within its reach, a provider
whose data the operator holds a grant on, an auditor any), ``rectify`` (the inspected
operator only, when tasks were set), ``close`` (the inspector, or the city authority) and
``inspections_of`` (what each principal may read). A refusal is shown above the list with
its rule and article, the values typed kept.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from policies.errors import SandboxError
from sandbox.console.web import CurrentSession, FormSession, Id, console_router, redirect, render
from sandbox.core.codes import status_for
from sandbox.core.principals import Principal, Role
from sandbox.workflow import inspections

router = console_router()

TEXT_MAX = 4000
INSPECTORS = (Role.AUTHORITY, Role.PROVIDER, Role.AUDITOR)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _page(request: Request, me: Principal, status: int = 200, **extra: Any) -> Response:
    items = inspections.inspections_of(request.app.state.platform, me)
    context = {
        "items": list(reversed(items)),
        "may_inspect": me.role in INSPECTORS,
        "form": {},
        "error": None,
        "failed": None,
        **extra,
    }
    return render(request, "inspections.html", context, status=status)


@router.get("/inspections")
def inspections_page(request: Request, session: CurrentSession) -> Response:
    return _page(request, session.principal)


@router.post("/inspections")
def inspection_record(
    request: Request,
    session: FormSession,
    operator: Annotated[str, Form(max_length=100)] = "",
    findings: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    tasks: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    deadline: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Record as ``sandbox inspect`` does; a refusal is shown above the form."""
    try:
        inspection = inspections.inspect(
            request.app.state.platform,
            session.principal,
            operator.strip(),
            _lines(findings),
            _lines(tasks),
            deadline.strip() or None,
        )
    except SandboxError as exc:
        typed = {"operator": operator, "findings": findings, "tasks": tasks, "deadline": deadline}
        return _refused(request, session.principal, exc, form=typed)
    return redirect(f"/inspections#inspection-{inspection}")


def _refused(request: Request, me: Principal, exc: SandboxError, **extra: Any) -> Response:
    try:
        return _page(request, me, status_for(exc), error=exc.to_dict(), **extra)
    except SandboxError:
        raise exc from None  # a role that reads no inspections: the act's own refusal


@router.post("/inspections/{inspection_id}/rectify")
def inspection_rectify(
    request: Request,
    session: FormSession,
    inspection_id: Id,
    notes: Annotated[str, Form(max_length=TEXT_MAX)] = "",
) -> Response:
    """The inspected operator reports its tasks done; the inspector is told (Art. 22)."""
    try:
        inspections.rectify(request.app.state.platform, session.principal, inspection_id, notes)
    except SandboxError as exc:
        return _refused(request, session.principal, exc, failed=inspection_id)
    return redirect(f"/inspections#inspection-{inspection_id}")


@router.post("/inspections/{inspection_id}/close")
def inspection_close(
    request: Request,
    session: FormSession,
    inspection_id: Id,
    notes: Annotated[str, Form(max_length=TEXT_MAX)] = "",
) -> Response:
    """The inspector (or the city authority) closes the inspection; the operator is told."""
    try:
        inspections.close(request.app.state.platform, session.principal, inspection_id, notes)
    except SandboxError as exc:
        return _refused(request, session.principal, exc, failed=inspection_id)
    return redirect(f"/inspections#inspection-{inspection_id}")
