"""Expiry and the disposal clause (Art. 13): what an agreement's end does to what it made.

An agreement expires at the end of its term (:func:`expire`: an authority asks, or the
platform's tick, :mod:`sandbox.workflow.scheduler`); an expired or terminated
agreement's disposal clause runs once (:func:`dispose_in`): every product made under
it is deleted (its folder removed) or handed over to the signing authority, each
recorded in ``product_dispositions`` and the ledger. A deleted product stays in the
store's ``products`` table, for lineage and the ledger's sake, but it is gone: no list,
read, backup or check of the home looks for it (:func:`deleted_products`).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import PermissionDenied
from policies.workflow import AgreementState, Disposal, covers, refuse
from sandbox.core.ledger import SYSTEM, Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id
from sandbox.core.store import grants, jobs, products
from sandbox.registry.base import get, move, now_or, parse_time, require_authority
from sandbox.registry.inbox import tell_agreement
from sandbox.registry.tables import agreements, product_dispositions


def deleted_products(conn: Connection) -> set[str]:
    """The ids of the products deleted by a disposal clause."""
    return set(
        conn.execute(
            select(product_dispositions.c.product_id).where(
                product_dispositions.c.action == Disposal.DELETE.value
            )
        ).scalars()
    )


def deletion_of(conn: Connection, product_id: str) -> Row | None:
    """The disposal that deleted this product, if one did."""
    return conn.execute(
        select(product_dispositions).where(
            product_dispositions.c.product_id == product_id,
            product_dispositions.c.action == Disposal.DELETE.value,
        )
    ).first()


def products_under(conn: Connection, agreement_id: int) -> list[Row]:
    """Products whose job read a dataset through a grant of this agreement."""
    mine = {
        r.id for r in conn.execute(select(grants.c.id).where(grants.c.agreement_id == agreement_id))
    }
    if not mine:
        return []
    found = []
    rows = conn.execute(
        select(products, jobs.c.inputs_json)
        .join(jobs, jobs.c.id == products.c.job_id)
        .order_by(products.c.id)
    ).all()
    for row in rows:
        inputs = json.loads(row.inputs_json or "[]")
        if any(item.get("grant") in mine for item in inputs):
            found.append(row)
    return found


def dispose_in(platform: Platform, conn: Connection, actor: Actor, row: Row) -> list[str]:
    """Carry out the disposal clause: delete or hand over each derived product (Art. 13)."""
    disposal = Disposal(row.disposal)
    done = []
    for product in products_under(conn, row.id):
        if conn.execute(
            select(product_dispositions.c.product_id).where(
                product_dispositions.c.product_id == product.id
            )
        ).first():
            continue
        custodian = None if disposal is Disposal.DELETE else row.signed_by
        conn.execute(
            product_dispositions.insert().values(
                product_id=product.id,
                agreement_id=row.id,
                action=disposal.value,
                custodian_id=custodian,
                created_at=now_utc(),
            )
        )
        if disposal is Disposal.DELETE:
            shutil.rmtree(platform.home / product.path, ignore_errors=True)
        platform.record(
            conn,
            actor,
            f"product.{disposal.value}",
            f"product:{product.id}",
            {"agreement": row.id, "custodian": by_id(conn, custodian).name if custodian else None},
            "Art. 13",
        )
        done.append(product.id)
    return done


def expire(
    platform: Platform,
    actor: Principal | None = None,
    agreement_id: int | None = None,
    now: datetime | None = None,
) -> list[int]:
    """Expire agreements whose term has ended and run their disposal clause."""
    return list(expire_due(platform, actor, agreement_id, now))


def expire_due(
    platform: Platform,
    actor: Principal | None = None,
    agreement_id: int | None = None,
    now: datetime | None = None,
) -> dict[int, list[str]]:
    """:func:`expire`, answering each expired agreement's disposed products. ``actor``
    None is the platform itself (the tick); an authority expires within its reach."""
    moment = now_or(now)
    who = actor.actor if actor is not None else SYSTEM
    if actor is not None and actor.role is not Role.AUTHORITY:
        raise PermissionDenied(
            f"{actor.name} is not an authority; only an authority (or the "
            "platform) expires agreements (Art. 13)",
            article="Art. 13",
        )
    expired: dict[int, list[str]] = {}
    with platform.store.transaction() as conn:
        stmt = select(agreements).where(
            agreements.c.status.in_((AgreementState.ACTIVE.value, AgreementState.SUSPENDED.value))
        )
        if agreement_id is not None:
            _check_one(conn, actor, agreement_id, moment)
            stmt = stmt.where(agreements.c.id == agreement_id)
        for row in conn.execute(stmt.order_by(agreements.c.id)).all():
            if moment < parse_time(row.valid_until):
                continue
            if actor is not None and not covers(actor.jurisdiction, row.jurisdiction):
                continue
            move(platform, conn, agreements, "agreement", row.id, AgreementState.EXPIRED, who,
                 {"term_end": row.valid_until})  # fmt: skip
            done = dispose_in(platform, conn, who, row)
            body = {"term_end": row.valid_until, "disposal": row.disposal, "products": done}
            tell_agreement(platform, conn, who, row, "agreement_expired", body, "Art. 13",
                           signer=True)  # fmt: skip
            expired[row.id] = done
    return expired


def _check_one(conn: Connection, actor: Principal | None, agreement_id: int, moment) -> None:
    row = get(conn, agreements, agreement_id, "agreement")
    if actor is not None:
        require_authority(actor, row.jurisdiction, "expire agreements", "Art. 13")
    if moment < parse_time(row.valid_until):
        raise refuse(
            "agreement_in_term",
            f"agreement {agreement_id} runs until {row.valid_until}",
            "Art. 13",
            f"agreement:{agreement_id}",
        )
