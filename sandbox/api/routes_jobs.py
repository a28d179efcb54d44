"""Jobs: submit (202, then the server's executor runs it), status with long-poll, list.

``POST /v1/jobs`` records and admits the job in the request (so a refusal comes
back at once, naming the rule) and leaves it ``queued`` for the executor of
whichever server process claims it first. ``GET /v1/jobs/{id}?wait=S`` answers
as soon as the job leaves the active states, or after ``S`` seconds (at most
:data:`WAIT_CAP_S`), polling the store without holding a thread.
"""

from __future__ import annotations

import time

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from sandbox.api import idempotency
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID, Job, JobRequest, JobSummary
from sandbox.api.paging import LimitQuery, cut, one_more
from sandbox.run.jobstate import ACTIVE_STATES, JobOutcome, job_outcome, list_jobs

router = APIRouter(prefix="/v1", tags=["jobs"])

WAIT_CAP_S = 30.0
POLL_S = 0.05


def job_body(outcome: JobOutcome) -> Job:
    return Job(
        job=outcome.job_id,
        state=outcome.state.value,
        reason=outcome.reason,
        report=outcome.report,
        product=outcome.product_id,
    )


@router.post("/jobs", response_model=Job, status_code=202)
def jobs_submit(
    request: Request,
    body: JobRequest,
    me: CurrentPrincipal,
    idempotency_key: str | None = Header(
        default=None,
        alias=idempotency.HEADER,
        description="a key of your choosing: a retry with the same key and body makes no "
        "second job and answers the first (header Idempotent-Replayed: true)",
    ),
):
    """Submit a job (operators): 202 with its id and state, ``queued`` or ``refused``."""
    service = request.app.state.service
    if idempotency_key is None:
        outcome = service.enqueue(me, {"sql": body.sql}, body.kind)
        headers = {}
    else:
        home = request.app.state.platform.home
        with idempotency.claim(home, me.id, idempotency_key, body.model_dump()) as slot:
            if slot.job_id is not None:
                outcome = service.outcome(me, slot.job_id)
            else:
                outcome = service.enqueue(me, {"sql": body.sql}, body.kind)
                slot.job_id = outcome.job_id
        headers = {"Idempotent-Replayed": "true"} if slot.replayed else {}
    request.app.state.executor.wake()
    return JSONResponse(job_body(outcome).model_dump(), status_code=202, headers=headers)


@router.get("/jobs", response_model=list[JobSummary])
def jobs_list(
    request: Request,
    response: Response,
    me: CurrentPrincipal,
    limit: int | None = LimitQuery,
    after: int | None = Query(default=None, ge=0, le=MAX_ID, description="the last id seen"),
):
    """Your jobs (the city authority and auditors: every job; a county authority: its county's),
    by id; with ``limit``, one page and a ``Link: <...>; rel="next"`` header to the next."""
    with request.app.state.platform.store.read() as conn:
        rows = list_jobs(conn, me, after=after, limit=one_more(limit))
    return cut(request, response, rows, lambda r: r["id"], limit)


@router.get("/jobs/{job_id}", response_model=Job)
async def jobs_show(
    request: Request,
    me: CurrentPrincipal,
    job_id: int = PathParam(ge=1, le=MAX_ID),
    wait: float = Query(
        default=0.0, ge=0.0, le=WAIT_CAP_S, description="seconds to wait for the job to end"
    ),
):
    """State, refusal or failure reason, and check report of a job."""
    platform = request.app.state.platform

    def read() -> JobOutcome:
        with platform.store.read() as conn:
            return job_outcome(conn, me, job_id)

    deadline = time.monotonic() + wait
    outcome = await anyio.to_thread.run_sync(read)
    while outcome.state in ACTIVE_STATES and time.monotonic() < deadline:
        await anyio.sleep(POLL_S)
        outcome = await anyio.to_thread.run_sync(read)
    return job_body(outcome)
