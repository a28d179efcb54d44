"""Who may see and download which released product.

A product belongs to the operator whose job made it; the operator may read and
download it while its grants (and their agreements) are in force; the city
authority and the auditors may read every product, a county authority the products
of its county's jobs (Art. 5, 7; :mod:`sandbox.registry.jurisdiction`). Every read, on the host and
over the API, passes :func:`readable_product`. Every download is a ledger entry.
A consumer reads the products an operator delivered to it (Art. 15,
:mod:`sandbox.workflow.deliveries`) and no other; providers and reviewers read none.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from policies.errors import Conflict, NotFound, PermissionDenied, PolicyRefusal
from policies.job_states import JobState
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.core.store import jobs, products
from sandbox.data.grants import may_run
from sandbox.data.release import verify_product
from sandbox.registry.disposal import deleted_products, deletion_of
from sandbox.registry.jurisdiction import job_place, require_covers, scope_of
from sandbox.registry.tables import deliveries

READERS = (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR, Role.CONSUMER)


def delivered_to(conn: Connection, consumer_id: int) -> set[str]:
    """The ids of the products delivered to this consumer."""
    rows = conn.execute(
        select(deliveries.c.product_id).where(deliveries.c.consumer_id == consumer_id)
    )
    return set(rows.scalars())


def _require_reader(viewer: Principal) -> None:
    if viewer.role not in READERS:
        raise PermissionDenied(
            f"a {viewer.role.value} does not read operators' products: operators deliver "
            "them to consumers (Art. 15), the authority and auditors supervise them",
            article="Art. 15",
        )


def _visible(viewer: Principal, operator_id: int, product_id: str, delivered: set[str]) -> bool:
    """Its operator, the consumers it was delivered to (Art. 15), authorities, auditors."""
    if viewer.role is Role.OPERATOR:
        return operator_id == viewer.id
    if viewer.role is Role.CONSUMER:
        return product_id in delivered
    return viewer.role in (Role.AUTHORITY, Role.AUDITOR)


def _delivered(conn: Connection, viewer: Principal) -> set[str]:
    return delivered_to(conn, viewer.id) if viewer.role is Role.CONSUMER else set()


def _still_allowed(conn: Connection, operator: Principal, kind: str, inputs_json: str | None):
    """An operator reads its product only under a grant (and agreement) in force now: a
    suspended, expired or terminated agreement, or a suspended grant, stops every read
    (Art. 13, 24). The same gate as a new job: :func:`sandbox.data.grants.may_run`."""
    names = [i["dataset"] for i in json.loads(inputs_json or "[]")]
    may_run(conn, operator, names, kind, datetime.now(UTC))


def readable_product(conn: Connection, viewer: Principal, product_id: str) -> dict:
    """The product's row if ``viewer`` may read it now; otherwise the refusal.

    The one check of every read of a product: the host's ``sandbox product get`` and
    the API's manifest, file and zip routes (and so ``sandbox --server URL product
    get``) all come here, so they refuse alike: a role that reads no products
    (PermissionDenied, Art. 17), a product that is not released or not the viewer's
    (NotFound), an operator whose grant or agreement is not in force now
    (PolicyRefusal naming the rule, e.g. ``agreement_suspended``, Art. 24).
    """
    _require_reader(viewer)
    row = (
        conn.execute(
            select(products, jobs.c.status, jobs.c.kind, jobs.c.inputs_json)
            .join(jobs, jobs.c.id == products.c.job_id)
            .where(products.c.id == product_id)
        )
        .mappings()
        .first()
    )
    if (
        row is None
        or not _visible(viewer, row["operator_id"], product_id, _delivered(conn, viewer))
        or row["status"] != JobState.RELEASED.value
    ):
        raise NotFound(f"no released product '{product_id}' that you may read")
    if (gone := deletion_of(conn, product_id)) is not None:
        raise NotFound(
            f"product '{product_id}' was deleted by the disposal clause of agreement "
            f"{gone.agreement_id} at its end (Art. 13)",
            article="Art. 13",
        )
    if viewer.role is Role.OPERATOR:
        _still_allowed(conn, viewer, row["kind"], row["inputs_json"])
    elif viewer.role is Role.AUTHORITY:
        require_covers(viewer, job_place(conn, row["job_id"]), "read products", "Art. 5")
    return {k: v for k, v in row.items() if k in products.c}


def list_products(conn: Connection, viewer: Principal) -> list[dict]:
    """The products ``viewer`` may read now, oldest first: an operator's own while the
    grant (and the agreement) they were made under is in force (:func:`readable_product`'s
    rule); a county authority's, those of its county."""
    return list(_readable(conn, viewer, _listing().order_by(products.c.created_at)))


def products_page(
    conn: Connection, viewer: Principal, *, after: str | None, limit: int | None
) -> list[dict]:
    """The products ``viewer`` may read now (:func:`list_products`), by id: at most
    ``limit`` of those after id ``after`` (a page of the API); reading stops there."""
    stmt = _listing().order_by(products.c.id)
    if after is not None:
        stmt = stmt.where(products.c.id > after)
    return list(islice(_readable(conn, viewer, stmt), limit))


def _listing() -> Select:
    return select(products, jobs.c.kind, jobs.c.inputs_json).join(
        jobs, jobs.c.id == products.c.job_id
    )


def _readable(conn: Connection, viewer: Principal, stmt: Select) -> Iterator[dict]:
    """The rows of ``stmt`` that ``viewer`` may read now, as products' rows."""
    _require_reader(viewer)
    scope = scope_of(conn, viewer)
    allowed: dict[tuple, bool] = {}
    gone = deleted_products(conn)
    delivered = _delivered(conn, viewer)
    result = conn.execute(stmt)
    try:
        for r in result.mappings():
            if not _visible(viewer, r["operator_id"], r["id"], delivered) or r["id"] in gone:
                continue
            if scope is not None and r["id"] not in scope.products:
                continue
            if viewer.role is Role.OPERATOR:
                key = (r["kind"], r["inputs_json"])
                if key not in allowed:
                    try:
                        _still_allowed(conn, viewer, r["kind"], r["inputs_json"])
                        allowed[key] = True
                    except PolicyRefusal:
                        allowed[key] = False
                if not allowed[key]:
                    continue
            yield {k: v for k, v in r.items() if k in products.c}
    finally:
        result.close()  # a page may stop before the last row


def fetch_product(platform: Platform, viewer: Principal, product_id: str, out: Path) -> Path:
    with platform.store.read() as conn:
        row = readable_product(conn, viewer, product_id)
    source = platform.home / row["path"]
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
            {"manifest_sha256": row["manifest_sha256"]},
            "Art. 15",
        )
    return target
