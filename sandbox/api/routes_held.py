"""What the output checkers vote on, over HTTP (issue 21): the held outputs waiting for a
review, and one held output cell by cell.

Both call :mod:`sandbox.workflow.held`, as the console's checker pages do: appointed
checkers, auditors and a covering authority read a held output (never its author, who
gets 404), and the author's name and organisation are never in the answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.workflow import held

router = APIRouter(prefix="/v1", tags=["workflow"])


@router.get("/jobs/{job_id}/review/output")
def output_review_output(
    request: Request, me: CurrentPrincipal, job_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """The held output a checker votes on: every cell with its flags and reasons, the SQL,
    the datasets and versions; never the author (appointed checkers, auditors, a covering
    authority; Art. 15)."""
    return held.held_output(request.app.state.platform, me, job_id)


@router.get("/held-outputs")
def held_outputs_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
) -> list[dict[str, Any]]:
    """The held outputs you may review, with each review's state and whether you voted;
    with ``limit``, a page by job id."""
    rows = held.held_outputs(request.app.state.platform, me)
    return page_of(request, response, rows, "job", limit, after)
