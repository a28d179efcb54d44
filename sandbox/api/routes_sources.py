"""Providers' sources over HTTP: a suggested classification (``POST /v1/datasets/suggest``,
or ``.../suggest/upload`` for a file sent along), nothing registered; a registered
source pulled again (``POST /v1/datasets/{name}/refresh``), daily on a schedule
(``PUT /v1/datasets/{name}/schedule``), and the provider's sources (``GET /v1/sources``).

A server-side source passes the same checks as a registration
(:func:`sandbox.api.sources.check_source`: files under ``api.source_roots``, databases
of ``api.source_hosts``); a failure to connect is answered with one message.
"""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from connectors.base import ConnectError
from policies.errors import SandboxError, SourceError
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import NAME, KeptSource, Pull, Schedule, Suggestion
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.api.sources import check_source, uniform_connect_error
from sandbox.core.principals import Role, require_role
from sandbox.data.kept_sources import kept_uri
from sandbox.data.refresh import list_sources, refresh, set_schedule, source_of
from sandbox.data.suggestion import MAX_ROWS, suggest_classification
from sandbox.data.uploads import (
    WORKBOOK_SUFFIXES,
    save_upload,
    scrub,
    upload_name,
    upload_suffix,
    workbook_uri,
)

router = APIRouter(prefix="/v1", tags=["datasets"])


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1, max_length=4096)
    rows: int | None = Field(default=None, ge=1, le=MAX_ROWS)


@router.post("/datasets/suggest", response_model=Suggestion)
def datasets_suggest(request: Request, body: SuggestRequest, me: CurrentPrincipal):
    """Profile a server-side source and propose its classification; registers nothing."""
    platform = request.app.state.platform
    settings = platform.settings
    check_source(body.uri, tuple(settings.api.source_roots), tuple(settings.api.source_hosts))
    try:
        return suggest_classification(platform, me, body.uri, rows=body.rows)
    except ConnectError as exc:
        raise uniform_connect_error(exc, body.uri) from None
    except SandboxError as exc:
        scrub(exc, {str(platform.home): "the platform's home"})
        raise


@router.post("/datasets/suggest/upload", response_model=Suggestion)
async def datasets_suggest_upload(
    request: Request,
    me: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="the data: .csv, .parquet, .jsonl, .xlsx")],
    rows: int | None = Form(default=None, ge=1, le=MAX_ROWS),
    sheet: str | None = Form(default=None, max_length=200),
    header: str | None = Form(default=None, max_length=20),
):
    """Profile an uploaded file and propose its classification; the file is not kept."""
    platform = request.app.state.platform
    suffix = upload_suffix(file.filename, sheet, header)
    work = platform.work_dir()
    try:
        target = work / f"upload{suffix}"
        await save_upload(file, target)
        uri = str(target)
        if suffix in WORKBOOK_SUFFIXES and (sheet or header):
            uri = workbook_uri(target, sheet=sheet, header=header)
        try:
            return await run_in_threadpool(suggest_classification, platform, me, uri, rows=rows)
        except SandboxError as exc:
            shown = upload_name(file.filename, suffix)
            scrub(exc, {uri: shown, str(target): shown, str(platform.home): "the platform's home"})
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    daily_at: str | None = Field(
        default=None, max_length=5, description="HH:MM in Asia/Shanghai; null: no schedule"
    )


@router.post("/datasets/{name}/refresh", response_model=Pull)
def datasets_refresh(request: Request, me: CurrentPrincipal, name: str = PathParam(pattern=NAME)):
    """Pull a dataset from its source again; a new version only if its data changed.

    The source must still be one this API may open (``api.source_roots``,
    ``api.source_hosts``); a failed pull keeps the last version, ledgered."""
    platform = request.app.state.platform
    settings = platform.settings
    require_role(me, Role.PROVIDER, action="refresh datasets", article="Art. 14")
    with platform.store.read() as conn:
        source_of(conn, platform, me, name)  # its own provider's, before its URI is looked at
    uri = kept_uri(platform, name)
    if uri is not None:
        check_source(uri, tuple(settings.api.source_roots), tuple(settings.api.source_hosts))
    try:
        return refresh(platform, me, name)
    except ConnectError as exc:
        uniform = uniform_connect_error(exc, uri or "").message
        raise SourceError(
            f"refresh of '{name}' failed, the last version stays: {uniform}"
        ) from None
    except SandboxError as exc:
        scrub(exc, {str(platform.home): "the platform's home"})
        raise


@router.put("/datasets/{name}/schedule", response_model=Schedule)
def datasets_schedule(
    request: Request,
    body: ScheduleRequest,
    me: CurrentPrincipal,
    name: str = PathParam(pattern=NAME),
):
    """Pull a dataset from its source every day at a time (Asia/Shanghai), or stop."""
    return set_schedule(request.app.state.platform, me, name, body.daily_at)


@router.get("/sources", response_model=list[KeptSource])
def sources_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
):
    """The caller's datasets that can be pulled again, with their schedules and last
    pulls; with ``limit``, a page by dataset name."""
    rows = list_sources(request.app.state.platform, me)
    return page_of(request, response, rows, "dataset", limit, after)
