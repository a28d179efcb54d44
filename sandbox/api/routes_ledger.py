"""The ledger over HTTP: filtered reads for auditors and the authority, and verification.

A county authority reads only the entries of its county
(:func:`sandbox.registry.jurisdiction.read_ledger`).

``GET /v1/ledger/verify`` walks the whole hash chain and the signed head, like
``sandbox ledger verify``; a broken chain is a 409 ``integrity`` error naming
the first bad entry. It reveals only counts and the head hash, so any
authenticated principal may ask.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import LedgerEntry, LedgerVerification
from sandbox.api.paging import cut, one_more
from sandbox.core import ledger as ledger_mod
from sandbox.registry.jurisdiction import read_ledger

router = APIRouter(prefix="/v1", tags=["ledger"])

MAX_ENTRIES = 10_000


@router.get("/ledger", response_model=list[LedgerEntry])
def ledger_read(
    request: Request,
    response: Response,
    me: CurrentPrincipal,
    actor: str | None = Query(default=None, max_length=200),
    subject: str | None = Query(default=None, max_length=200),
    action: str | None = Query(default=None, max_length=64),
    since: str | None = Query(default=None, max_length=40, description="ISO time"),
    until: str | None = Query(default=None, max_length=40, description="ISO time"),
    limit: int = Query(default=1000, ge=1, le=MAX_ENTRIES),
    after: int | None = Query(default=None, ge=0, description="the last sequence number seen"),
):
    """Ledger entries, oldest first (auditor or authority; a county authority's own county):
    at most ``limit``, after ``after``, and a ``Link: <...>; rel="next"`` header while more
    follow (the filters kept)."""
    with request.app.state.platform.store.read() as conn:
        rows = read_ledger(
            conn,
            me,
            actor=actor,
            subject=subject,
            action=action,
            since=since,
            until=until,
            limit=one_more(limit),
            after=after,
        )
    return cut(request, response, rows, lambda r: r["seq"], limit)


@router.get("/ledger/verify", response_model=LedgerVerification)
def ledger_verify(request: Request, me: CurrentPrincipal):
    """Walk the hash chain and check the signed head."""
    platform = request.app.state.platform
    with platform.store.read() as conn:
        report = ledger_mod.verify(conn, platform.key.public_key())
    return LedgerVerification(
        entries=report.entries, head_seq=report.head_seq, head_hash=report.head_hash
    )
