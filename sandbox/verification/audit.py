"""Who verified a subject (auditors, by the subject's key hashed as calls are), and a
product's call statistics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from policies.errors import InputError, NotFound
from policies.verification import (
    Definition,
    Standing,
)
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import ledger as ledger_table
from sandbox.registry.jurisdiction import scope_of
from sandbox.verification.keys import (
    caller_value,
    load_secret,
    subject_hash,
)
from sandbox.verification.products import (
    admit_definition,
    product_row,
    require_product_authority,
)
from sandbox.verification.tables import (
    verify_calls,
    verify_products,
    verify_standing,
)


def who(
    platform: Platform, viewer: Principal, keys: Mapping[str, str], product: str | None = None
) -> list[dict]:
    """Who verified the subject with these key values? (auditors, the authority)

    The subject keys of each product (``product`` or every product whose subject keys
    are all supplied) are hashed as at call time; the matching calls are checked
    against their ledger entries before they are listed.
    """
    require_role(viewer, Role.AUDITOR, Role.AUTHORITY, action="look up verifications")
    secret = load_secret(platform.home / "keys")
    with platform.store.read() as conn:
        stmt = select(verify_products)
        if product is not None:
            row = product_row(conn, product)
            if viewer.role is Role.AUTHORITY:
                require_product_authority(conn, viewer, row, "look up verifications")
            stmt = stmt.where(verify_products.c.name == product)
        scope = scope_of(conn, viewer)
        if scope is not None:  # a county authority: the products of its county only
            stmt = stmt.where(verify_products.c.name.in_(scope.verifications))
        hashes: set[str] = set()
        for row in conn.execute(stmt).all():
            definition = Definition.from_dict(json.loads(row.definition_json))
            rule = admit_definition(conn, platform, definition)
            names = [k.name for k in rule.subject_keys]
            if all(n in keys for n in names):
                values = tuple(caller_value(n, keys[n]) for n in names)
                hashes.add(subject_hash(secret, values))
        if not hashes:
            raise InputError(
                "the keys name no product's subject key"
                + (" among the products of your county" if scope is not None else "")
                + "; give e.g. pid or credit_code"
            )
        calls = select(verify_calls).where(verify_calls.c.subject_hash.in_(sorted(hashes)))
        if scope is not None:
            calls = calls.where(verify_calls.c.product.in_(scope.verifications))
        rows = conn.execute(calls.order_by(verify_calls.c.id)).all()
        entries: dict[int, dict | None] = {}
        out = []
        for r in rows:
            if r.ledger_seq not in entries:
                entries[r.ledger_seq] = _ledger_entry(conn, r.ledger_seq)
            entry = entries[r.ledger_seq]
            in_ledger = entry is not None and any(
                i.get("key_hash") == r.key_hash for i in entry["details"].get("items", [])
            )
            out.append(
                {
                    "ts": r.ts,
                    "product": r.product,
                    "consumer": by_id(conn, r.consumer_id).name,
                    "code": r.code,
                    "refused": r.refusal,
                    "consent": json.loads(r.consent_json) if r.consent_json else None,
                    "request_id": r.request_id,
                    "ledger_seq": r.ledger_seq,
                    "in_ledger": in_ledger,
                }
            )
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            viewer.actor,
            "verify.who",
            "verification:audit",
            {"subject_hashes": sorted(hashes), "found": len(out)},
            "Art. 7",
        )
    return out


def _ledger_entry(conn: Connection, seq: int) -> dict | None:
    row = conn.execute(select(ledger_table).where(ledger_table.c.seq == seq)).first()
    if row is None:
        return None
    try:
        details = json.loads(row.details)
    except ValueError:
        details = {}
    return {"seq": row.seq, "action": row.action, "details": details}


def stats(platform: Platform, viewer: Principal, product: str) -> dict:
    """Counts only: calls, codes, refusals, consumers, and who is throttled or blocked."""
    with platform.store.read() as conn:
        row = product_row(conn, product)
        if viewer.role is Role.OPERATOR and row.operator_id != viewer.id:
            raise NotFound(f"no verification product '{product}'")
        require_role(
            viewer, Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR, action="read verification stats"
        )
        if viewer.role is Role.AUTHORITY:
            require_product_authority(conn, viewer, row, "read verification stats")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        where = verify_calls.c.product == product
        codes: dict[str, int] = dict(
            conn.execute(
                select(verify_calls.c.code, func.count())
                .where(where & verify_calls.c.code.is_not(None))
                .group_by(verify_calls.c.code)
            ).all()
        )
        refused: dict[str, int] = dict(
            conn.execute(
                select(verify_calls.c.refusal, func.count())
                .where(where & verify_calls.c.refusal.is_not(None))
                .group_by(verify_calls.c.refusal)
            ).all()
        )
        per_consumer = {
            by_id(conn, cid).name: n
            for cid, n in conn.execute(
                select(verify_calls.c.consumer_id, func.count())
                .where(where)
                .group_by(verify_calls.c.consumer_id)
            ).all()
        }
        today = conn.execute(
            select(func.count()).where(where & (verify_calls.c.ts >= day))
        ).scalar_one()
        standing = [
            {"consumer": by_id(conn, s.consumer_id).name, "standing": s.status, "reason": s.reason}
            for s in conn.execute(select(verify_standing)).all()
            if s.status == Standing.BLOCKED or s.day == day
        ]
    return {
        "product": product,
        "state": row.status,
        "versions": json.loads(row.index_versions_json or "{}"),
        "subjects_answered": sum(codes.values()),
        "subjects_today": today,
        "codes": codes,
        "refused": refused,
        "consumers": per_consumer,
        "standing": standing,
    }
