"""The lineage of a product, for auditors and the authority (Art. 5, 7, 23): where it came
from and where it went, each part linked to its own page.

For a product id: the job that made it (its SQL as it ran, the operator, its dates, the
output check's verdict and parameters), the grants and the agreements it ran under, the
dataset versions it read (name, version, SHA-256, rows, and the county when the input was
a county's slice), the output review's state and votes, the deliveries to consumers, and
the ledger entries about the product and its job.

Who reads it: auditors, and an authority whose jurisdiction covers the job's place
(:func:`sandbox.registry.jurisdiction.job_place` and ``require_covers``, the rule that lets
a county authority read its county's products); every other role is refused by name.
The parts come from the functions the other pages use: the signed manifest, verified first
(:func:`sandbox.data.release.verify_product`), for the versions read;
:func:`sandbox.workflow.airlock.show` for the votes (sealed until both are in);
:func:`sandbox.registry.jurisdiction.read_ledger` for the entries (a county authority's
scope). A product deleted by its agreement's disposal clause keeps its lineage: the
versions are then those the job recorded (``inputs_json``), with each version's rows.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from policies.errors import NotFound, PermissionDenied
from sandbox.console.pages_operator import PRODUCT_ID
from sandbox.console.web import CurrentSession, console_router, redirect, render
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import datasets, grants, jobs, products
from sandbox.data.release import verify_product
from sandbox.data.vault import get_version
from sandbox.registry.disposal import deletion_of
from sandbox.registry.jurisdiction import job_place, read_ledger, require_covers
from sandbox.registry.tables import deliveries
from sandbox.workflow import airlock

router = console_router()

ARTICLE = "Art. 7"
ENTRIES = 500


def _require(viewer: Principal) -> None:
    if viewer.role not in (Role.AUDITOR, Role.AUTHORITY):
        raise PermissionDenied(
            f"a {viewer.role.value} does not read products' lineage: auditors and the "
            f"authority supervise data use ({ARTICLE})",
            article=ARTICLE,
        )


@router.get("/lineage")
def lineage_lookup(
    request: Request,
    session: CurrentSession,
    product: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The form that asks for a product id (and goes to its lineage)."""
    _require(session.principal)
    wanted = product.strip()
    if wanted:
        if not re.fullmatch(PRODUCT_ID, wanted):
            raise NotFound(f"no product '{wanted}'")
        return redirect(f"/lineage/{wanted}")
    return render(request, "lineage.html", {"lin": None})


def _versions(conn, platform, manifest: dict | None, inputs: list[dict]) -> list[dict]:
    """The dataset versions read: the manifest's (verified), else the job's record."""
    if manifest is not None and manifest.get("datasets"):
        return [
            {
                **d,
                "grant": next((i.get("grant") for i in inputs if i["dataset"] == d["name"]), None),
            }
            for d in manifest["datasets"]
        ]
    out = []
    for i in inputs:
        version = get_version(conn, platform, i["dataset"], i["version"])
        out.append({"name": i["dataset"], "version": i["version"], "sha256": i["sha256"],
                    "rows": version.rows, "county": i.get("county"), "grant": i.get("grant")})  # fmt: skip
    return out


def _grants(conn, ids: list[int]) -> list[dict]:
    rows = conn.execute(
        select(grants, datasets.c.name.label("dataset"))
        .join(datasets, datasets.c.id == grants.c.dataset_id)
        .where(grants.c.id.in_(ids))
        .order_by(grants.c.id)
    ).all()
    return [
        {"id": r.id, "dataset": r.dataset, "agreement": r.agreement_id, "status": r.status,
         "valid_from": r.valid_from, "valid_until": r.valid_until,
         "operator": by_id(conn, r.operator_id).name}
        for r in rows
    ]  # fmt: skip


def _deliveries(conn, product_id: str) -> list[dict]:
    rows = conn.execute(
        select(deliveries).where(deliveries.c.product_id == product_id).order_by(deliveries.c.id)
    ).all()
    return [
        {"consumer": by_id(conn, r.consumer_id).name, "note": r.note, "at": r.created_at}
        for r in rows
    ]


def _lineage(platform, me: Principal, product_id: str) -> dict[str, Any]:
    _require(me)
    with platform.store.read() as conn:
        row = conn.execute(
            select(products, jobs.c.kind, jobs.c.request_json, jobs.c.inputs_json,
                   jobs.c.report_json, jobs.c.created_at.label("job_created"),
                   jobs.c.updated_at.label("job_updated"), jobs.c.status.label("job_status"))
            .join(jobs, jobs.c.id == products.c.job_id)
            .where(products.c.id == product_id)
        ).mappings().first()  # fmt: skip
        if row is None:
            raise NotFound(f"no product '{product_id}'")
        job_id = row["job_id"]
        if me.role is Role.AUTHORITY:
            require_covers(me, job_place(conn, job_id), "read products' lineage", "Art. 5")
        gone = deletion_of(conn, product_id)
        manifest = None
        if gone is None:
            manifest = verify_product(platform.home / row["path"], platform.key.public_key())
        inputs = json.loads(row["inputs_json"] or "[]")
        versions = _versions(conn, platform, manifest, inputs)
        used = _grants(conn, sorted({i["grant"] for i in inputs if i.get("grant") is not None}))
        entries = read_ledger(conn, me, subject=f"product:{product_id}", limit=ENTRIES)
        entries += read_ledger(conn, me, subject=f"job:{job_id}", limit=ENTRIES)
        operator = by_id(conn, row["operator_id"]).name
        delivered = _deliveries(conn, product_id)
    request = json.loads(row["request_json"] or "{}")
    job = (manifest or {}).get("job") or {}
    return {
        "product": dict(row),
        "deleted": gone is not None,
        "job": {
            "id": job_id,
            "kind": row["kind"],
            "operator": operator,
            "sql": job.get("sql") or request.get("sql"),
            "created_at": row["job_created"],
            "updated_at": row["job_updated"],
            "status": row["job_status"],
        },
        "report": json.loads(row["report_json"] or "{}"),
        "versions": versions,
        "grants": used,
        "agreements": sorted({g["agreement"] for g in used if g["agreement"] is not None}),
        "review": airlock.show(platform, me, job_id),
        "deliveries": delivered,
        "entries": sorted(entries, key=lambda e: e["seq"], reverse=True),
    }


@router.get("/lineage/{product_id}")
def lineage_page(
    request: Request,
    session: CurrentSession,
    product_id: Annotated[str, PathParam(pattern=PRODUCT_ID)],
) -> Response:
    lineage = _lineage(request.app.state.platform, session.principal, product_id)
    return render(request, "lineage.html", {"lin": lineage})
