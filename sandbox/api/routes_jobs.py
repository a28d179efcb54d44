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
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID, Job, JobRequest, JobSummary
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
def jobs_submit(request: Request, body: JobRequest, me: CurrentPrincipal):
    """Submit a job (operators): 202 with its id and state, ``queued`` or ``refused``."""
    service = request.app.state.service
    outcome = service.enqueue(me, {"sql": body.sql}, body.kind)
    request.app.state.executor.wake()
    return JSONResponse(job_body(outcome).model_dump(), status_code=202)


@router.get("/jobs", response_model=list[JobSummary])
def jobs_list(request: Request, me: CurrentPrincipal):
    """Your jobs (the city authority and auditors: every job; a county authority: its county's)."""
    with request.app.state.platform.store.read() as conn:
        return list_jobs(conn, me)


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
