"""Datasets (register by upload or server-side URI, list, show) and grants.

Registration and grants call the same platform functions as the CLI
(:func:`sandbox.data.vault.register`, :func:`sandbox.data.grants.list_grants`), which
check the role. A direct grant (no agreement) is not made over the API: ``POST
/v1/grants`` refuses every caller and names the workflow that grants data use
(Art. 13, 14); the host keeps ``sandbox grant add`` for tests and recovery. A quality profile stays inside the platform: only the owning
provider, the authority and auditors see it; consumers see no classification
either (they reach products, not datasets).
"""

from __future__ import annotations

import shutil
from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi import Path as PathParam

from connectors.base import ConnectError
from policies.classes import Classification
from policies.errors import ClassificationError, InputError, PermissionDenied, SandboxError
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import (
    MAX_ID,
    NAME,
    DatasetDetail,
    DatasetSummary,
    GrantSummary,
    RegisterByUri,
    Registration,
)
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.api.sources import check_source, uniform_connect_error
from sandbox.core.principals import Role, require_role
from sandbox.data.grants import list_grants
from sandbox.data.uploads import (
    COPY_CHUNK,
    WORKBOOK_SUFFIXES,
    save_upload,
    scrub,
    upload_name,
    upload_suffix,
    workbook_uri,
)
from sandbox.data.vault import get_version, list_datasets, register

router = APIRouter(prefix="/v1", tags=["datasets"])

PROFILE_READERS = (Role.PROVIDER, Role.AUTHORITY, Role.AUDITOR)


def _classification(data: Any) -> Classification:
    try:
        return Classification.from_dict(data)
    except ClassificationError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ClassificationError(
            "the classification must map 'columns' to classes and name an 'entity_key'"
        ) from exc


@router.get("/datasets", response_model=list[DatasetSummary])
def datasets_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
):
    """Every dataset's latest version (names, sizes and hashes; never values); with
    ``limit``, a page by name and a ``Link`` to the next."""
    with request.app.state.platform.store.read() as conn:
        return page_of(request, response, list_datasets(conn), "name", limit, after)


@router.get("/datasets/{name}", response_model=DatasetDetail)
def datasets_show(
    request: Request,
    me: CurrentPrincipal,
    name: str = PathParam(pattern=NAME, max_length=100),
    version: int | None = Query(default=None, ge=1, le=MAX_ID),
):
    """A dataset version; its profile only for its provider, the authority and auditors."""
    platform = request.app.state.platform
    with platform.store.read() as conn:
        v = get_version(conn, platform, name, version)
    if me.role is Role.PROVIDER and v.provider_id != me.id:
        raise PermissionDenied(
            f"dataset '{name}' belongs to another provider (Art. 14)", article="Art. 14"
        )
    sees_profile = me.role in PROFILE_READERS
    return DatasetDetail(
        dataset=name,
        version=v.version,
        rows=v.rows,
        sha256=v.sha256,
        created_at=v.created_at,
        classification=None if me.role is Role.CONSUMER else v.classification.to_dict(),
        profile=v.profile if sees_profile else None,
    )


@router.post("/datasets", response_model=Registration, status_code=201)
def datasets_register_uri(request: Request, body: RegisterByUri, me: CurrentPrincipal):
    """Register from a server-side source: a file under ``api.source_roots`` or a database URI."""
    require_role(me, Role.PROVIDER, action="register datasets", article="Art. 14")
    platform = request.app.state.platform
    classification = _classification(body.classification)
    settings = platform.settings
    check_source(body.uri, tuple(settings.api.source_roots), tuple(settings.api.source_hosts))
    try:
        result = register(platform, me, body.name, body.uri, classification)
    except ConnectError as exc:
        raise uniform_connect_error(exc, body.uri) from None
    except SandboxError as exc:
        scrub(exc, {str(platform.home): "the platform's home"})
        raise
    return Registration(**result.summary())


@router.post("/datasets/upload", response_model=Registration, status_code=201)
async def datasets_register_upload(
    request: Request,
    me: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="the data: .csv, .parquet, .jsonl, .xlsx")],
    classification: Annotated[UploadFile, File(description="the classification YAML")],
    name: str = Form(pattern=NAME, max_length=100),
    text: str | None = Form(
        default=None, max_length=10_000, description="CSV columns to read as text, comma-separated"
    ),
    sheet: str | None = Form(default=None, max_length=200, description="a workbook's sheet"),
    header: str | None = Form(
        default=None, max_length=20, description="a workbook's header row (2) or rows (1-2)"
    ),
):
    """Register an uploaded file with its classification (capped by ``api.max_upload_mb``)."""
    from starlette.concurrency import run_in_threadpool

    require_role(me, Role.PROVIDER, action="register datasets", article="Art. 14")
    platform = request.app.state.platform
    suffix = upload_suffix(file.filename, sheet, header)
    workbook = suffix in WORKBOOK_SUFFIXES
    if text is not None and suffix != ".csv" and not workbook:
        raise InputError("'text' applies to CSV and workbook uploads only")
    raw = await classification.read(COPY_CHUNK + 1)
    if len(raw) > COPY_CHUNK:
        raise InputError("the classification file is over 1 MiB")
    try:
        parsed = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ClassificationError("the classification file is not valid UTF-8 YAML") from exc
    parsed_classification = _classification(parsed)
    work = platform.work_dir()
    try:
        target = work / f"upload{suffix}"
        await save_upload(file, target)
        uri = str(target)
        if workbook:
            uri = workbook_uri(target, sheet=sheet, header=header, text=text)
        elif text is not None:
            uri = f"csv://{target}?text={quote(text, safe=',')}"
        try:
            result = await run_in_threadpool(
                register, platform, me, name, uri, parsed_classification
            )
        except SandboxError as exc:
            shown = upload_name(file.filename, suffix)
            utf8 = "an upload must be UTF-8: convert the file (e.g. from GBK) before sending it"
            scrub(
                exc,
                {
                    # The connector's hints name URI options; an upload has other means.
                    f"give its encoding, e.g. csv://{target}?encoding=gbk": utf8,
                    f"give the file's encoding, e.g. csv://{target}?encoding=gbk": utf8,
                    f"with csv://{target}?text=": "by sending the form field text=",
                    "with ?text=": "by sending the form field text=",
                    f"excel://{target}": shown,
                    f"csv://{target}": shown,
                    str(target): shown,
                    str(work): "the upload's work folder",
                    str(platform.home): "the platform's home",
                },
            )
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Registration(**result.summary())


@router.post("/grants", status_code=403, tags=["grants"])
def grants_add(me: CurrentPrincipal) -> None:
    """Refused for everyone: data use is granted through the workflow (Art. 13, 14)."""
    raise PermissionDenied(
        "no direct grant over the API: data use is granted by a data request under an "
        "agreement (notice, application, review, agreement, approval by the provider or "
        "the authority); a direct grant is made on the platform's host only (Art. 13, 14)",
        article="Art. 14",
        code="direct_grant_host_only",
    )


@router.get("/grants", response_model=list[GrantSummary], tags=["grants"])
def grants_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
):
    """The grants the caller may see, with the job kinds each covers (Art. 14); with
    ``limit``, a page by id."""
    with request.app.state.platform.store.read() as conn:
        return page_of(request, response, list_grants(conn, me), "id", limit, after)
