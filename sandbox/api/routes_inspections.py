"""Inspections after they are recorded (Art. 22): list, rectify, close.

Each route calls one function of :mod:`sandbox.workflow.inspections`, which checks the
role, the reach and the state and writes the ledger; recording one stays ``POST
/v1/inspections`` (:mod:`sandbox.api.routes_workflow`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.workflow import inspections

router = APIRouter(prefix="/v1", tags=["workflow"])


class NotesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: str = Field(max_length=10_000)


@router.get("/inspections")
def inspection_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
) -> list[dict[str, Any]]:
    """The inspections the caller may read, with their state and history; with
    ``limit``, a page by id."""
    rows = inspections.inspections_of(request.app.state.platform, me)
    return page_of(request, response, rows, "id", limit, after)


@router.post("/inspections/{inspection_id}/{action}")
def inspection_step(
    request: Request,
    me: CurrentPrincipal,
    body: NotesBody,
    action: Literal["rectify", "close"],
    inspection_id: int = PathParam(ge=1, le=MAX_ID),
) -> dict[str, Any]:
    """The inspected operator reports rectification; the inspector closes (Art. 22)."""
    step = inspections.rectify if action == "rectify" else inspections.close
    step(request.app.state.platform, me, inspection_id, body.notes)
    return {"inspection": inspection_id, "status": "rectified" if action == "rectify" else "closed"}
