"""The airlock: two independent checkers decide an output the platform holds back.

Outputs the output check sends to review, and every output of an agreement that
asks for human review (``review_required``), are withheld by the job path
(``sandbox.run.execution``). Here two checkers (reviewers or authority staff
appointed for the agreement, or for the job) vote: approve, return with a
request for change, or reject, each with a reason. Votes are blind: nobody sees
another's vote until both are in (the ledger seals each vote and publishes them
together with the verdict). The author and anyone of its organisation never
check it. Approval releases the held output through
``sandbox.run.settle.release_held``. A suspension freezes pending reviews;
restoration thaws them.

States (:class:`policies.workflow.AirlockState`)::

    pending -> approved | returned | rejected;   pending <-> frozen
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import Conflict, InputError, NotFound, PermissionDenied
from policies.workflow import (
    AgreementState,
    AirlockState,
    Vote,
    airlock_verdict,
    check_not_own_org,
    refuse,
)
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name
from sandbox.core.store import grants, inserted_id, jobs
from sandbox.registry.base import create, get, move, names, need_text, require_authority
from sandbox.registry.jurisdiction import job_place, require_covers
from sandbox.registry.tables import agreements, checker_appointments, output_reviews, output_votes
from sandbox.run.settle import release_held

CHECKERS_NEEDED = 2


def job_agreements(conn: Connection, job_id: int) -> set[int]:
    """The agreements whose grants the job read its datasets through."""
    row = get(conn, jobs, job_id, "job")
    ids = [item.get("grant") for item in json.loads(row.inputs_json or "[]")]
    if not ids:
        return set()
    found = conn.execute(select(grants.c.agreement_id).where(grants.c.id.in_(ids))).scalars()
    return {a for a in found if a is not None}


def checkers_of(conn: Connection, job_id: int) -> set[int]:
    """The principals appointed to check the job's held output: for the job itself, or
    else for the agreements it ran under."""
    by_job = set(
        conn.execute(
            select(checker_appointments.c.checker_id).where(checker_appointments.c.job_id == job_id)
        ).scalars()
    )
    if by_job:
        return by_job
    ids = job_agreements(conn, job_id)
    if not ids:
        return set()
    return set(
        conn.execute(
            select(checker_appointments.c.checker_id).where(
                checker_appointments.c.agreement_id.in_(ids)
            )
        ).scalars()
    )


def appoint_checkers(
    platform: Platform,
    authority: Principal,
    checkers: Sequence[str],
    *,
    agreement_id: int | None = None,
    job_id: int | None = None,
) -> list[int]:
    """Appoint at least two checkers for an agreement's (or one job's) held outputs."""
    if (agreement_id is None) == (job_id is None):
        raise InputError("appoint checkers for exactly one of --agreement or --job")
    wanted = names(checkers)
    if len(wanted) < CHECKERS_NEEDED:
        raise InputError(
            f"an output review needs {CHECKERS_NEEDED} distinct checkers (Art. 15)",
            article="Art. 15",
        )
    with platform.store.transaction() as conn:
        if agreement_id is not None:
            row = get(conn, agreements, agreement_id, "agreement")
            jurisdiction, operator_id = row.jurisdiction, row.operator_id
        else:
            assert job_id is not None  # exactly one of the two was given (checked above)
            job = get(conn, jobs, job_id, "job")
            jurisdiction = job_place(conn, job_id)
            operator_id = job.operator_id
        require_authority(authority, jurisdiction, "appoint output checkers", "Art. 15")
        author = by_id(conn, operator_id)
        out = []
        for name in wanted:
            checker = by_name(conn, name)
            if checker.role not in (Role.REVIEWER, Role.AUTHORITY):
                raise PermissionDenied(
                    f"{name} is a {checker.role.value}; checkers are reviewers "
                    "or authority staff (Art. 15)",
                    article="Art. 15",
                )
            check_not_own_org(name, checker.org, author.org, "output it is", "Art. 15")
            inserted = conn.execute(
                checker_appointments.insert().values(
                    agreement_id=agreement_id,
                    job_id=job_id,
                    checker_id=checker.id,
                    appointed_by=authority.id,
                    created_at=now_utc(),
                )
            )
            appointment = inserted_id(inserted)
            platform.record(
                conn,
                authority.actor,
                "checker.appointed",
                f"checker:{appointment}",
                {"checker": name, "agreement": agreement_id, "job": job_id},
                "Art. 15",
            )
            out.append(appointment)
    return out


def _review(conn: Connection, job_id: int) -> Row | None:
    return conn.execute(select(output_reviews).where(output_reviews.c.job_id == job_id)).first()


def _all_active(conn: Connection, agreement_ids: set[int]) -> bool:
    states = conn.execute(
        select(agreements.c.status).where(agreements.c.id.in_(agreement_ids))
    ).scalars()
    return all(AgreementState(s) is AgreementState.ACTIVE for s in states)


def open_in(platform: Platform, conn: Connection, actor: Actor, job_id: int) -> Row:
    """The review of a withheld job, opened (pending, or frozen if use is suspended)."""
    existing = _review(conn, job_id)
    if existing is not None:
        return existing
    job = get(conn, jobs, job_id, "job")
    if job.status != "withheld":
        raise Conflict(
            f"job {job_id} is {job.status}; only a withheld output is reviewed (Art. 15)",
            article="Art. 15",
        )
    ids = job_agreements(conn, job_id)
    state = AirlockState.PENDING if _all_active(conn, ids) else AirlockState.FROZEN
    create(
        platform,
        conn,
        output_reviews,
        "output_review",
        state,
        actor,
        {
            "job_id": job_id,
            "operator_id": job.operator_id,
            "agreement_id": min(ids) if ids else None,
        },
        {"job": job_id, "agreements": sorted(ids)},
    )
    opened = _review(conn, job_id)
    assert opened is not None  # created just above
    return opened


def _may_see(conn: Connection, viewer: Principal, job: Row) -> None:
    """The job's operator, its appointed checkers, auditors, and an authority whose
    jurisdiction covers the job (Art. 5)."""
    if viewer.role is Role.OPERATOR and viewer.id == job.operator_id:
        return
    if viewer.role is Role.AUDITOR or viewer.id in checkers_of(conn, job.id):
        return
    if viewer.role is Role.AUTHORITY:
        require_covers(viewer, job_place(conn, job.id), "read output reviews", "Art. 15")
        return
    raise NotFound(f"no held output of job {job.id} that you may see")


def open_review(platform: Platform, viewer: Principal, job_id: int) -> dict:
    with platform.store.transaction() as conn:
        _may_see(conn, viewer, get(conn, jobs, job_id, "job"))
        open_in(platform, conn, viewer.actor, job_id)
    return show(platform, viewer, job_id)


def vote(platform: Platform, checker: Principal, job_id: int, decision: Vote, reason: str) -> dict:
    """Cast one blind vote; the second vote decides (and approval releases the output)."""
    decision = Vote(decision)
    need_text({"reason": reason}, "Art. 15")
    with platform.store.transaction() as conn:
        review = _open_for_vote(platform, conn, checker, job_id)
        inserted = conn.execute(
            output_votes.insert().values(
                review_id=review.id,
                checker_id=checker.id,
                vote=decision.value,
                reason=reason,
                created_at=now_utc(),
            )
        )
        vote_id = inserted_id(inserted)
        # Sealed: the ledger holds a commitment, not the vote, until the verdict.
        nonce = secrets.token_hex(16)
        seal = hashlib.sha256(f"{decision.value}|{reason}|{nonce}".encode()).hexdigest()
        platform.record(
            conn,
            checker.actor,
            "output_vote.cast",
            f"output_vote:{vote_id}",
            {"job": job_id, "seal": seal},
            "Art. 15",
        )
        rows = conn.execute(
            select(output_votes)
            .where(output_votes.c.review_id == review.id)
            .order_by(output_votes.c.id)
        ).all()
        verdict = airlock_verdict([Vote(r.vote) for r in rows], CHECKERS_NEEDED)
        checkers = [by_id(conn, r.checker_id).name for r in rows]
        if verdict is not AirlockState.PENDING:
            move(
                platform,
                conn,
                output_reviews,
                "output_review",
                review.id,
                verdict,
                checker.actor,
                {
                    "job": job_id,
                    "votes": [
                        {"checker": c, "vote": r.vote, "reason": r.reason}
                        for c, r in zip(checkers, rows, strict=True)
                    ],
                },
            )
    if verdict is AirlockState.APPROVED:
        _release(platform, job_id, checkers)
    return show(platform, checker, job_id)


def _open_for_vote(platform: Platform, conn: Connection, checker: Principal, job_id: int) -> Row:
    """The job's pending review, if this checker may vote on it: not the author nor of
    its organisation, appointed, not voted yet; a frozen review refuses (Art. 15, 24)."""
    job = get(conn, jobs, job_id, "job")
    author = by_id(conn, job.operator_id)
    if checker.id == author.id:
        raise PermissionDenied(
            "the author never checks its own output (Art. 15)",
            article="Art. 15",
            code="own_organisation",
        )
    check_not_own_org(checker.name, checker.org, author.org, "output it is", "Art. 15")
    if checker.id not in checkers_of(conn, job_id):
        raise PermissionDenied(
            f"{checker.name} is not appointed to check job {job_id} (Art. 15)",
            article="Art. 15",
            code="not_appointed",
        )
    review = open_in(platform, conn, checker.actor, job_id)
    state = AirlockState(review.status)
    if state is AirlockState.FROZEN:
        raise refuse(
            "output_frozen",
            f"the held output of job {job_id} is frozen while the operator's data use is suspended",
            "Art. 24",
            f"job:{job_id}",
        )
    if state is not AirlockState.PENDING:
        raise Conflict(f"the output review of job {job_id} is already {state.value}")
    if conn.execute(
        select(output_votes.c.id).where(
            output_votes.c.review_id == review.id, output_votes.c.checker_id == checker.id
        )
    ).first():
        raise Conflict(f"{checker.name} has voted on job {job_id} already")
    return review


def _release(platform: Platform, job_id: int, checkers: list[str]) -> str:
    """Hand the approved output to the job path, which releases it as a signed product."""
    product_id = release_held(platform, job_id, checkers)
    with platform.store.transaction() as conn:
        conn.execute(
            output_reviews.update()
            .where(output_reviews.c.job_id == job_id)
            .values(product_id=product_id, updated_at=now_utc())
        )
    return product_id


def show(platform: Platform, viewer: Principal, job_id: int) -> dict:
    """The review's state; votes stay sealed until the verdict."""
    with platform.store.read() as conn:
        job = get(conn, jobs, job_id, "job")
        _may_see(conn, viewer, job)
        review = _review(conn, job_id)
        if review is None:
            return {"job": job_id, "status": None, "votes_in": 0, "votes": []}
        rows = conn.execute(
            select(output_votes)
            .where(output_votes.c.review_id == review.id)
            .order_by(output_votes.c.id)
        ).all()
        decided = AirlockState(review.status) not in (AirlockState.PENDING, AirlockState.FROZEN)
        visible = rows if decided else [r for r in rows if r.checker_id == viewer.id]
        return {
            "job": job_id,
            "status": review.status,
            "votes_in": len(rows),
            "votes": [
                {"checker": by_id(conn, r.checker_id).name, "vote": r.vote, "reason": r.reason}
                for r in visible
            ],
            "product": review.product_id,
        }


# --- freezing on suspension ------------------------------------------------------------------


def _withheld(conn: Connection, operator_id: int, agreement_id: int | None) -> list[int]:
    ids = (
        conn.execute(
            select(jobs.c.id)
            .where(jobs.c.operator_id == operator_id, jobs.c.status == "withheld")
            .order_by(jobs.c.id)
        )
        .scalars()
        .all()
    )
    if agreement_id is None:
        return list(ids)
    return [j for j in ids if agreement_id in job_agreements(conn, j)]


def freeze(
    platform: Platform, conn: Connection, actor: Actor, operator_id: int, agreement_id: int | None
) -> list[int]:
    """Freeze every unreleased held output of the operator (under the agreement, if named)."""
    frozen = []
    for job_id in _withheld(conn, operator_id, agreement_id):
        review = _review(conn, job_id)
        if review is None:
            create(
                platform,
                conn,
                output_reviews,
                "output_review",
                AirlockState.FROZEN,
                actor,
                {"job_id": job_id, "operator_id": operator_id, "agreement_id": agreement_id},
                {"job": job_id},
            )
        elif AirlockState(review.status) is AirlockState.PENDING:
            move(
                platform,
                conn,
                output_reviews,
                "output_review",
                review.id,
                AirlockState.FROZEN,
                actor,
                {"job": job_id},
            )
        else:
            continue
        frozen.append(job_id)
    return frozen


def unfreeze(
    platform: Platform, conn: Connection, actor: Actor, operator_id: int, agreement_id: int
) -> list[int]:
    """Thaw the frozen reviews under the agreement whose agreements are all active again."""
    thawed = []
    for job_id in _withheld(conn, operator_id, agreement_id):
        review = _review(conn, job_id)
        if review is None or AirlockState(review.status) is not AirlockState.FROZEN:
            continue
        if not _all_active(conn, job_agreements(conn, job_id)):
            continue
        move(
            platform,
            conn,
            output_reviews,
            "output_review",
            review.id,
            AirlockState.PENDING,
            actor,
            {"job": job_id},
        )
        thawed.append(job_id)
    return thawed
