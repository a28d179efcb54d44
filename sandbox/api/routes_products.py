"""Released products: list, manifest, and downloads of one file or the whole folder.

Only products whose job is ``released`` are served, and only to principals
:func:`sandbox.data.products.readable_product` lets read them now (their operator while
its grant and agreement are in force, the authority, auditors; others are refused
there with the rule and article, as on the host). Every byte
served is first verified against the signed manifest, and every download is a
``product.download`` ledger entry naming the file, as ``sandbox product get``
records its copy.
"""

from __future__ import annotations

import io
import zipfile

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from policies.errors import NotFound
from sandbox.api.auth import CurrentPrincipal
from sandbox.api.models import Product
from sandbox.api.paging import LimitQuery, cut, one_more
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.data.products import products_page, readable_product
from sandbox.data.release import MANIFEST, SIGNATURE, verify_product

router = APIRouter(prefix="/v1", tags=["products"])

PRODUCT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"


def _released_product(platform: Platform, viewer: Principal, product_id: str) -> tuple[dict, dict]:
    """The product's row and its verified manifest, if ``viewer`` may read it now.

    The check is :func:`sandbox.data.products.readable_product`, the one the host's
    ``sandbox product get`` makes: a suspended agreement refuses here as there.
    """
    with platform.store.read() as conn:
        row = readable_product(conn, viewer, product_id)
    manifest = verify_product(platform.home / row["path"], platform.key.public_key())
    return row, manifest


def _ledger_download(platform: Platform, viewer: Principal, row: dict, what: str) -> None:
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            viewer.actor,
            "product.download",
            f"product:{row['id']}",
            {"manifest_sha256": row["manifest_sha256"], "file": what, "channel": "api"},
            "Art. 15",
        )


@router.get("/products", response_model=list[Product])
def products_list(
    request: Request,
    response: Response,
    me: CurrentPrincipal,
    limit: int | None = LimitQuery,
    after: str | None = Query(default=None, pattern=PRODUCT_ID, description="the last id seen"),
):
    """Products you may download, by id; with ``limit``, one page and a
    ``Link: <...>; rel="next"`` header to the next."""
    with request.app.state.platform.store.read() as conn:
        rows = products_page(conn, me, after=after, limit=one_more(limit))
    return cut(request, response, rows, lambda r: r["id"], limit)


@router.get("/products/{product_id}")
def products_manifest(
    request: Request,
    me: CurrentPrincipal,
    product_id: str = PathParam(pattern=PRODUCT_ID),
) -> dict:
    """The product's signed manifest (verified before it is served)."""
    _row, manifest = _released_product(request.app.state.platform, me, product_id)
    return manifest


@router.get(
    "/products/{product_id}/files/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def products_file(
    request: Request,
    me: CurrentPrincipal,
    product_id: str = PathParam(pattern=PRODUCT_ID),
    name: str = PathParam(pattern=FILE_NAME),
):
    """One file of the product: a name from its manifest, or the manifest and its signature."""
    platform = request.app.state.platform
    row, manifest = _released_product(platform, me, product_id)
    allowed = set(manifest.get("files", {})) | {MANIFEST, SIGNATURE}
    if name not in allowed:
        raise NotFound(
            f"product '{product_id}' has no file '{name}'; its files: {', '.join(sorted(allowed))}"
        )
    _ledger_download(platform, me, row, name)
    return FileResponse(
        platform.home / row["path"] / name,
        filename=f"{product_id}-{name}",
        media_type="application/octet-stream",
    )


@router.get(
    "/products/{product_id}/zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def products_zip(
    request: Request,
    me: CurrentPrincipal,
    product_id: str = PathParam(pattern=PRODUCT_ID),
):
    """The whole product folder as a zip: files, manifest and signature."""
    platform = request.app.state.platform
    row, manifest = _released_product(platform, me, product_id)
    folder = platform.home / row["path"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(set(manifest.get("files", {})) | {MANIFEST, SIGNATURE}):
            archive.write(folder / name, f"{product_id}/{name}")
    _ledger_download(platform, me, row, "zip")
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{product_id}.zip"'},
    )
