"""Who may see and download which released product.

A product belongs to the operator whose job made it; the operator may download
it while its grants (and their agreements) are in force; the authority and the
auditors may read every product (Art. 5, 7). Every download is a ledger entry.
Consumers reach products through the catalogue and agreements of the workflow
issue; until then they are refused here, by name.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import Conflict, NotFound, PermissionDenied

from .grants import may_run
from .platform import Platform
from .principals import Principal, Role
from .release import verify_product
from .store import jobs, products

READERS = (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR)


def _visible(viewer: Principal, operator_id: int) -> bool:
    if viewer.role is Role.OPERATOR:
        return operator_id == viewer.id
    return viewer.role in (Role.AUTHORITY, Role.AUDITOR)


def list_products(conn: Connection, viewer: Principal) -> list[dict]:
    if viewer.role not in READERS:
        raise PermissionDenied(
            f"a {viewer.role.value} may not list products yet; the catalogue "
            "comes with the workflow (Art. 17)",
            article="Art. 17",
        )
    rows = conn.execute(select(products).order_by(products.c.created_at)).mappings()
    return [dict(r) for r in rows if _visible(viewer, r["operator_id"])]


def _check_still_allowed(platform: Platform, operator: Principal, job_id: int) -> None:
    """An operator downloads only under a grant (and agreement) that is in force now:
    a suspended, expired or terminated agreement stops downloads too (Art. 13, 24)."""
    with platform.store.read() as conn:
        job = conn.execute(
            select(jobs.c.kind, jobs.c.inputs_json).where(jobs.c.id == job_id)
        ).first()
        names = [i["dataset"] for i in json.loads(job.inputs_json or "[]")]
        may_run(conn, operator, names, job.kind, datetime.now(UTC))


def fetch_product(platform: Platform, viewer: Principal, product_id: str, out: Path) -> Path:
    with platform.store.read() as conn:
        row = conn.execute(select(products).where(products.c.id == product_id)).first()
    if row is None or not _visible(viewer, row.operator_id):
        raise NotFound(f"no product '{product_id}' that you may download")
    if viewer.role is Role.OPERATOR:
        _check_still_allowed(platform, viewer, row.job_id)
    source = platform.home / row.path
    verify_product(source, platform.key.public_key())
    target = Path(out) / product_id
    if target.exists():
        raise Conflict(f"{target} exists already; choose another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            viewer.actor,
            "product.download",
            f"product:{product_id}",
            {"manifest_sha256": row.manifest_sha256},
            "Art. 15",
        )
    return target
