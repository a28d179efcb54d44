"""A provider's routes on the use of its data (Art. 4, 5, 13, 24): what uses its datasets,
its signature on an agreement for its own dataset, and holds on one use. The CLI's
``sandbox provider`` commands call them with ``--server``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID, NAME
from sandbox.api.workflow_models import CountersignBody, ReasonBody
from sandbox.core.platform import Platform
from sandbox.workflow import countersign, providers

router = APIRouter(prefix="/v1", tags=["providers"])


def _platform(request: Request) -> Platform:
    return request.app.state.platform


@router.get("/provider/uses")
def provider_uses(request: Request, me: CurrentPrincipal) -> dict[str, Any]:
    """The agreements, grants, jobs and products that use the provider's data (Art. 5)."""
    with _platform(request).store.read() as conn:
        return providers.uses_of(conn, me)


@router.post("/agreements/{agreement_id}/countersignatures")
def agreement_countersign(
    request: Request,
    me: CurrentPrincipal,
    body: CountersignBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> dict[str, Any]:
    """A provider signs the agreement for its own dataset, with its terms (Art. 4, 13)."""
    return countersign.countersign(_platform(request), me, agreement_id, body.dataset, body.terms)


@router.post("/agreements/{agreement_id}/datasets/{dataset}/{action}")
def provider_hold(
    request: Request,
    me: CurrentPrincipal,
    body: ReasonBody,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
    dataset: str = PathParam(pattern=NAME, max_length=100),
    action: Literal["suspend", "lift", "terminate"] = PathParam(),
) -> dict[str, Any]:
    """A provider suspends, lifts or ends the use of its dataset under an agreement (Art. 24)."""
    hold = providers.HOLDS[action]
    return hold(_platform(request), me, agreement_id, dataset, body.reason)
