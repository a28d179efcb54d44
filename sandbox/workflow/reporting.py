"""Usage reports due on the agreement's schedule (Art. 16), and their reminders.

An agreement may say at signing how often its operator reports its use
(``report_every``: ``month`` or ``quarter``, in ``report_schedules``). A report for a
period is due once the period has ended; it counts as filed when the operator itself
wrote the usage report of that period (``sandbox report usage``: a ``usage.report``
ledger entry by the operator naming the period). The platform's tick
(:mod:`sandbox.workflow.scheduler`) calls :func:`remind_due`, which sends the operator
one ``usage_report_due`` notice per agreement and period still unfiled, and records
it, so ticking again sends nothing twice. :func:`due_of` says what is due and filed.
The periods are counted by :mod:`sandbox.workflow.periods`, as those of trainings,
drills and evaluations (:mod:`sandbox.workflow.schedules`) are.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.workflow import AgreementState
from sandbox.core import ledger as ledger_mod
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import by_id
from sandbox.registry.base import parse_time
from sandbox.registry.inbox import notify
from sandbox.registry.tables import agreements, report_reminders, report_schedules
from sandbox.workflow import periods
from sandbox.workflow.periods import ended_periods

__all__ = ["check_every", "due_of", "ended_periods", "remind_due", "set_in"]

EVERY = ("month", "quarter")


def check_every(every: str | None) -> str | None:
    return periods.check_every(every, "--report-every", EVERY, "Art. 16")


def set_in(conn: Connection, agreement_id: int, every: str) -> None:
    """Record the schedule in the signing transaction."""
    conn.execute(
        report_schedules.insert().values(
            agreement_id=agreement_id, every=every, created_at=now_utc()
        )
    )


def _filed(conn: Connection, operator: str) -> set[str]:
    entries = ledger_mod.query(conn, action="usage.report", subject=f"usage:{operator}")
    return {e["details"].get("period") for e in entries if e["actor"] == operator}


def due_of(conn: Connection, row: Row, every: str, now: datetime) -> dict:
    """The periods of an agreement whose report was due by ``now``, and those filed."""
    operator = by_id(conn, row.operator_id).name
    end = min(now, parse_time(row.valid_until))
    due = ended_periods(parse_time(row.valid_from), end, every)
    filed = _filed(conn, operator)
    return {"due": due, "missing": [p for p in due if p not in filed]}


def remind_due(platform: Platform, now: datetime) -> list[tuple[int, str]]:
    """One reminder per agreement in force and period whose report is missing."""
    sent = []
    with platform.store.transaction() as conn:
        rows = conn.execute(
            select(agreements, report_schedules.c.every)
            .join(report_schedules, report_schedules.c.agreement_id == agreements.c.id)
            .where(agreements.c.status == AgreementState.ACTIVE.value)
            .order_by(agreements.c.id)
        ).all()
        for row in rows:
            reminded = set(
                conn.execute(
                    select(report_reminders.c.period).where(
                        report_reminders.c.agreement_id == row.id
                    )
                ).scalars()
            )
            for period in due_of(conn, row, row.every, now)["missing"]:
                if period in reminded:
                    continue
                conn.execute(report_reminders.insert().values(
                    agreement_id=row.id, period=period, created_at=now_utc()))  # fmt: skip
                body = {"period": period, "every": row.every,
                        "how": f"sandbox report usage --period {period}"}  # fmt: skip
                notify(platform, conn, SYSTEM, row.operator_id, "usage_report_due",
                       f"agreement:{row.id}", body, "Art. 16")  # fmt: skip
                sent.append((row.id, period))
    return sent
