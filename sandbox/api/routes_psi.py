"""PSI matches over HTTP: open a session, fetch the setup, exchange chunks, close.

``POST /v1/psi/sessions`` admits a match request (the gate with job kind
``psi_match`` and the PSI terms) and builds the setup if this dataset version has
none yet. ``GET /v1/psi/sessions/{id}/setup`` serves the setup bundle with an
``ETag`` that changes only with the dataset version (and the setup's form); a
client that sends ``If-None-Match`` gets 304 and reuses its copy.
``POST /v1/psi/sessions/{id}/chunks`` takes one serialised PSI request
(``application/octet-stream``, at most ``psi.chunk_items`` items and
``api.max_body_mb``) and answers the serialised response; the body is read only
after the session is found to be the caller's own and open. The platform's work
runs in a thread, so one long chunk never blocks the event loop.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MAX_ID, NAME
from sandbox.psi import count_answers, counts
from sandbox.psi import service as psi
from sandbox.psi.terms import set_terms

router = APIRouter(prefix="/v1/psi", tags=["psi"])

OCTETS = "application/octet-stream"


class SessionRequest(BaseModel):
    dataset: str = Field(pattern=NAME, max_length=100)
    column: str = Field(min_length=1, max_length=200)
    mode: str = Field(default="cardinality", max_length=20)
    list_size: int = Field(ge=0, le=10**9)
    consent: str | None = Field(default=None, max_length=200)
    group_by: str | None = Field(default=None, max_length=200)


class Session(BaseModel):
    session: int
    dataset: str
    version: int
    column: str
    group_by: str | None
    mode: str
    reveal: bool
    list_size: int
    chunk_items: int
    chunk_floor: int
    etag: str
    setup_bytes: int
    setup_built_now: bool


class CloseRequest(BaseModel):
    result_size: int | None = Field(default=None, ge=0, le=10**9)


class TermsRequest(BaseModel):
    dataset: str = Field(pattern=NAME, max_length=100)
    column: str = Field(min_length=1, max_length=200)
    agreement: int | None = Field(default=None, ge=1, le=MAX_ID)
    grant: int | None = Field(default=None, ge=1, le=MAX_ID)
    mode: str = Field(default="cardinality", max_length=20)
    min_items: int | None = Field(default=None, ge=1)
    max_items: int | None = Field(default=None, ge=1)
    daily_cap: int | None = Field(default=None, ge=1)
    group_dimensions: list[str] = Field(default_factory=list, max_length=50)
    group_threshold: int | None = Field(default=None, ge=1)
    consent_required: bool = False


@router.post("/terms", status_code=201)
def psi_terms_set(request: Request, body: TermsRequest, me: CurrentPrincipal) -> dict:
    """The authority sets the PSI terms of an agreement (or a direct grant) on one column."""
    from policies.psi import parse_mode

    terms_id = set_terms(
        request.app.state.platform,
        me,
        dataset=body.dataset,
        column=body.column,
        agreement_id=body.agreement,
        grant_id=body.grant,
        mode=parse_mode(body.mode),
        min_items=body.min_items,
        max_items=body.max_items,
        daily_cap=body.daily_cap,
        group_dimensions=body.group_dimensions,
        group_threshold=body.group_threshold,
        consent_required=body.consent_required,
    )
    return {"id": terms_id}


@router.post("/sessions", response_model=Session, status_code=201)
def psi_open(request: Request, body: SessionRequest, me: CurrentPrincipal):
    """Open a match (operators): refused with the rule and article, or the session."""
    return psi.open_session(request.app.state.platform, me, body.model_dump())


@router.get("/sessions/{session_id}/setup", responses={304: {"description": "not modified"}})
def psi_setup(request: Request, me: CurrentPrincipal, session_id: int = PathParam(ge=1, le=MAX_ID)):
    """The setup bundle of the session's dataset version; 304 when ``If-None-Match`` fits."""
    info = psi.setup_of(request.app.state.platform, me, session_id)
    headers = {"ETag": info.etag, "Cache-Control": "private, no-cache"}
    if request.headers.get("if-none-match") == info.etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(info.path, media_type=OCTETS, headers=headers)


@router.post("/sessions/{session_id}/chunks")
async def psi_chunk(
    request: Request, me: CurrentPrincipal, session_id: int = PathParam(ge=1, le=MAX_ID)
):
    """One chunk of the encrypted list in, the platform's answer out (both octets).

    The session's owner is checked before a byte of the body is read: a chunk for
    someone else's (or no) session is ``not_found`` whatever it holds.
    """
    platform = request.app.state.platform
    await anyio.to_thread.run_sync(psi.chunk_session, platform, me, session_id)
    body = await request.body()
    answer = await anyio.to_thread.run_sync(psi.process_chunk, platform, me, session_id, body)
    return Response(content=answer, media_type=OCTETS)


@router.post("/sessions/{session_id}/close")
def psi_close(
    request: Request,
    body: CloseRequest,
    me: CurrentPrincipal,
    session_id: int = PathParam(ge=1, le=MAX_ID),
) -> dict:
    """End the session; in cardinality mode the client may report the size it learned."""
    return psi.close_session(request.app.state.platform, me, session_id, body.result_size)


# --- count sessions: the roles swapped (docs/psi.md, "Counts about persons") ---------------


@router.post("/count-sessions", status_code=201)
async def psi_count_open(request: Request, me: CurrentPrincipal):
    """Round 1 (operators): the operator's setup in (``PSIC1`` framing: a JSON header
    ``{dataset, column, group_by}`` and a serialised RAW ``ServerSetup``), the session and
    the platform's request out (the same framing, octets); or the refusal, which counts
    toward the daily cap and spends nothing."""
    platform = request.app.state.platform
    body = await request.body()
    answer = await anyio.to_thread.run_sync(counts.open_count, platform, me, body)
    return Response(content=answer, media_type=OCTETS, status_code=201)


@router.post("/count-sessions/{session_id}/response")
async def psi_count_response(
    request: Request,
    me: CurrentPrincipal,
    session_id: int = PathParam(ge=1, le=MAX_ID),
    part: int = Query(default=0, ge=0, le=10**6),
) -> dict:
    """Round 2: the operator's serialised ``Response`` to one part of the platform's request
    (elements ``part * part_items`` on, at most ``part_items``) in (octets); when every part
    is in, the noisy count (per declared group) with its noise scale and 95% half-width,
    else ``{parts, answered}``. The session is checked to be the caller's own and open
    before the body is read."""
    platform = request.app.state.platform
    await anyio.to_thread.run_sync(count_answers.check_session, platform, me, session_id)
    body = await request.body()
    return await anyio.to_thread.run_sync(
        count_answers.answer_count, platform, me, session_id, body, part
    )
