"""Models and scoring services (数据模型, 数据服务; docs/models.md): the signed model card
made readable, the services published from a model and the export of its file.

Who sees what is the platform's rule, through the functions the API's routes call:
:func:`sandbox.models.service.list_models` and :func:`~sandbox.models.service.show` (an
operator its own models, the authority and auditors all; any other role is refused, and
another operator's model is not found), :func:`sandbox.models.services.list_services` and
:func:`sandbox.models.export.list_exports` for a model's services and its export. The card
is verified against its signature (:func:`sandbox.models.card.verify_card`) before it is
shown, with its SHA-256 (the hash the ledger's ``model.trained`` entry holds).

The acts are those of ``sandbox score`` and ``sandbox model``:
:func:`~sandbox.models.services.define` (the operator proposes a scoring service from a
passed model: its bands), :func:`~sandbox.models.export.request_export` (the operator asks
to export the model's file), and for an authority covering the agreement
:func:`~sandbox.models.services.approve` and ``reject``,
:func:`~sandbox.models.export.approve_export` and ``reject_export``. The operator's forms
post through htmx and show a refusal in place (rule, message, article); the authority's
decisions are plain forms, as its other approvals are. Every form carries the CSRF token.
"""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from policies.errors import InputError, SandboxError
from policies.verification.common import ProductState
from sandbox.console.web import (
    PREFIX,
    CurrentSession,
    FormSession,
    console_router,
    local_path,
    render,
)
from sandbox.core.canonical import canonical
from sandbox.core.codes import status_for
from sandbox.core.principals import Principal, Role
from sandbox.models import export, service, services
from sandbox.models.card import verify_card
from sandbox.models.export import ExportState

router = console_router()

NAME = r"^[a-z][a-z0-9_]{0,63}$"  # a model's or a service's name, as the API's routes take it
BANDS_MAX = 2000
TEXT_MAX = 500
REASON_MAX = 2000
DONE = ("proposed", "export_requested")  # the notes a model page shows after an act
ModelName = Annotated[str, PathParam(pattern=NAME)]


def _decides(me: Principal) -> bool:
    return me.role is Role.AUTHORITY


def _pending(platform, me: Principal) -> dict[str, list[dict[str, Any]]]:
    """What waits for this authority's decision: defined services, requested exports
    (a county authority's lists hold its county's only)."""
    if me.role is not Role.AUTHORITY:
        return {"services": [], "exports": []}
    return {
        "services": [
            s
            for s in services.list_services(platform, me)
            if s["state"] == ProductState.DEFINED.value
        ],
        "exports": [
            e
            for e in export.list_exports(platform, me)
            if e["state"] == ExportState.REQUESTED.value
        ],
    }


@router.get("/models")
def models_page(request: Request, session: CurrentSession) -> Response:
    """The models the viewer may see (``GET /v1/models``), and for an authority what waits
    for its decision."""
    platform, me = request.app.state.platform, session.principal
    items = service.list_models(platform, me)
    return render(
        request,
        "models.html",
        {"items": items, "pending": _pending(platform, me), "may_decide": _decides(me)},
    )


def _model(platform, me: Principal, name: str) -> dict[str, Any]:
    """The model's card (verified), its scoring services and its export, as ``me`` may
    read them."""
    shown = service.show(platform, me, name)  # not found for another operator
    card = shown["card"]
    verify_card(platform, card, shown["signature"])
    attacks = card.get("attacks") or {}
    return {
        "m": shown,
        "card": card,
        "card_sha256": hashlib.sha256(canonical(card)).hexdigest(),
        "evaluation": card.get("evaluation") or {},
        "structure": card.get("structure") or [],
        "attack_findings": attacks.get("findings") or [],
        "attack_figures": attacks.get("figures") or {},
        "services": [s for s in services.list_services(platform, me) if s["model"] == name],
        "exports": [e for e in export.list_exports(platform, me) if e["name"] == name],
    }


def _model_page(
    request: Request, me: Principal, name: str, status: int = 200, **extra: Any
) -> Response:
    """The model's page; ``extra`` carries a refusal shown in place and the values typed."""
    context = {
        **_model(request.app.state.platform, me, name),
        "may_propose": me.role is Role.OPERATOR,
        "may_decide": _decides(me),
        "service_form": {},
        "service_error": None,
        "export_error": None,
        "done": "",
        **extra,
    }
    return render(request, "model.html", context, status=status)


@router.get("/models/{name}")
def model_page(
    request: Request,
    session: CurrentSession,
    name: ModelName,
    done: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """The model's page; ``done`` names the act just done (a note above the card)."""
    return _model_page(request, session.principal, name, done=done if done in DONE else "")


def parse_bands(text: str) -> list[dict[str, Any]]:
    """The bands typed one a line, ``grade upto`` (``a 0.05``), as the definition's list;
    whether they make a service is :class:`jobs.model_bands.ServiceDefinition`'s rule."""
    bands = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").replace(":", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise InputError(
                f"band line {number}: write a grade and its upper bound, such as 'a 0.05'"
            )
        try:
            upto = float(parts[1])
        except ValueError:
            upto = math.nan
        if not math.isfinite(upto):
            raise InputError(f"band line {number}: the upper bound is not a number from 0 to 1")
        bands.append({"grade": parts[0], "upto": upto})
    return bands


def _answer(request: Request, name: str, done: str, result: dict[str, Any]) -> Response:
    """An act's success: for htmx, the result in the form's place (and the page's lists
    swapped out of band); else back to the model's page."""
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"{PREFIX}/models/{name}?done={done}", status_code=303)
    me = request.state.session.principal
    context = {
        **_model(request.app.state.platform, me, name),
        "may_propose": me.role is Role.OPERATOR,
        "done": done,
        "result": result,
    }
    return render(request, "model_result.html", context)


def _refused(request: Request, name: str, exc: SandboxError, **typed: Any) -> Response:
    """An act's refusal, in place: for htmx, in the form's result (htmx swaps a 200 only);
    else the model's page with the refusal above the form and the values kept."""
    if request.headers.get("hx-request"):
        return render(request, "model_result.html", {"error": exc.to_dict()})
    me = request.state.session.principal
    return _model_page(request, me, name, status=status_for(exc), **typed)


@router.post("/models/{name}/services")
def service_propose(
    request: Request,
    session: FormSession,
    name: ModelName,
    service_name: Annotated[str, Form(max_length=64)] = "",
    bands: Annotated[str, Form(max_length=BANDS_MAX)] = "",
    description: Annotated[str, Form(max_length=TEXT_MAX)] = "",
) -> Response:
    """Propose a scoring service over the model, as ``sandbox score define`` and
    ``POST /v1/score/services`` do (:func:`sandbox.models.services.define`): only a passed
    model of the operator's, under an agreement, with bands of at least the threshold."""
    typed = {"service_name": service_name, "bands": bands, "description": description}
    try:
        definition = {
            "name": service_name.strip(),
            "model": name,
            "bands": parse_bands(bands),
            "description": description.strip(),
        }
        result = services.define(request.app.state.platform, session.principal, definition)
    except SandboxError as exc:
        return _refused(request, name, exc, service_form=typed, service_error=exc.to_dict())
    return _answer(request, name, "proposed", result)


@router.post("/models/{name}/export")
def export_request(request: Request, session: FormSession, name: ModelName) -> Response:
    """Ask to export the model's file, as ``sandbox model export`` and
    ``POST /v1/models/{name}/export`` do (:func:`sandbox.models.export.request_export`)."""
    try:
        result = export.request_export(request.app.state.platform, session.principal, name)
    except SandboxError as exc:
        return _refused(request, name, exc, export_error=exc.to_dict())
    return _answer(request, name, "export_requested", result)


def _back(back: str, fallback: str) -> RedirectResponse:
    """After a decision, the page the form was on (a console path only)."""
    target = local_path(back) if back else PREFIX + fallback
    return RedirectResponse(target, status_code=303)


@router.post("/score-services/{name}/approve")
def service_approve(
    request: Request,
    session: FormSession,
    name: ModelName,
    back: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Publish the service, as ``sandbox score approve`` does
    (:func:`sandbox.models.services.approve`: the grants gate and the bands again, then the
    grade index)."""
    services.approve(request.app.state.platform, session.principal, name)
    return _back(back, "/models")


@router.post("/score-services/{name}/reject")
def service_reject(
    request: Request,
    session: FormSession,
    name: ModelName,
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
    back: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Turn the service down with a reason, as ``sandbox score reject`` does."""
    services.reject(request.app.state.platform, session.principal, name, reason.strip())
    return _back(back, "/models")


@router.post("/models/{name}/export/approve")
def export_approve(
    request: Request,
    session: FormSession,
    name: ModelName,
    back: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Approve the export, as ``sandbox model approve-export`` does
    (:func:`sandbox.models.export.approve_export`: the rule again, then the product)."""
    export.approve_export(request.app.state.platform, session.principal, name)
    return _back(back, f"/models/{name}")


@router.post("/models/{name}/export/reject")
def export_reject(
    request: Request,
    session: FormSession,
    name: ModelName,
    reason: Annotated[str, Form(max_length=REASON_MAX)] = "",
    back: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Reject the export with a reason, as ``sandbox model reject-export`` does."""
    export.reject_export(request.app.state.platform, session.principal, name, reason.strip())
    return _back(back, f"/models/{name}")
