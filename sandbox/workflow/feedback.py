"""Feedback (Art. 16): consumers rate and comment on the products they use.

A rating is a whole number from 1 to 5 with a comment; it counts in the
operator's usage report and evaluation figures. A product deleted under its
agreement's disposal clause takes no more feedback.
"""

from __future__ import annotations

from sqlalchemy import select

from policies.errors import Conflict, InputError, NotFound
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import inserted_id, products
from sandbox.workflow.tables import feedback, product_dispositions


def give(
    platform: Platform, consumer: Principal, product_id: str, rating: int, comment: str = ""
) -> int:
    require_role(consumer, Role.CONSUMER, action="give feedback on products", article="Art. 16")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InputError("--rating must be a whole number from 1 to 5 (Art. 16)", article="Art. 16")
    with platform.store.transaction() as conn:
        if conn.execute(select(products.c.id).where(products.c.id == product_id)).first() is None:
            raise NotFound(f"no product '{product_id}'")
        gone = conn.execute(
            select(product_dispositions.c.action).where(
                product_dispositions.c.product_id == product_id
            )
        ).scalar()
        if gone == "delete":
            raise Conflict(
                f"product '{product_id}' was deleted at its agreement's end (Art. 13)",
                article="Art. 13",
            )
        inserted = conn.execute(
            feedback.insert().values(
                product_id=product_id,
                consumer_id=consumer.id,
                rating=rating,
                comment=comment or "",
                created_at=now_utc(),
            )
        )
        fid = inserted_id(inserted)
        platform.record(
            conn,
            consumer.actor,
            "feedback.given",
            f"feedback:{fid}",
            {"product": product_id, "rating": rating, "comment": comment or ""},
            "Art. 16",
        )
        return fid
