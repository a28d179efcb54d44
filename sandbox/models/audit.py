"""Who graded this subject? The auditor's (and the authority's) look at scoring calls.

The subject's key is normalised and hashed as at call time (:mod:`sandbox.verification.keys`);
the key itself is never stored, so only someone who already holds it can ask. An authority
sees the calls of the services made under agreements of its jurisdiction (Art. 5).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from policies.errors import PermissionDenied, SandboxError
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.core.store import principals
from sandbox.models.services import service_row
from sandbox.models.tables import score_calls
from sandbox.verification.keys import caller_value, load_secret, subject_hash
from sandbox.verification.products import require_product_authority


def who(
    platform: Platform, viewer: Principal, key: str, service: str | None = None
) -> list[dict[str, Any]]:
    """Every scoring call about the subject with this key, oldest first."""
    require_role(viewer, Role.AUDITOR, Role.AUTHORITY, action="look up scoring calls",
                 article="Art. 19")  # fmt: skip
    subject = subject_hash(load_secret(platform.home / "keys"), (caller_value("key", key),))
    with platform.store.read() as conn:
        stmt = (
            select(score_calls, principals.c.name.label("consumer"))
            .join(principals, principals.c.id == score_calls.c.consumer_id)
            .where(score_calls.c.subject_hash == subject)
        )
        if service is not None:
            service_row(conn, service)  # NotFound names it
            stmt = stmt.where(score_calls.c.service == service)
        rows = conn.execute(stmt.order_by(score_calls.c.id)).all()
        visible: dict[str, bool] = {}
        for name in {r.service for r in rows}:
            visible[name] = True
            if viewer.role is Role.AUTHORITY:
                try:
                    require_product_authority(conn, viewer, service_row(conn, name), "look up")
                except (PermissionDenied, SandboxError):
                    visible[name] = False
    return [
        {
            "ts": r.ts,
            "consumer": r.consumer,
            "service": r.service,
            "grade": r.grade,
            "refused": r.refusal,
            "consent": json.loads(r.consent_json) if r.consent_json else None,
            "ledger_seq": r.ledger_seq,
        }
        for r in rows
        if visible[r.service]
    ]
