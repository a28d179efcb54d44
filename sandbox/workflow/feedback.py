"""Feedback (Art. 16): consumers tell how a product they received served them.

A consumer gives feedback on a report product delivered to it
(:mod:`sandbox.workflow.deliveries`), or on a verification product it called and was
answered by (a row of its own in ``verify_calls``): the two ways a product reaches a
consumer (Art. 15). Feedback is on the three points of Art. 16, each a whole number from
1 to 5: ``quality`` (of the product), ``use`` (how it was used) and ``effect`` (what it
did), with a comment. Their mean, rounded, is the feedback's rating, which counts in the
operator's usage report and evaluation figures. A product deleted under its agreement's
disposal clause (a report's files, a verification product's index) takes no more
feedback.

Any other consumer is refused with one answer (``not_delivered``), whether the product
exists or not: product ids follow job ids, and a consumer must not learn which of other
operators' jobs made products, nor which verification products it never called exist
beyond the catalogue.
"""

from __future__ import annotations

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from policies.errors import Conflict, InputError, PermissionDenied
from policies.verification import ProductState
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import inserted_id, metadata
from sandbox.data.products import delivered_to
from sandbox.registry.tables import (
    feedback,
    feedback_points,
    product_dispositions,
    verification_feedback,
)

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
    """Record feedback on the three points on a product delivered to the consumer, or on a
    verification product it called; returns its id."""
    require_role(consumer, Role.CONSUMER, action="give feedback on products", article="Art. 16")
    points = _checked({"quality": quality, "use": use, "effect": effect})
    rating = round(sum(points.values()) / len(points))
    with platform.store.transaction() as conn:
        if product_id in delivered_to(conn, consumer.id):
            return _on_report(platform, conn, consumer, product_id, points, rating, comment)
        if answered(conn, consumer.id, product_id):
            return _on_verification(platform, conn, consumer, product_id, points, rating, comment)
        raise PermissionDenied(
            f"product '{product_id}' was not delivered to {consumer.name}, nor answered a "
            "call of its; feedback comes from the consumers a product reached (Art. 16)",
            article="Art. 16",
            code="not_delivered",
        )


def _on_report(
    platform: Platform,
    conn: Connection,
    consumer: Principal,
    product_id: str,
    points: dict[str, int],
    rating: int,
    comment: str,
) -> int:
    gone = conn.execute(
        select(product_dispositions.c.action).where(product_dispositions.c.product_id == product_id)
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


def _verify_table(name: str) -> Table:
    """A verification table, read by name from the store's metadata (the verification
    package imports the workflow, not the other way round)."""
    return metadata.tables[name]


def answered(conn: Connection, consumer_id: int, name: str) -> bool:
    """Did a call of this consumer's get an answer from verification product ``name``?"""
    calls = _verify_table("verify_calls")
    answered = conn.execute(
        select(calls.c.id)
        .where(
            calls.c.product == name, calls.c.consumer_id == consumer_id, calls.c.code.is_not(None)
        )
        .limit(1)
    ).first()
    return answered is not None


def _on_verification(
    platform: Platform,
    conn: Connection,
    consumer: Principal,
    name: str,
    points: dict[str, int],
    rating: int,
    comment: str,
) -> int:
    offering = _verify_table("verify_products")
    row = conn.execute(select(offering).where(offering.c.name == name)).first()
    if row is not None and row.status == ProductState.WITHDRAWN.value and row.index_path is None:
        raise Conflict(
            f"verification product '{name}' was deleted at its agreement's end (Art. 13)",
            article="Art. 13",
        )
    fid = inserted_id(
        conn.execute(
            verification_feedback.insert().values(
                product=name, consumer_id=consumer.id, rating=rating, quality=points["quality"],
                use_score=points["use"], effect=points["effect"], comment=comment or "",
                created_at=now_utc(),
            )
        )
    )  # fmt: skip
    platform.record(
        conn,
        consumer.actor,
        "feedback.given",
        f"verification:{name}",
        {"verification": name, "feedback": fid, "rating": rating, **points,
         "comment": comment or ""},
        "Art. 16",
    )  # fmt: skip
    return fid
