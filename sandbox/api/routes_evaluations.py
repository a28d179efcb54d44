"""Evaluations and the materials operators submit for them (Art. 23) over HTTP.

Each route calls the function of :mod:`sandbox.workflow.evaluations` that the CLI calls
on the host, which checks the role, the reach (Art. 5), the file and the agreement's
state and writes the ledger, so ``sandbox --server URL evaluation ...`` prints what the
host prints. A material is sent as a form with its file (``POST
/v1/evaluation-materials``, under the upload cap ``api.max_upload_mb`` at the door and
:data:`sandbox.workflow.evaluations.MAX_BYTES` here); it comes back as the file, with the
SHA-256 recorded at its submission and its name in headers.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import MATERIAL_NAME, MATERIAL_SHA256, MAX_ID
from sandbox.api.paging import AfterQuery, LimitQuery, page_of
from sandbox.data.uploads import COPY_CHUNK
from sandbox.workflow import evaluations

router = APIRouter(prefix="/v1", tags=["workflow"])


async def _read_capped(upload: UploadFile) -> bytes:
    """The upload, read up to one byte over the material's limit (which then refuses it)."""
    parts: list[bytes] = []
    size = 0
    while size <= evaluations.MAX_BYTES and (chunk := await upload.read(COPY_CHUNK)):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[: evaluations.MAX_BYTES + 1]


@router.post("/evaluation-materials", status_code=201)
async def material_submit(
    request: Request,
    me: CurrentPrincipal,
    file: Annotated[UploadFile, File(description="the material: a document, at most 20 MiB")],
    agreement: int = Form(ge=1, le=MAX_ID),
    title: str = Form(max_length=10_000),
) -> dict[str, Any]:
    """The operator submits a material for the evaluation of its agreement (Art. 23)."""
    content = await _read_capped(file)
    return await run_in_threadpool(
        evaluations.submit,
        request.app.state.platform,
        me,
        agreement,
        title=title,
        filename=file.filename or "",
        content=content,
    )


@router.get("/agreements/{agreement_id}/materials")
def material_list(
    request: Request,
    me: CurrentPrincipal,
    response: Response,
    limit: int | None = LimitQuery,
    after: str | None = AfterQuery,
    agreement_id: int = PathParam(ge=1, le=MAX_ID),
) -> list[dict[str, Any]]:
    """The materials submitted for an agreement's evaluations: its operator, the
    authorities covering it, auditors; with ``limit``, a page by id."""
    rows = evaluations.materials_of(request.app.state.platform, me, agreement_id)
    return page_of(request, response, rows, "id", limit, after)


@router.get(
    "/evaluation-materials/{material_id}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def material_download(
    request: Request, me: CurrentPrincipal, material_id: int = PathParam(ge=1, le=MAX_ID)
):
    """A material's file, checked against the SHA-256 recorded at its submission."""
    info, path = evaluations.material_file(request.app.state.platform, me, material_id)
    headers = {MATERIAL_SHA256: info["sha256"], MATERIAL_NAME: quote(info["filename"])}
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


@router.get("/evaluations/{evaluation_id}")
def evaluation_show(
    request: Request, me: CurrentPrincipal, evaluation_id: int = PathParam(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """An evaluation: result, notes, score, figures and the materials it considered."""
    return evaluations.evaluation_dict(request.app.state.platform, me, evaluation_id)
