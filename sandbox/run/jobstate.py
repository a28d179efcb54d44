"""The job state machine, and reading jobs back.

Job states (README, "The path of a job"; :mod:`policies.job_states`) and the only
allowed transitions::

    submitted -> refused | queued | failed
    queued    -> running | failed
    running   -> checking | failed
    checking  -> released | withheld | failed
    withheld  -> released            (after the output review approves)

``submitted -> failed`` exists only for recovery: a platform that died between
recording a submission and admitting it. Each transition is one ledger entry
in the same transaction as the state change, naming the operator responsible
for the job (Art. 18). The queue is the ``queued`` rows of the store, oldest
first, so it survives restarts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import Conflict, NotFound, PermissionDenied, SandboxError
from policies.job_states import ACTIVE_STATES, ARTICLE_OF, JobState, may_transition
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import inserted_id, jobs
from sandbox.registry.jurisdiction import job_place, require_covers, scope_of
from sandbox.run.leases import claimed, gone_jobs
from sandbox.run.views import released_report, withheld_report


def state_of(conn: Connection, job_id: int) -> JobState:
    row = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return JobState(row.status)


def transition(
    platform: Platform,
    conn: Connection,
    job_id: int,
    operator: Principal,
    new: JobState,
    details: Mapping[str, Any] | None = None,
    article: str | None = None,
    **columns: Any,
) -> None:
    """Move a job to ``new`` and write its ledger entry, in the caller's transaction."""
    old = state_of(conn, job_id)
    if not may_transition(old, new):
        raise Conflict(f"job {job_id} cannot go from {old.value} to {new.value}")
    conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id)
        .values(status=new.value, updated_at=now_utc(), **columns)
    )
    platform.record(
        conn,
        operator.actor,
        f"job.{new.value}",
        f"job:{job_id}",
        {"from": old.value, **(details or {})},
        article or ARTICLE_OF.get(new, "Art. 7"),
    )


def open_job(platform: Platform, operator: Principal, kind: str, request: Mapping[str, Any]) -> int:
    """A new job row, ``submitted``, and its ledger entry, in a transaction of its own:
    what the job asks (for an HE or PSI job, never its keys, values or items)."""
    now = now_utc()
    with platform.store.transaction() as conn:
        inserted = conn.execute(
            jobs.insert().values(
                operator_id=operator.id,
                kind=kind,
                request_json=json.dumps(dict(request)),
                status=JobState.SUBMITTED.value,
                created_at=now,
                updated_at=now,
            )
        )
        job_id = int(inserted_id(inserted))
        claimed(conn, job_id)  # PostgreSQL: this host admits it (recover_gone)
        platform.record(
            conn,
            operator.actor,
            "job.submitted",
            f"job:{job_id}",
            {"kind": kind, "request": dict(request)},
            "Art. 7",
        )
    return job_id


def refuse(
    platform: Platform,
    conn: Connection,
    job_id: int,
    operator: Principal,
    refusal: SandboxError,
    state: JobState = JobState.REFUSED,
) -> None:
    """End a job ``refused`` (or ``failed``) with the error as its operator reads it: the
    rule (or code), the subject and the article, in the caller's transaction."""
    reason = refusal.to_dict()
    transition(
        platform,
        conn,
        job_id,
        operator,
        state,
        {"rule": reason.get("rule") or reason.get("code"), "subject": reason.get("subject")},
        reason.get("article") or "Art. 15",
        reason_json=json.dumps(reason),
    )


@dataclass(frozen=True)
class JobOutcome:
    job_id: int
    state: JobState
    reason: dict | None = None
    report: dict | None = None
    product_id: str | None = None


def job_outcome(conn: Connection, viewer: Principal, job_id: int) -> JobOutcome:
    """A job as ``viewer`` may see it: the authority and auditors read the whole check
    report (a county authority only of a job of its county, Art. 5); the job's operator
    reads :func:`operator_outcome`."""
    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
    if row is None or (viewer.role is Role.OPERATOR and row.operator_id != viewer.id):
        raise NotFound(f"no job {job_id} of yours")
    if viewer.role not in (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR):
        raise PermissionDenied(
            f"a {viewer.role.value} may not read jobs (Art. 7)", article="Art. 7"
        )
    if viewer.role is Role.AUTHORITY:
        require_covers(viewer, job_place(conn, job_id), "read jobs", "Art. 5")
    outcome = JobOutcome(
        job_id=row.id,
        state=JobState(row.status),
        reason=json.loads(row.reason_json) if row.reason_json else None,
        report=json.loads(row.report_json) if row.report_json else None,
        product_id=row.product_id,
    )
    if viewer.role is Role.OPERATOR:  # issue 17: no cell counts, rules or reasons
        return operator_outcome(outcome)
    return outcome


def operator_outcome(outcome: JobOutcome) -> JobOutcome:
    """The operator's view of one of its jobs (:mod:`sandbox.run.views`): a withheld job
    is only "withheld for review"; a released one lists its suppressed cells, not why."""
    if outcome.state is JobState.WITHHELD:
        return replace(outcome, reason=None, report=withheld_report())
    if outcome.state is JobState.RELEASED and outcome.report is not None:
        if "card_sha256" in outcome.report:  # a model's training: the card is its output
            return outcome
        return replace(outcome, report=released_report(outcome.report))
    if outcome.state in (JobState.REFUSED, JobState.FAILED):
        return replace(outcome, report=None)
    return outcome


def list_jobs(
    conn: Connection, viewer: Principal, *, after: int | None = None, limit: int | None = None
) -> list[dict]:
    """An operator's own jobs; every job for the city authority and auditors; a county
    authority's, those that ran under its county's grants (Art. 5). By id; with ``after``
    and ``limit`` (a page), at most ``limit`` of those after id ``after``."""
    stmt = select(
        jobs.c.id,
        jobs.c.kind,
        jobs.c.status.label("state"),  # one name for a job's state (issue 26)
        jobs.c.product_id,
        jobs.c.created_at,
        jobs.c.operator_id,
    ).order_by(jobs.c.id)
    if viewer.role is Role.OPERATOR:
        stmt = stmt.where(jobs.c.operator_id == viewer.id)
    elif viewer.role not in (Role.AUTHORITY, Role.AUDITOR):
        raise PermissionDenied(
            f"a {viewer.role.value} may not list jobs (Art. 7)", article="Art. 7"
        )
    elif (scope := scope_of(conn, viewer)) is not None:
        stmt = stmt.where(jobs.c.id.in_(scope.jobs))
    if after is not None:
        stmt = stmt.where(jobs.c.id > after)
    return [dict(r) for r in conn.execute(stmt.limit(limit)).mappings()]


def claim_queued(conn: Connection, job_id: int) -> Any:
    """The row of job ``job_id`` if it is queued, locked for the caller's write
    transaction, else None. On PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``: a job
    another host is claiming at this moment is passed over (None), never waited for or
    claimed twice. SQLite renders no FOR UPDATE: the transaction already holds its
    database's write lock (``BEGIN IMMEDIATE``)."""
    return conn.execute(
        select(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == JobState.QUEUED.value)
        .with_for_update(skip_locked=True)
    ).first()


def next_queued(conn: Connection) -> int | None:
    """The oldest queued job, or None."""
    return conn.execute(
        select(jobs.c.id).where(jobs.c.status == JobState.QUEUED.value).order_by(jobs.c.id).limit(1)
    ).scalar()


def fail_jobs(
    platform: Platform,
    conn: Connection,
    rows,
    reason: Mapping[str, Any],
    article: str,
) -> list[int]:
    """Fail the jobs of ``rows`` (id, operator_id), in the caller's transaction, with
    ``reason`` (code, message, article); their ids."""
    failed = []
    for row in rows:
        operator = by_id(conn, row.operator_id)
        transition(
            platform,
            conn,
            row.id,
            operator,
            JobState.FAILED,
            {"code": reason["code"], "message": reason["message"]},
            article,
            reason_json=json.dumps(dict(reason)),
        )
        failed.append(row.id)
    return failed


def cancel_operator_jobs(
    platform: Platform, conn: Connection, operator_id: int, reason: str, article: str
) -> list[int]:
    """Fail the operator's queued and running jobs, in the caller's transaction.

    A worker still busy with a cancelled job finishes on its own, but its result
    is dropped: the job is no longer ``running``, so it can never reach
    ``checking`` or ``released``.
    """
    rows = conn.execute(
        select(jobs.c.id, jobs.c.operator_id).where(
            jobs.c.operator_id == operator_id,
            jobs.c.status.in_([s.value for s in ACTIVE_STATES]),
        )
    ).all()
    return fail_jobs(
        platform, conn, rows, {"code": "cancelled", "message": reason, "article": article}, article
    )


def recover(platform: Platform) -> dict[str, list[int]]:
    """After a crash or restart: jobs caught mid-way fail; queued jobs stay queued.

    Nothing of a failed job was released: a product is written and recorded in
    the same transaction as the job's ``released`` state.
    """
    with platform.store.transaction() as conn:
        rows = conn.execute(
            select(jobs.c.id, jobs.c.operator_id).where(
                jobs.c.status.in_(
                    [JobState.SUBMITTED.value, JobState.RUNNING.value, JobState.CHECKING.value]
                )
            )
        ).all()
        failed = fail_jobs(
            platform,
            conn,
            rows,
            {
                "code": "interrupted",
                "message": "the platform stopped while the job was running; nothing was released; "
                "submit it again",
                "article": "Art. 8",
            },
            "Art. 8",
        )
        queued = list(
            conn.execute(
                select(jobs.c.id).where(jobs.c.status == JobState.QUEUED.value).order_by(jobs.c.id)
            ).scalars()
        )
    return {"failed": failed, "queued": queued}


def recover_gone(platform: Platform) -> list[int]:
    """On a PostgreSQL store: fail the jobs whose host's lease ran out (its heartbeats
    stopped for ``store.host_lease_s``), whatever host looks; the jobs of live hosts,
    and queued jobs, stay as they are (:mod:`sandbox.run.leases`)."""
    lease_s = platform.settings.store.host_lease_s
    with platform.store.transaction() as conn:
        rows = gone_jobs(conn, lease_s)
        return fail_jobs(
            platform,
            conn,
            rows,
            {
                "code": "interrupted",
                "message": f"the host running the job stopped (no heartbeat for {lease_s:g} s); "
                "nothing was released; submit it again",
                "article": "Art. 8",
            },
            "Art. 8",
        )
