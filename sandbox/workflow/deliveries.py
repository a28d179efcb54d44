"""Delivery of products to named consumers (Art. 15, 16).

An operator turns raw data into products *for* consumers (Art. 15): :func:`deliver`
hands one of its released products to a named consumer, while the operator may still
read it (its grants and agreement in force, the product not deleted by a disposal). The
consumer then lists and downloads what was delivered to it, through the same reads as
everyone (:func:`sandbox.data.products.readable_product`), and only a consumer that
received a product gives feedback on it (:mod:`sandbox.workflow.feedback`). Each
delivery is a ledger entry ``product.delivered`` and a notice in the consumer's inbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import Conflict, NotFound
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_name, require_role
from sandbox.core.store import inserted_id, jobs, products
from sandbox.data.grants import may_run
from sandbox.data.products import delivered_to
from sandbox.registry.disposal import deletion_of
from sandbox.registry.inbox import notify
from sandbox.registry.tables import deliveries


def _deliverable(conn: Connection, operator: Principal, product_id: str) -> None:
    """The operator's own released product, not deleted, its grants in force now (the same
    gate as its own download: a suspended or ended agreement delivers nothing, Art. 24)."""
    row = conn.execute(
        select(products.c.operator_id, jobs.c.kind, jobs.c.inputs_json)
        .join(jobs, jobs.c.id == products.c.job_id)
        .where(products.c.id == product_id)
    ).first()
    if row is None or row.operator_id != operator.id:
        raise NotFound(f"no released product '{product_id}' of yours")
    if (gone := deletion_of(conn, product_id)) is not None:
        raise Conflict(
            f"product '{product_id}' was deleted by the disposal clause of agreement "
            f"{gone.agreement_id} (Art. 13)",
            article="Art. 13",
        )
    names = [i["dataset"] for i in json.loads(row.inputs_json or "[]")]
    may_run(conn, operator, names, row.kind, datetime.now(UTC))


def deliver(
    platform: Platform, operator: Principal, product_id: str, consumer: str, note: str = ""
) -> int:
    """Deliver the operator's product to the named consumer; returns the delivery's id."""
    require_role(operator, Role.OPERATOR, action="deliver products", article="Art. 15")
    with platform.store.transaction() as conn:
        _deliverable(conn, operator, product_id)
        to = by_name(conn, consumer, Role.CONSUMER)
        if product_id in delivered_to(conn, to.id):
            raise Conflict(f"product '{product_id}' was delivered to {to.name} already")
        delivery = inserted_id(
            conn.execute(
                deliveries.insert().values(
                    product_id=product_id,
                    consumer_id=to.id,
                    operator_id=operator.id,
                    note=note or "",
                    created_at=now_utc(),
                )
            )
        )
        platform.record(
            conn,
            operator.actor,
            "product.delivered",
            f"product:{product_id}",
            {"consumer": to.name, "delivery": delivery, "note": note or ""},
            "Art. 15",
        )
        body = {"product": product_id, "operator": operator.name, "note": note or ""}
        notify(platform, conn, operator.actor, to.id, "product_delivered",
               f"product:{product_id}", body, "Art. 15")  # fmt: skip
        return delivery
