"""An operator's security duties on record: staff training (Art. 20) and emergency drills
(Art. 21).

The operator records each session it held: its kind, the day (not in the future), the
topic, how many attended and who, optionally the agreement it serves. Each record is a
ledger entry (``security.training`` or ``security.drill``) and cannot be changed. The
operator reads its own records; an authority those of operators holding an agreement of
its jurisdiction (as for inspections, Art. 5); auditors all. When sessions fall due is
the agreement's schedule (:mod:`sandbox.workflow.schedules`): the tick reminds the
operator of each period with no record in it.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select

from policies.errors import InputError, NotFound, PermissionDenied
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name, require_role
from sandbox.core.store import inserted_id
from sandbox.registry.base import BEIJING, get, need_text
from sandbox.registry.jurisdiction import operator_in_scope
from sandbox.registry.tables import agreements, security_records


class DutyKind(StrEnum):
    TRAINING = "training"  # Art. 20
    DRILL = "drill"  # Art. 21


ARTICLE = {DutyKind.TRAINING: "Art. 20", DutyKind.DRILL: "Art. 21"}


def _day(text: str) -> str:
    try:
        day = datetime.fromisoformat(str(text).strip()).date()
    except ValueError:
        raise InputError(f"--held-on '{text}' is not an ISO date such as 2026-11-20") from None
    if day > datetime.now(BEIJING).date():
        raise InputError(f"--held-on {day} is in the future: record a session once held")
    return day.isoformat()


def record(
    platform: Platform,
    operator: Principal,
    kind: DutyKind | str,
    *,
    held_on: str,
    topic: str,
    attendees: int,
    names: list[str] | None = None,
    agreement_id: int | None = None,
) -> int:
    """Record a training or drill the operator held; returns the record's id."""
    try:
        kind = DutyKind(kind)
    except ValueError:
        raise InputError(f"--kind '{kind}': training (Art. 20) or drill (Art. 21)") from None
    article = ARTICLE[kind]
    require_role(operator, Role.OPERATOR, action=f"record a {kind.value}", article=article)
    need_text({"topic": topic}, article)
    if isinstance(attendees, bool) or not isinstance(attendees, int) or attendees < 1:
        raise InputError(f"--attendees must be a whole number of 1 or more ({article})")
    day = _day(held_on)
    people = sorted({n.strip() for n in names or [] if n and n.strip()})
    with platform.store.transaction() as conn:
        if agreement_id is not None:
            row = get(conn, agreements, agreement_id, "agreement")
            if row.operator_id != operator.id:
                raise NotFound(f"no agreement {agreement_id} of yours")
        rid = inserted_id(
            conn.execute(
                security_records.insert().values(
                    operator_id=operator.id, agreement_id=agreement_id, kind=kind.value,
                    held_on=day, topic=topic, attendees=attendees,
                    names=json.dumps(people, ensure_ascii=False), created_at=now_utc(),
                )
            )
        )  # fmt: skip
        platform.record(
            conn,
            operator.actor,
            f"security.{kind.value}",
            f"security_record:{rid}",
            {
                "held_on": day,
                "topic": topic,
                "attendees": attendees,
                "names": people,
                "agreement": agreement_id,
            },  # fmt: skip
            article,
        )
        return rid


def records_of(platform: Platform, viewer: Principal, operator: str | None = None) -> list[dict]:
    """The training and drill records the viewer may read, oldest first."""
    require_role(viewer, Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR,
                 action="read training and drill records", article="Art. 20")  # fmt: skip
    with platform.store.read() as conn:
        stmt = select(security_records).order_by(security_records.c.id)
        if viewer.role is Role.OPERATOR:
            stmt = stmt.where(security_records.c.operator_id == viewer.id)
        elif operator:
            named = by_name(conn, operator).id
            # asked of the operator, not of its records: whether it keeps any is no answer
            # to an authority out of its reach
            if viewer.role is Role.AUTHORITY and not operator_in_scope(conn, viewer, named):
                raise PermissionDenied(
                    f"{viewer.name} may not read the records of {operator}: it holds no "
                    "agreement of its jurisdiction (Art. 5)",
                    article="Art. 5",
                    code="outside_jurisdiction",
                )
            stmt = stmt.where(security_records.c.operator_id == named)
        rows = conn.execute(stmt).all()
        if viewer.role is Role.AUTHORITY:
            rows = [r for r in rows if operator_in_scope(conn, viewer, r.operator_id)]
        return [
            {"id": r.id, "operator": by_id(conn, r.operator_id).name, "kind": r.kind,
             "held_on": r.held_on, "topic": r.topic, "attendees": r.attendees,
             "names": json.loads(r.names), "agreement": r.agreement_id}
            for r in rows
        ]  # fmt: skip
