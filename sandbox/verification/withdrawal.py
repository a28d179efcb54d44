"""Why an offering consumers call was withdrawn (Art. 13, 21, 24): its own agreement, and
the event that stopped it.

A verification product or a scoring service is made under one agreement. A call asks
the job gate (:func:`sandbox.data.grants.may_run`) of all of the operator's grants, and
when none is usable the gate's refusal judges the grant that ends last, which may belong
to another agreement of the same operator: an incident suspending agreement 3 was once
recorded as "agreement 1 was terminated" (issue 20, item 10). So the withdrawal asks the
gate again of the grants made under the offering's own agreement only
(:func:`cause_of`), and looks in the ledger for the event that stopped that agreement
or one of its grants: the last move of the agreement to suspended, terminated or
expired, or of a grant to suspended or revoked (a provider's hold, Art. 24), with who
made it and why. An incident's suspension names the incident too (:data:`incidents`
rows list the agreements each one suspended).

:func:`withdraw` then moves the offering to withdrawn, with one ledger entry naming the
rule, the agreement and the event, and tells the operator in its inbox, in one
transaction. The consumer's own refusal is the gate's, unchanged: it learns that the
call is refused, not the operator's affairs.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.access import decide
from policies.errors import PolicyRefusal
from policies.verification import ProductState
from sandbox.core import ledger as ledger_mod
from sandbox.core.ledger import SYSTEM
from sandbox.core.platform import Platform
from sandbox.data.grants import grants_of
from sandbox.registry.inbox import notify
from sandbox.registry.tables import incidents
from sandbox.registry.terms import terms_of
from sandbox.verification.products import WITHDRAWING, Lifecycle

# the ledger actions that stop an agreement's or a grant's data use
STOPPING = {
    "agreement": ("agreement.suspended", "agreement.terminated", "agreement.expired"),
    "grant": ("grant.suspended", "grant.revoked"),
}


@dataclass(frozen=True)
class Cause:
    """The refusal of the offering's own agreement, and the event behind it (None when
    the ledger holds none, e.g. a grant whose term ran out)."""

    refusal: PolicyRefusal
    agreement: int
    event: dict[str, Any] | None

    def details(self) -> dict[str, Any]:
        """The withdrawal's ledger details: rule, reason, agreement and event."""
        reason = self.refusal.message
        if self.event is not None:
            reason += f" ({self.event['action']} by {self.event['by']}: {self.event['reason']})"
        return {"rule": self.refusal.rule, "reason": reason, "agreement": self.agreement,
                "event": self.event}  # fmt: skip


def cause_of(
    conn: Connection,
    operator_id: int,
    agreement_id: int,
    tables: Sequence[str],
    kind: str,
    columns: Mapping[str, Collection[str]] | None = None,
) -> Cause | None:
    """Why the offering's own agreement no longer allows its calls, or None when it
    still does (or refuses for a reason that withdraws nothing, such as a column)."""
    own = [g for g in grants_of(conn, operator_id) if g.agreement_id == agreement_id]
    try:
        decide(own, operator_id, tables, kind, datetime.now(UTC),
               terms_of(conn, [agreement_id]), columns)  # fmt: skip
    except PolicyRefusal as refusal:
        if refusal.rule not in WITHDRAWING:
            return None
        grant_ids = [g.id for g in own if g.dataset in tables]
        return Cause(
            refusal, agreement_id, stopping_event(conn, refusal.rule, agreement_id, grant_ids)
        )
    return None


def stopping_event(
    conn: Connection, rule: str, agreement_id: int, grant_ids: Sequence[int]
) -> dict[str, Any] | None:
    """The last ledger entry that stopped the agreement (an ``agreement_*`` rule) or one
    of its grants on the offering's tables (a ``grant_*`` rule)."""
    if rule.startswith("agreement_"):
        subjects = [f"agreement:{agreement_id}"]
        actions = STOPPING["agreement"]
    else:
        subjects = [f"grant:{g}" for g in grant_ids]
        actions = STOPPING["grant"]
    found = [
        entry
        for subject in subjects
        for entry in ledger_mod.query(conn, subject=subject)
        if entry["action"] in actions
    ]
    if not found:
        return None
    last = max(found, key=lambda e: e["seq"])
    reason = str(last["details"].get("reason") or "")
    event = {"seq": last["seq"], "action": last["action"], "subject": last["subject"],
             "by": last["actor"], "reason": reason, "at": last["ts"]}  # fmt: skip
    incident = _incident_behind(conn, agreement_id, reason)
    if incident is not None:
        event["incident"] = incident
    return event


def _incident_behind(conn: Connection, agreement_id: int, reason: str) -> int | None:
    """The incident whose report suspended the agreement with exactly this reason (the
    one :func:`sandbox.workflow.supervision.report_incident` writes), if any."""
    for row in conn.execute(select(incidents).order_by(incidents.c.id.desc())):
        suspended = json.loads(row.suspended_json).get("agreements", [])
        if agreement_id in suspended and reason == f"incident {row.id} ({row.kind})":
            return int(row.id)
    return None


def withdraw(platform: Platform, lifecycle: Lifecycle, name: str, cause: Cause) -> bool:
    """Withdraw a published offering for ``cause``: one ledger entry naming the rule, the
    agreement and the event, and the operator told; False if it was not published."""
    with platform.store.transaction() as conn:
        row = lifecycle.row(conn, name)
        if row.status != ProductState.PUBLISHED:
            return False
        details = cause.details()
        article = cause.refusal.article or "Art. 24"
        lifecycle.move(platform, conn, name, ProductState.WITHDRAWN, SYSTEM, details, article)
        body = {"product": name, **details}
        notify(platform, conn, SYSTEM, row.operator_id,
               f"{lifecycle.noun.replace(' ', '_')}_withdrawn",
               f"{lifecycle.target}:{name}", body, article)  # fmt: skip
    return True
