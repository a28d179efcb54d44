"""Feedback (Art. 16): consumers tell how a product they received served them.

Only a consumer the product was delivered to (:mod:`sandbox.workflow.deliveries`) gives
feedback on it, on the three points of Art. 16, each a whole number from 1 to 5:
``quality`` (of the product), ``use`` (how it was used) and ``effect`` (what it did), with
a comment. Their mean, rounded, is the feedback's rating, which counts in the operator's
usage report and evaluation figures. A product deleted under its agreement's disposal
clause takes no more feedback.
"""

from __future__ import annotations

from sqlalchemy import select

from policies.errors import Conflict, InputError, PermissionDenied
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import inserted_id
from sandbox.data.products import delivered_to
from sandbox.registry.tables import feedback, feedback_points, product_dispositions

POINTS = ("quality", "use", "effect")  # Art. 16


def _checked(points: dict[str, int]) -> dict[str, int]:
    for name, value in points.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise InputError(
                f"--{name} must be a whole number from 1 to 5 (Art. 16)", article="Art. 16"
            )
    return points


def give(
    platform: Platform,
    consumer: Principal,
    product_id: str,
    *,
    quality: int,
    use: int,
    effect: int,
    comment: str = "",
) -> int:
    """Record a delivered product's feedback on the three points; returns its id."""
    require_role(consumer, Role.CONSUMER, action="give feedback on products", article="Art. 16")
    points = _checked({"quality": quality, "use": use, "effect": effect})
    rating = round(sum(points.values()) / len(points))
    with platform.store.transaction() as conn:
        # one refusal whether the product exists or not: product ids follow job ids, and a
        # consumer must not learn which of other operators' jobs made products
        if product_id not in delivered_to(conn, consumer.id):
            raise PermissionDenied(
                f"product '{product_id}' was not delivered to {consumer.name}; feedback comes "
                "from the consumers a product was delivered to (Art. 16)",
                article="Art. 16",
                code="not_delivered",
            )
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
        conn.execute(
            feedback_points.insert().values(
                feedback_id=fid, quality=points["quality"], use_score=points["use"],
                effect=points["effect"]
            )
        )  # fmt: skip
        platform.record(
            conn,
            consumer.actor,
            "feedback.given",
            f"feedback:{fid}",
            {"product": product_id, "rating": rating, **points, "comment": comment or ""},
            "Art. 16",
        )
        return fid
