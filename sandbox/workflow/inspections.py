"""Inspections (Art. 22): findings, rectification tasks with a deadline, rectification, close.

Who inspects an operator (Art. 5): an authority within its reach (an operator holding an
agreement of its county; the city authority any), a provider whose data the operator
holds a grant on (an authorizing unit supervises the use of what it authorized), and an
auditor (a supervisory department) any operator. An inspection is recorded ``open``; its
tasks go to the operator's inbox. The operator reports them rectified
(:func:`rectify`), which the inspector hears of; the inspector (or the city authority)
closes it (:func:`close`), and the operator hears of that. States are
:class:`policies.workflow.InspectionState`; the state after recording lives in
``inspection_progress`` (no row: still open), each move one ledger entry with ``from``
and ``to``. :func:`inspections_of` lists what a principal may read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import InputError, NotFound, PermissionDenied
from policies.workflow import InspectionState, check_transition
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name, require_role
from sandbox.core.store import datasets, grants, inserted_id
from sandbox.registry.base import need_text, parse_time, require_authority
from sandbox.registry.inbox import notify
from sandbox.registry.jurisdiction import operator_in_scope
from sandbox.registry.tables import inspection_progress, inspections

ARTICLE = "Art. 22"


def _may_inspect(conn: Connection, inspector: Principal, operator_id: int) -> None:
    require_role(inspector, Role.AUTHORITY, Role.PROVIDER, Role.AUDITOR,
                 action="inspect operators", article=ARTICLE)  # fmt: skip
    if inspector.role is Role.AUTHORITY and not operator_in_scope(conn, inspector, operator_id):
        require_authority(inspector, "city", "inspect operators outside its county", ARTICLE)
    if inspector.role is Role.PROVIDER:
        uses = conn.execute(
            select(grants.c.id)
            .join(datasets, datasets.c.id == grants.c.dataset_id)
            .where(grants.c.operator_id == operator_id, datasets.c.provider_id == inspector.id)
        ).first()
        if uses is None:
            raise PermissionDenied(
                f"{inspector.name} authorized no data use of this operator; a provider "
                "inspects the operators that hold a grant on its data (Art. 5, 22)",
                article=ARTICLE,
                code="not_the_provider",
            )


def inspect(
    platform: Platform,
    inspector: Principal,
    operator: str,
    findings: Sequence[str],
    tasks: Sequence[str] = (),
    deadline: str | datetime | None = None,
) -> int:
    """Record an inspection's findings and rectification tasks (Art. 22); it is open."""
    require_role(inspector, Role.AUTHORITY, Role.PROVIDER, Role.AUDITOR,
                 action="inspect operators", article=ARTICLE)  # fmt: skip
    found = [f.strip() for f in findings if f and f.strip()]
    if not found:
        raise InputError("an inspection records at least one --finding (Art. 22)", article=ARTICLE)
    until = parse_time(deadline, "--deadline", end=True) if deadline else None
    todo = [t.strip() for t in tasks if t and t.strip()]
    if todo and until is None:
        raise InputError("rectification tasks need a --deadline (Art. 22)", article=ARTICLE)
    with platform.store.transaction() as conn:
        op = by_name(conn, operator, Role.OPERATOR)
        _may_inspect(conn, inspector, op.id)
        inspection = inserted_id(
            conn.execute(
                inspections.insert().values(
                    operator_id=op.id, authority_id=inspector.id, findings_json=json.dumps(found),
                    tasks_json=json.dumps(todo), deadline=until.isoformat() if until else None,
                    created_at=now_utc(),
                )
            )
        )  # fmt: skip
        details = {"operator": op.name, "findings": found, "tasks": todo,
                   "deadline": until.isoformat() if until else None,
                   "from": None, "to": InspectionState.OPEN.value}  # fmt: skip
        platform.record(conn, inspector.actor, "inspection.recorded",
                        f"inspection:{inspection}", details, ARTICLE)  # fmt: skip
        body = {"findings": found, "tasks": todo, "deadline": details["deadline"],
                "inspector": inspector.name}  # fmt: skip
        notify(platform, conn, inspector.actor, op.id, "inspection",
               f"inspection:{inspection}", body, ARTICLE)  # fmt: skip
        return inspection


def _state(conn: Connection, inspection_id: int) -> tuple[Row, InspectionState, list]:
    row = conn.execute(select(inspections).where(inspections.c.id == inspection_id)).first()
    if row is None:
        raise NotFound(f"no inspection {inspection_id}")
    progress = conn.execute(
        select(inspection_progress).where(inspection_progress.c.inspection_id == inspection_id)
    ).first()
    if progress is None:
        return row, InspectionState.OPEN, []
    return row, InspectionState(progress.status), json.loads(progress.notes_json)


def _move(platform, conn, actor: Principal, row: Row, new: InspectionState, notes: str) -> None:
    _, old, history = _state(conn, row.id)
    check_transition(f"inspection {row.id}", old, new)
    history = [*history, {"by": actor.name, "to": new.value, "notes": notes, "at": now_utc()}]
    values = {"status": new.value, "notes_json": json.dumps(history), "updated_at": now_utc()}
    if old is InspectionState.OPEN and len(history) == 1:
        conn.execute(inspection_progress.insert().values(inspection_id=row.id, **values))
    else:
        conn.execute(
            inspection_progress.update()
            .where(inspection_progress.c.inspection_id == row.id)
            .values(**values)
        )
    platform.record(conn, actor.actor, f"inspection.{new.value}", f"inspection:{row.id}",
                    {"from": old.value, "to": new.value, "notes": notes}, ARTICLE)  # fmt: skip


def rectify(platform: Platform, operator: Principal, inspection_id: int, notes: str) -> None:
    """The inspected operator reports its tasks done; the inspector is told."""
    require_role(operator, Role.OPERATOR, action="report rectifications", article=ARTICLE)
    need_text({"notes": notes}, ARTICLE)
    with platform.store.transaction() as conn:
        row, _, _ = _state(conn, inspection_id)
        if row.operator_id != operator.id:
            raise NotFound(f"no inspection {inspection_id} of yours")
        if not json.loads(row.tasks_json):
            raise InputError(f"inspection {inspection_id} set no tasks to rectify")
        _move(platform, conn, operator, row, InspectionState.RECTIFIED, notes)
        notify(platform, conn, operator.actor, row.authority_id, "inspection_rectified",
               f"inspection:{inspection_id}", {"notes": notes}, ARTICLE)  # fmt: skip


def close(platform: Platform, inspector: Principal, inspection_id: int, notes: str) -> None:
    """The inspector (or the city authority) closes the inspection; the operator is told."""
    need_text({"notes": notes}, ARTICLE)
    with platform.store.transaction() as conn:
        row, _, _ = _state(conn, inspection_id)
        if inspector.id != row.authority_id:
            require_authority(inspector, "city", "close others' inspections", ARTICLE)
        _move(platform, conn, inspector, row, InspectionState.CLOSED, notes)
        notify(platform, conn, inspector.actor, row.operator_id, "inspection_closed",
               f"inspection:{inspection_id}", {"notes": notes}, ARTICLE)  # fmt: skip


def inspections_of(platform: Platform, viewer: Principal) -> list[dict]:
    """The inspections the viewer may read: the operator's own, the inspector's own, an
    authority's within its reach, an auditor's all; oldest first."""
    require_role(viewer, Role.OPERATOR, Role.PROVIDER, Role.AUTHORITY, Role.AUDITOR,
                 action="read inspections", article=ARTICLE)  # fmt: skip
    with platform.store.read() as conn:
        out = []
        for row in conn.execute(select(inspections).order_by(inspections.c.id)).all():
            seen = {
                Role.OPERATOR: row.operator_id == viewer.id,
                Role.PROVIDER: row.authority_id == viewer.id,
                Role.AUDITOR: True,
            }.get(viewer.role)
            if seen is None:  # an authority
                seen = row.authority_id == viewer.id or operator_in_scope(
                    conn, viewer, row.operator_id
                )
            if not seen:
                continue
            _, state, history = _state(conn, row.id)
            out.append(
                {"id": row.id, "operator": by_id(conn, row.operator_id).name,
                 "inspector": by_id(conn, row.authority_id).name, "status": state.value,
                 "findings": json.loads(row.findings_json), "tasks": json.loads(row.tasks_json),
                 "deadline": row.deadline, "history": history}
            )  # fmt: skip
        return out
