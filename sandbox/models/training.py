"""A model's training as a job of the queue (kind ``model_train``).

A training is a row of ``jobs`` like a SQL job, so it is listed, read, cancelled with
its operator, recovered after a crash and claimed by one host only, as every job is
(:mod:`sandbox.run.jobstate`)::

    submitted -> refused            admission refused it (the refusal is raised too)
    submitted -> queued             admitted; the dataset versions are pinned
    queued    -> running            a server's executor (or the caller) claimed it
    running   -> checking -> released
                                    the card is recorded (passed or refused by the
                                    checks: the card is the job's output either way)
    running   -> failed             the worker stopped it (a limit, a label that is not
                                    0 or 1...), a grant was suspended meanwhile, or
                                    the platform stopped

:func:`enqueue` files it (``POST /v1/models`` with ``wait=false``: the server's
executor runs it); :func:`train` files and runs it at once in the caller (the CLI on
a home, ``POST /v1/models`` by default) and returns the card. The released job's
report names the model, its verdict and its card's SHA-256; the card itself is read
with :func:`sandbox.models.service.show`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.model import KIND
from policies.errors import JobFailed, PolicyRefusal, SandboxError
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, by_id, require_active
from sandbox.core.store import jobs
from sandbox.models import service
from sandbox.run import leases
from sandbox.run.execution import inputs_of
from sandbox.run.jobstate import (
    JobState,
    claim_queued,
    open_job,
    refuse,
    state_of,
    transition,
)

INTERNAL = {
    "code": "internal_error",
    "message": "the platform failed while training the model; nothing was kept",
    "article": "Art. 8",
}


def enqueue(platform: Platform, operator: Principal, request: Mapping[str, Any]) -> int:
    """Record the training and admit it; the job's id once it is ``queued``. A refusal
    ends the job ``refused`` and is raised (the same error as a direct training)."""
    parsed = service.parsed_request(operator, request)
    service.require_free_name(platform, operator, parsed.name)
    job_id = open_job(platform, operator, KIND, request)
    try:
        prepared = service.admit_recorded(platform, operator, request)
    except PolicyRefusal as refusal:
        with platform.store.transaction() as conn:
            refuse(platform, conn, job_id, operator, refusal)
        raise
    except Exception as exc:
        _fail(platform, job_id, exc)
        raise
    inputs = inputs_of(prepared)
    with platform.store.transaction() as conn:
        transition(
            platform, conn, job_id, operator, JobState.QUEUED,
            {"inputs": inputs, "model": parsed.name}, "Art. 14",
            inputs_json=json.dumps(inputs),
        )  # fmt: skip
    return job_id


def run(platform: Platform, job_id: int) -> tuple[dict[str, Any] | None, Exception | None]:
    """Claim the queued training ``job_id`` and run it to its end: (the card, None), or
    (None, the error the job failed with), or (None, None) if it was not a queued
    training (another host claimed it first)."""
    with platform.store.transaction() as conn:
        row = claim_queued(conn, job_id)
        if row is None or row.kind != KIND:
            return None, None
        operator = by_id(conn, row.operator_id)
        detail = {"engine": platform.settings.engine, "model": json.loads(row.request_json)["name"]}
        transition(platform, conn, job_id, operator, JobState.RUNNING, detail)
        leases.claimed(conn, job_id)  # PostgreSQL: this host's, for recover_gone
    pinned = {i["dataset"]: i["version"] for i in json.loads(row.inputs_json or "[]")}

    def finish(conn: Connection, result: dict[str, Any]) -> None:
        # a job cancelled meanwhile is failed: the transition refuses, and the card with it
        transition(platform, conn, job_id, operator, JobState.CHECKING, {"model": result["model"]})
        transition(
            platform, conn, job_id, operator, JobState.RELEASED, result, "Art. 15",
            report_json=json.dumps(result),
        )  # fmt: skip

    try:
        with platform.store.read() as conn:
            require_active(conn, operator.id)  # deactivated since: nothing runs for it
        card = service.train(
            platform, operator, json.loads(row.request_json), pinned=pinned, finish=finish
        )
    except Exception as exc:
        _fail(platform, job_id, exc)
        return None, exc
    return card, None


def train(platform: Platform, operator: Principal, request: Mapping[str, Any]) -> dict[str, Any]:
    """File the training and run it here, now: the card, or the refusal or failure raised."""
    job_id = enqueue(platform, operator, request)
    card, error = run(platform, job_id)
    if error is not None:
        raise error
    if card is None:  # a server's executor claimed it between the two steps
        return _awaited(platform, operator, job_id)
    return {**card, "job_id": job_id}


def _awaited(platform: Platform, operator: Principal, job_id: int) -> dict[str, Any]:
    """The card of a training another process runs, once it ends (its failure raised)."""
    deadline = time.monotonic() + platform.settings.model.time_limit_s + 60
    while time.monotonic() < deadline:
        with platform.store.read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        if row.status == JobState.RELEASED.value:
            name = json.loads(row.report_json)["model"]
            shown = service.show(platform, operator, name)
            return {"card": shown["card"], "signature": shown["signature"], "job_id": job_id}
        if row.status == JobState.FAILED.value:
            reason = json.loads(row.reason_json or "{}")
            raise JobFailed(
                reason.get("message", f"training job {job_id} failed"),
                code=reason.get("code") or "job_failed",
                article=reason.get("article"),
            )
        time.sleep(0.5)
    raise JobFailed(
        f"training job {job_id} did not end within model.time_limit_s and a minute; it may "
        f"still end: follow it with GET /v1/jobs/{job_id} (sandbox job show {job_id})",
        code="time_limit",
        article="Art. 8",
    )


def _fail(platform: Platform, job_id: int, exc: Exception) -> None:
    reason = exc.to_dict() if isinstance(exc, SandboxError) else INTERNAL
    with platform.store.transaction() as conn:
        state = state_of(conn, job_id)
        if state in (JobState.FAILED, JobState.REFUSED, JobState.RELEASED):
            return
        operator = by_id(conn, _operator_id(conn, job_id))
        transition(
            platform, conn, job_id, operator, JobState.FAILED,
            {"code": reason.get("code") or reason.get("rule"), "error": type(exc).__name__},
            reason.get("article") or "Art. 8", reason_json=json.dumps(reason),
        )  # fmt: skip


def _operator_id(conn: Connection, job_id: int) -> int:
    return int(conn.execute(select(jobs.c.operator_id).where(jobs.c.id == job_id)).scalar_one())
