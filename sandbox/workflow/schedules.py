"""Trainings, drills and evaluations due on the agreement's schedule (Art. 20, 21, 23).

An agreement says at signing how often its operator holds staff security training
(Art. 20) and emergency drills (Art. 21), and how often the authority evaluates the
operator under it (Art. 23): ``agreement sign --training-every quarter --drill-every
year --evaluate-every year`` (month, quarter or year: the calendar of :mod:`.periods`,
the one usage reports are due on). An authority covering the agreement sets or changes
a schedule later (:func:`change`, ``agreement schedule``): one ledger entry per duty
changed, and the changed schedule's periods count from the change, so a new rule does
not reach back over periods that were under the old one.

A period is done when the operator recorded a training or drill held on a day in it
(``security record``, :mod:`.duties`) naming this agreement or none (a session for its
staff serves all its agreements; one named for another agreement serves that one), or,
for an evaluation, when one of this agreement was recorded in it (any result). The tick
(:mod:`.scheduler`) calls :func:`remind_due`: per agreement in force, duty and ended
period not done, one notice (``training_due`` and ``drill_due`` to the operator,
``evaluation_due`` to the signing authority), recorded in ``duty_reminders`` in the same
transaction, so ticking again sends nothing twice. A reminder, not an enforcement: a
missed drill suspends nothing. :func:`schedules_of` says, for ``agreement show``, what
is due and what is missing, usage reports included.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.errors import InputError
from policies.workflow import AgreementState, refuse
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.registry.base import get, now_or, parse_time, require_authority
from sandbox.registry.inbox import notify
from sandbox.registry.tables import (
    agreements,
    duty_reminders,
    duty_schedules,
    evaluations,
    report_schedules,
    security_records,
)
from sandbox.workflow import periods, reporting


class Duty(StrEnum):
    TRAINING = "training"  # Art. 20: staff security training, by the operator
    DRILL = "drill"  # Art. 21: emergency drills, by the operator
    EVALUATION = "evaluation"  # Art. 23: evaluations of the operator, by the authority


ARTICLE = {Duty.TRAINING: "Art. 20", Duty.DRILL: "Art. 21", Duty.EVALUATION: "Art. 23"}
FLAG = {Duty.TRAINING: "--training-every", Duty.DRILL: "--drill-every",
        Duty.EVALUATION: "--evaluate-every"}  # fmt: skip
ENDED = {AgreementState.EXPIRED.value, AgreementState.TERMINATED.value}


def check(everies: Mapping[str, str | None]) -> dict[Duty, str]:
    """The schedules asked for, by duty (None: none asked); an unknown duty or period is
    refused before anything is written."""
    chosen: dict[Duty, str] = {}
    for name, every in everies.items():
        try:
            duty = Duty(name)
        except ValueError:
            raise InputError(f"no schedule for '{name}': training (Art. 20), drill "
                             "(Art. 21) or evaluation (Art. 23)") from None  # fmt: skip
        if every is not None:
            chosen[duty] = str(periods.check_every(every, FLAG[duty], periods.EVERY,
                                                   ARTICLE[duty]))  # fmt: skip
    return chosen


def set_in(conn: Connection, agreement_id: int, chosen: Mapping[Duty, str], since: datetime,
           by: int) -> None:  # fmt: skip
    """Record schedules in the caller's transaction (the signing's, or a change's)."""
    stamp = now_utc()
    for duty, every in chosen.items():
        conn.execute(duty_schedules.delete().where(
            duty_schedules.c.agreement_id == agreement_id, duty_schedules.c.duty == duty.value))  # fmt: skip
        conn.execute(duty_schedules.insert().values(
            agreement_id=agreement_id, duty=duty.value, every=every, since=since.isoformat(),
            set_by=by, created_at=stamp, updated_at=stamp))  # fmt: skip


def change(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    everies: Mapping[str, str | None],
    *,
    now: datetime | None = None,
) -> dict:
    """Set or change schedules of an agreement not yet ended (an authority covering it);
    answers its schedules as :func:`schedules_of` shows them."""
    chosen = check(everies)
    if not chosen:
        raise InputError("name a schedule to set: " + ", ".join(FLAG.values()))
    moment = now_or(now)
    article = ARTICLE[next(iter(chosen))]
    with platform.store.transaction() as conn:
        row = get(conn, agreements, agreement_id, "agreement")
        require_authority(authority, row.jurisdiction, "set the schedules of agreements", article)
        if row.status in ENDED:
            raise refuse("agreement_ended", f"agreement {agreement_id} is {row.status}; its "
                         "duties ended with it", article, f"agreement:{agreement_id}")  # fmt: skip
        current = _schedules(conn, agreement_id)
        changed = {d: e for d, e in chosen.items() if current.get(d) != e}
        set_in(conn, agreement_id, changed, moment, authority.id)
        for duty, every in changed.items():
            was = current.get(duty)
            platform.record(conn, authority.actor, "schedule.set", f"agreement:{agreement_id}",
                            {"duty": duty.value, "every": every, "was": was,
                             "since": moment.isoformat()}, ARTICLE[duty])  # fmt: skip
        return schedules_of(conn, row, moment)


def _schedules(conn: Connection, agreement_id: int) -> dict[Duty, str]:
    rows = conn.execute(
        select(duty_schedules).where(duty_schedules.c.agreement_id == agreement_id)
    ).all()
    return {Duty(r.duty): r.every for r in rows}


def _done(conn: Connection, row: Row, duty: Duty, every: str) -> set[str]:
    """The periods holding a record of the duty that serves this agreement."""
    if duty is Duty.EVALUATION:
        stamps = conn.execute(
            select(evaluations.c.created_at).where(evaluations.c.agreement_id == row.id)
        ).scalars()
        return {periods.label_of(parse_time(s).date(), every) for s in stamps}
    held = conn.execute(
        select(security_records.c.held_on).where(
            security_records.c.operator_id == row.operator_id,
            security_records.c.kind == duty.value,
            security_records.c.agreement_id.is_(None) | (security_records.c.agreement_id == row.id),
        )
    ).scalars()
    return {periods.label_of(date.fromisoformat(h), every) for h in held}


def due_of(conn: Connection, row: Row, duty: Duty, every: str, since: str,
           now: datetime) -> dict:  # fmt: skip
    """The periods of the duty that ended by ``now`` within the term, from the one holding
    ``since``, and those of them with nothing on record (``missing``)."""
    start = max(parse_time(since), parse_time(row.valid_from))
    due = periods.ended_periods(start, min(now, parse_time(row.valid_until)), every)
    done = _done(conn, row, duty, every)
    return {
        "every": every,
        "since": since,
        "due": due,
        "missing": [p for p in due if p not in done],
    }


def schedules_of(conn: Connection, row: Row, now: datetime) -> dict[str, dict]:
    """Every schedule of the agreement (usage reports, trainings, drills, evaluations) with
    what fell due by ``now`` and what is missing."""
    out: dict[str, dict] = {}
    report = conn.execute(
        select(report_schedules.c.every).where(report_schedules.c.agreement_id == row.id)
    ).scalar()
    if report:
        out["usage_report"] = {"every": report, "since": row.valid_from,
                               **reporting.due_of(conn, row, report, now)}  # fmt: skip
    rows = conn.execute(select(duty_schedules).where(duty_schedules.c.agreement_id == row.id)).all()
    for r in sorted(rows, key=lambda r: list(Duty).index(Duty(r.duty))):
        out[r.duty] = due_of(conn, row, Duty(r.duty), r.every, r.since, now)
    return out


def _how(duty: Duty, agreement_id: int) -> str:
    if duty is Duty.EVALUATION:
        return f"sandbox evaluate --agreement {agreement_id} --result pass|fail --notes ..."
    return (f"sandbox security record --kind {duty.value} --held-on DAY --topic ... "
            f"--attendees N --agreement {agreement_id}")  # fmt: skip


def remind_due(platform: Platform, now: datetime) -> list[tuple[int, str, str]]:
    """One reminder per agreement in force, duty and ended period with nothing on record:
    (agreement, duty, period) of each sent now."""
    sent = []
    with platform.store.transaction() as conn:
        rows = conn.execute(
            select(agreements, duty_schedules.c.duty, duty_schedules.c.every,
                   duty_schedules.c.since)
            .join(duty_schedules, duty_schedules.c.agreement_id == agreements.c.id)
            .where(agreements.c.status == AgreementState.ACTIVE.value)
            .order_by(agreements.c.id, duty_schedules.c.duty)
        ).all()  # fmt: skip
        for row in rows:
            duty = Duty(row.duty)
            reminded = set(conn.execute(select(duty_reminders.c.period).where(
                duty_reminders.c.agreement_id == row.id,
                duty_reminders.c.duty == duty.value)).scalars())  # fmt: skip
            for period in due_of(conn, row, duty, row.every, row.since, now)["missing"]:
                if period not in reminded:
                    _remind(platform, conn, row, duty, period)
                    sent.append((row.id, duty.value, period))
    return sent


def _remind(platform: Platform, conn: Connection, row: Row, duty: Duty, period: str) -> None:
    """The reminder of one period, to whoever owes the duty, recorded so it goes once."""
    recipient = row.signed_by if duty is Duty.EVALUATION else row.operator_id
    conn.execute(duty_reminders.insert().values(
        agreement_id=row.id, duty=duty.value, period=period, recipient_id=recipient,
        created_at=now_utc()))  # fmt: skip
    body = {"duty": duty.value, "period": period, "every": row.every, "how": _how(duty, row.id)}
    notify(platform, conn, SYSTEM, recipient, f"{duty.value}_due", f"agreement:{row.id}", body,
           ARTICLE[duty])  # fmt: skip
