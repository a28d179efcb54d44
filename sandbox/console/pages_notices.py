"""The authority's notices (Art. 10, 11): the notices every principal may read, and a form
that publishes one.

The list is :func:`sandbox.workflow.lists.list_page` (``notices``, readable by all, as
``GET /v1/notices``); publishing is :func:`sandbox.workflow.notices.publish`, the function
of ``sandbox notice publish`` and ``POST /v1/notices``: it checks the role and the
jurisdiction (a county authority publishes within its county only), the text, the
datasets named and the deadline (an ISO date, in the future). A refusal is shown above
the form with the values typed kept. The pass rule is the platform's default
(:class:`policies.workflow.PassRule`); another is set from the CLI or the API.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import Response

from policies.errors import SandboxError
from sandbox.console.web import CurrentSession, FormSession, console_router, redirect, render
from sandbox.core.codes import status_for
from sandbox.core.principals import Principal, Role
from sandbox.data.vault import list_datasets
from sandbox.workflow import notices
from sandbox.workflow.lists import MAX_PAGE, list_page

router = console_router()

TEXT_MAX = 2000
Short = Annotated[str, Form(max_length=200)]
Long = Annotated[str, Form(max_length=TEXT_MAX)]


def _page(
    request: Request,
    me: Principal,
    form: dict[str, Any] | None = None,
    error: dict | None = None,
    status: int = 200,
) -> Response:
    platform = request.app.state.platform
    with platform.store.read() as conn:
        names = [d["name"] for d in list_datasets(conn)]
    return render(
        request,
        "notices.html",
        {
            "items": list_page(platform, me, "notices", limit=MAX_PAGE)["items"],
            "may_publish": me.role is Role.AUTHORITY,
            "dataset_names": names,
            "form": form or {"datasets": []},
            "error": error,
            "published": request.query_params.get("published", ""),
        },
        status=status,
    )


@router.get("/notices")
def notices_page(request: Request, session: CurrentSession) -> Response:
    return _page(request, session.principal)


@router.post("/notices")
def notice_publish(
    request: Request,
    session: FormSession,
    title: Short = "",
    domain: Short = "",
    scenario: Long = "",
    datasets: Annotated[list[str] | None, Form(max_length=100)] = None,
    conditions: Long = "",
    deadline: Annotated[str, Form(max_length=40)] = "",
    jurisdiction: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Publish as ``POST /v1/notices`` does; a refusal is shown above the form."""
    wanted = [n for item in datasets or [] for n in re.split(r"[,\s]+", item) if n]
    form = {
        "title": title,
        "domain": domain,
        "scenario": scenario,
        "datasets": wanted,
        "conditions": conditions,
        "deadline": deadline,
        "jurisdiction": jurisdiction,
    }
    try:
        notice_id = notices.publish(
            request.app.state.platform,
            session.principal,
            title=title.strip(),
            domain=domain.strip(),
            scenario=scenario.strip(),
            datasets=wanted,
            conditions=conditions.strip(),
            deadline=deadline.strip(),
            jurisdiction=jurisdiction.strip() or None,
        )
    except SandboxError as exc:
        return _page(request, session.principal, form, exc.to_dict(), status_for(exc))
    return redirect(f"/notices?published={notice_id}")
