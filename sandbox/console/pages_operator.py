"""The operator's pages: submit a SQL job beside the schemas it may use, follow its state,
read, download and deliver its products (:func:`sandbox.workflow.deliveries.deliver`);
and the consumer's: the products delivered to it, with
its feedback on the three points of Art. 16 (:func:`sandbox.workflow.feedback.give`).

The same functions as the API's routes: :meth:`JobService.enqueue` (admission refuses at
once, naming the rule, the article and what to do, shown in place above the editor),
:func:`~sandbox.run.jobstate.list_jobs` and :func:`~sandbox.run.jobstate.job_outcome`
(an operator reads only its own jobs, and a withheld job only as "withheld for review"),
:func:`~sandbox.guard.dp_views.shares` (its privacy budgets where DP applies),
:func:`~sandbox.data.products.list_products` and
:func:`~sandbox.data.products.readable_product` (a suspended agreement stops every read),
and :func:`~sandbox.data.release.verify_product` before any byte is shown or served; each
download is a ``product.download`` ledger entry, as through the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import pyarrow.parquet as pq
from fastapi import Form, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from policies.errors import NotFound
from sandbox.console.web import (
    CurrentSession,
    FormSession,
    Id,
    console_router,
    redirect,
    render,
)
from sandbox.core.principals import Principal, Role
from sandbox.data.grants import grants_in_use
from sandbox.data.products import list_products, readable_product
from sandbox.data.release import MANIFEST, SIGNATURE, verify_product
from sandbox.data.vault import get_version
from sandbox.guard import dp_views
from sandbox.run.jobstate import ACTIVE_STATES, job_outcome, list_jobs
from sandbox.workflow import deliveries, feedback

router = console_router()

SQL_MAX = 100_000
PREVIEW_ROWS = 100
PRODUCT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
SQL_KIND = "sql_aggregate"  # the kind of a job submitted from the editor


def _schemas(platform, operator: Principal) -> list[dict[str, Any]]:
    """The datasets the operator holds a grant in force for, each with its columns and
    their classes: those of the grant a SQL job would run under and be admitted against
    (:func:`~sandbox.data.grants.grants_in_use`, the columns it allows when it names them)."""
    if operator.role is not Role.OPERATOR:
        return []
    now = datetime.now(UTC)
    out = []
    with platform.store.read() as conn:
        for name, grant in sorted(grants_in_use(conn, operator, SQL_KIND, now).items()):
            if grant.status.value != "active" or not grant.valid_from <= now < grant.valid_until:
                continue
            version = get_version(conn, platform, name)
            out.append(
                {
                    "name": name,
                    "version": version.version,
                    "rows": version.rows,
                    "entity_key": version.classification.entity_key,
                    "columns": [
                        {"name": column, "class": cls.value}
                        for column, cls in version.classification.columns.items()
                        if grant.columns is None or column in grant.columns
                    ],
                }
            )
    return out


def _jobs_page(request: Request, session, sql: str = "", error: dict | None = None, status=200):
    platform = request.app.state.platform
    with platform.store.read() as conn:
        jobs = list_jobs(conn, session.principal)
        budget = (
            dp_views.shares(conn, session.principal)["shares"]
            if session.principal.role is Role.OPERATOR
            else []
        )
    return render(
        request,
        "jobs.html",
        {
            "jobs": list(reversed(jobs)),
            "schemas": _schemas(platform, session.principal),
            "sql": sql,
            "error": error,
            "may_submit": session.principal.role is Role.OPERATOR,
            "budget": budget,
        },
        status=status,
    )


@router.get("/jobs")
def jobs_page(request: Request, session: CurrentSession) -> Response:
    return _jobs_page(request, session)


@router.post("/jobs")
def jobs_submit(
    request: Request, session: FormSession, sql: Annotated[str, Form(max_length=SQL_MAX)] = ""
) -> Response:
    """Submit as ``POST /v1/jobs`` does; a refusal is shown above the editor, SQL kept."""
    service = request.app.state.service
    outcome = service.enqueue(session.principal, {"sql": sql})
    request.app.state.executor.wake()
    if outcome.reason is not None and outcome.state.value == "refused":
        return _jobs_page(request, session, sql, outcome.reason, status=422)
    return redirect(f"/jobs/{outcome.job_id}")


def _outcome(request: Request, session, job_id: int) -> dict[str, Any]:
    with request.app.state.platform.store.read() as conn:
        outcome = job_outcome(conn, session.principal, job_id)
    return {
        "job": outcome.job_id,
        "state": outcome.state.value,
        "active": outcome.state in ACTIVE_STATES,
        "reason": outcome.reason,
        "report": outcome.report,
        "product": outcome.product_id,
    }


@router.get("/jobs/{job_id}")
def job_page(request: Request, session: CurrentSession, job_id: Id) -> Response:
    return render(request, "job.html", {"job": _outcome(request, session, job_id)})


@router.get("/jobs/{job_id}/state")
def job_state(request: Request, session: CurrentSession, job_id: Id) -> Response:
    """The job's state panel, which htmx polls while the job runs."""
    return render(request, "job_state.html", {"job": _outcome(request, session, job_id)})


@router.get("/products")
def products_page(request: Request, session: CurrentSession) -> Response:
    with request.app.state.platform.store.read() as conn:
        items = list_products(conn, session.principal)
    return render(request, "products.html", {"items": list(reversed(items))})


def _verified(request: Request, session, product_id: str) -> tuple[dict, dict]:
    platform = request.app.state.platform
    with platform.store.read() as conn:
        row = readable_product(conn, session.principal, product_id)
    manifest = verify_product(platform.home / row["path"], platform.key.public_key())
    return row, manifest


@router.get("/products/{product_id}")
def product_page(
    request: Request,
    session: CurrentSession,
    product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)],
) -> Response:
    """The manifest (verified), the released table's first rows, and the files."""
    row, manifest = _verified(request, session, product_id)
    table = pq.ParquetFile(request.app.state.platform.home / row["path"] / "output.parquet")
    first = next(table.iter_batches(batch_size=PREVIEW_ROWS), None)  # not the whole table
    preview = first.to_pylist() if first is not None else []
    return render(
        request,
        "product.html",
        {
            "product": row,
            "manifest": manifest,
            "columns": table.schema_arrow.names,
            "preview": preview,
            "total_rows": table.metadata.num_rows,
            "files": sorted(set(manifest.get("files", {})) | {MANIFEST, SIGNATURE}),
            "may_rate": session.principal.role is Role.CONSUMER,
            "may_deliver": session.principal.role is Role.OPERATOR,
            "points": feedback.POINTS,
        },
    )


@router.post("/products/{product_id}/deliver")
def product_deliver(
    request: Request,
    session: FormSession,
    product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)],
    consumer: Annotated[str, Form(max_length=100)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The operator delivers its product to a named consumer (Art. 15), as the API does."""
    platform = request.app.state.platform
    deliveries.deliver(platform, session.principal, product_id, consumer.strip(), note)
    return redirect(f"/products/{product_id}?delivered=1")


@router.post("/products/{product_id}/feedback")
def product_feedback(
    request: Request,
    session: FormSession,
    product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)],
    quality: Annotated[int, Form(ge=1, le=5)],
    use: Annotated[int, Form(ge=1, le=5)],
    effect: Annotated[int, Form(ge=1, le=5)],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A consumer's feedback on a product delivered to it (Art. 16), as the API takes it."""
    feedback.give(
        request.app.state.platform,
        session.principal,
        product_id,
        quality=quality,
        use=use,
        effect=effect,
        comment=comment,
    )
    return redirect(f"/products/{product_id}?rated=1")


@router.get("/products/{product_id}/files/{name}")
def product_file(
    request: Request,
    session: CurrentSession,
    product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)],
    name: Annotated[str, PathParam(pattern=FILE_NAME)],
) -> Response:
    """One file of the product, verified and ledgered (``product.download``, channel console)."""
    platform = request.app.state.platform
    row, manifest = _verified(request, session, product_id)
    allowed = set(manifest.get("files", {})) | {MANIFEST, SIGNATURE}
    if name not in allowed:
        raise NotFound(f"product '{product_id}' has no file '{name}'")
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            session.principal.actor,
            "product.download",
            f"product:{product_id}",
            {"manifest_sha256": row["manifest_sha256"], "file": name, "channel": "console"},
            "Art. 15",
        )
    return FileResponse(
        platform.home / row["path"] / name,
        filename=f"{product_id}-{name}",
        media_type="application/octet-stream",
    )
