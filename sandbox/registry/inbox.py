"""Every principal's inbox: one notification per decision that concerns it.

The regulation wants the parties told: a refused data request and a review's result
reach the operator (Art. 12, 14), a suspension, termination or expiry the operator
(Art. 13, 24), a quality ticket the dataset's provider (Art. 14), an incident the
authorities and the providers whose data the operator used (Art. 21). Each decision
calls :func:`notify` inside its own transaction, so a notice exists exactly when the
decision does; the notification is itself a ledger entry (``notification.sent``).

:func:`inbox_of` reads one principal's inbox, newest first, a page at a time
(``limit`` and ``before``, the id the previous page ended at), optionally of one kind.
Nobody reads another's inbox. The rows live in the workflow's ``notifications`` table
(:mod:`sandbox.registry.tables`, registered with the store).
"""

from __future__ import annotations

import json

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from policies.errors import InputError
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, by_id
from sandbox.core.store import inserted_id
from sandbox.registry.tables import notifications

MAX_PAGE = 500


def notify(
    platform: Platform,
    conn: Connection,
    actor: Actor,
    recipient_id: int,
    kind: str,
    subject: str,
    body: dict,
    article: str,
) -> int:
    """A notification for a principal, in the caller's transaction; one ledger entry."""
    inserted = conn.execute(
        notifications.insert().values(
            recipient_id=recipient_id,
            kind=kind,
            subject=subject,
            body_json=json.dumps(body, default=str),
            created_at=now_utc(),
        )
    )
    nid = inserted_id(inserted)
    platform.record(
        conn,
        actor,
        "notification.sent",
        f"notification:{nid}",
        {"recipient": by_id(conn, recipient_id).name, "kind": kind, "about": subject},
        article,
    )
    return nid


def _row(r) -> dict:
    return {
        "id": r.id,
        "kind": r.kind,
        "subject": r.subject,
        "body": json.loads(r.body_json),
        "created_at": r.created_at,
    }


def inbox_of(
    platform: Platform,
    viewer: Principal,
    *,
    limit: int = 50,
    before: int | None = None,
    kind: str | None = None,
) -> dict:
    """One page of the viewer's inbox, newest first: ``items``, ``total`` (of the kind
    asked), and ``next_before`` to pass for the next page (None on the last page)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"--limit must be between 1 and {MAX_PAGE}, not {limit}")
    if before is not None and before < 1:
        raise InputError(f"--before must be a notification id (1 or more), not {before}")
    mine = notifications.c.recipient_id == viewer.id
    where = [mine] + ([notifications.c.kind == kind] if kind else [])
    stmt = select(notifications).where(*where)
    if before is not None:
        stmt = stmt.where(notifications.c.id < before)
    with platform.store.read() as conn:
        rows = conn.execute(stmt.order_by(notifications.c.id.desc()).limit(limit + 1)).all()
        total = conn.execute(select(func.count()).select_from(notifications).where(*where))
        count = int(total.scalar_one())
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "items": [_row(r) for r in page],
        "total": count,
        "next_before": page[-1].id if more and page else None,
    }


def notifications_of(platform: Platform, viewer: Principal) -> list[dict]:
    """Every notification of the viewer, oldest first (for tests and small inboxes)."""
    with platform.store.read() as conn:
        rows = conn.execute(
            select(notifications)
            .where(notifications.c.recipient_id == viewer.id)
            .order_by(notifications.c.id)
        ).all()
    return [_row(r) for r in rows]


def tell_agreement(
    platform: Platform,
    conn: Connection,
    actor: Actor,
    row,
    kind: str,
    body: dict,
    article: str,
    *,
    signer: bool = False,
) -> None:
    """The operator of the agreement ``row`` (and, with ``signer``, its signing authority)
    learns of a decision on it (Art. 13, 24)."""
    for recipient in sorted({row.operator_id} | ({row.signed_by} if signer else set())):
        notify(platform, conn, actor, recipient, kind, f"agreement:{row.id}", body, article)
