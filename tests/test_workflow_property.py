"""Random sequences of workflow actions by random principals (hypothesis).

Each example copies one prepared platform home (principals, the pums dataset,
three passed applications) and drives up to a dozen actions: sign (with schedules of
reports, trainings, drills and evaluations), request, approve, suspend, restore, pass or
fail an evaluation, rectify, terminate, report an incident, expire, a provider's hold on
its data (suspend, lift, terminate), set a duty's schedule (a bad period name among
them), record a training or drill, the platform's tick, each at a random moment and by
a random principal. After every action it asserts:

* every object is in a state of its Enum, and replaying its ledger entries by
  allowed moves arrives at exactly that state;
* every object whose state changed has exactly one new ledger entry, every
  unchanged object none; a refused action changes nothing and writes nothing;
* the job gate (:func:`sandbox.data.grants.may_run`) never answers yes outside an
  active, in-term grant of an active, in-term agreement whose scope covers the
  dataset and job kind (checked against the raw rows, not through ``decide``), and
  never under an agreement whose provider holds the use of the dataset;
* after a tick at a moment, no agreement whose term ended by then is still active or
  suspended, and each active agreement on a report schedule (half of those signed) was
  reminded of every usage report due by then and not filed;
* a training, drill or evaluation reminder is sent at most once per agreement, duty and
  period, by a tick only, and only for a period that had ended by the tick's moment with
  nothing on record; after a tick every such period of an active agreement was reminded;
* the ledger verifies.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.access import JOB_KINDS
from policies.errors import SandboxError
from policies.workflow import (
    AgreementState,
    AirlockState,
    ApplicationState,
    EvaluationState,
    HoldState,
    RequestState,
    ReviewState,
    allowed,
)
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import by_name
from sandbox.core.store import grants
from sandbox.data.grants import may_run
from sandbox.registry.base import BEIJING, parse_time
from sandbox.registry.tables import (
    agreements as agreements_t,
)
from sandbox.registry.tables import (
    applications,
    countersignatures,
    data_requests,
    duty_reminders,
    duty_schedules,
    evaluations,
    notifications,
    output_reviews,
    provider_holds,
    report_reminders,
    report_schedules,
    review_appointments,
    security_records,
)
from sandbox.workflow import (
    agreements,
    countersign,
    duties,
    providers,
    reporting,
    requests,
    scheduler,
    schedules,
    supervision,
)
from sandbox.workflow.periods import ended_periods, label_of
from sandbox.workflow.usage import parse_period
from tests.workflow_helpers import NOW, make_cast, passed_application, sign, verify_ledger

STATEFUL = {
    "agreement": (agreements_t, AgreementState),
    "application": (applications, ApplicationState),
    "review": (review_appointments, ReviewState),
    "data_request": (data_requests, RequestState),
    "evaluation": (evaluations, EvaluationState),
    "output_review": (output_reviews, AirlockState),
    "provider_hold": (provider_holds, HoldState),
}
NAMES = ["city", "county", "operator", "rival", "r1", "consumer", "auditor", "stats_bureau"]
ACTIONS = [
    "sign",
    "request",
    "request",
    "approve",
    "approve",
    "approve",
    "suspend",
    "restore",
    "fail",
    "pass",
    "rectify",
    "terminate",
    "incident",
    "expire",
    "hold",
    "lift",
    "end_use",
    "tick",
    "tick",
    "schedule",
    "record",
    "countersign",
    "probe",
    "probe",
]


@pytest.fixture
def template(tmp_path, platform, make_principal, provider, pums_dataset) -> Path:
    cast = make_cast(platform, make_principal, provider)
    apps = [passed_application(cast) for _ in range(3)]
    # Agreement 1 is in force, with a grant, and months of its trainings and evaluations
    # have ended already; applications 2 and 3 await signing.
    agreement_id = sign(
        cast,
        apps[0],
        start=NOW - timedelta(days=75),
        until=NOW + timedelta(days=40),
        training_every="month",
        evaluate_every="month",
    )
    rid = requests.request_data(platform, cast.operator, agreement_id, "pums", purpose="p")
    requests.approve(platform, cast.provider, rid)
    platform.close()
    return platform.home


def snapshot(conn) -> dict[str, str]:
    out = {}
    for kind, (table, _enum) in STATEFUL.items():
        for row in conn.execute(table.select()):
            out[f"{kind}:{row.id}"] = row.status
    return out


def check_replay(conn, states: dict[str, str]) -> Counter:
    """Every object's ledger moves are allowed and end in its stored state."""
    counts: Counter = Counter()
    last: dict[str, str | None] = {}
    for entry in ledger.query(conn):
        kind = entry["subject"].split(":", 1)[0]
        if kind not in STATEFUL or "to" not in entry["details"]:
            continue
        enum = STATEFUL[kind][1]
        subject = entry["subject"]
        old, new = entry["details"]["from"], entry["details"]["to"]
        assert old == last.get(subject), f"{subject}: {old} does not follow {last.get(subject)}"
        if old is not None:
            assert enum(new) in allowed(enum(old)), f"{subject}: {old} -> {new} not allowed"
        last[subject] = new
        counts[subject] += 1
    assert last == states
    return counts


def gate_is_sound(conn, operator, now, kind) -> None:
    try:
        chosen = may_run(conn, operator, ["pums"], kind, now=now)
    except SandboxError as refusal:
        assert refusal.article in {"Art. 13", "Art. 14", "Art. 24", "Art. 21"}
        return
    grant = conn.execute(grants.select().where(grants.c.id == chosen["pums"].id)).first()
    assert grant.status == "active" and grant.operator_id == operator.id
    assert parse_time(grant.valid_from) <= now < parse_time(grant.valid_until)
    assert kind in json.loads(grant.job_kinds_json)
    if grant.agreement_id is not None:
        row = conn.execute(
            agreements_t.select().where(agreements_t.c.id == grant.agreement_id)
        ).first()
        scope = json.loads(row.scope_json)
        assert row.status == "active"
        assert parse_time(row.valid_from) <= now < parse_time(row.valid_until)
        assert "pums" in scope["datasets"] and kind in scope["job_kinds"]
        held = conn.execute(
            provider_holds.select().where(
                provider_holds.c.agreement_id == grant.agreement_id,
                provider_holds.c.status.in_(["suspended", "terminated"]),
            )
        ).first()
        assert held is None, f"grant {grant.id} usable under provider hold {held.id}"


def tick_is_complete(conn, moment) -> None:
    """After a tick at ``moment`` no agreement whose term had ended is still in force, and
    every active agreement on a report schedule was reminded of each report due by then
    and not filed."""
    for row in conn.execute(agreements_t.select()):
        if parse_time(row.valid_until) <= moment:
            assert row.status in ("expired", "terminated"), (row.id, row.status)
    scheduled = conn.execute(
        agreements_t.select().add_columns(report_schedules.c.every)
        .join(report_schedules, report_schedules.c.agreement_id == agreements_t.c.id)
        .where(agreements_t.c.status == "active")
    ).all()  # fmt: skip
    for row in scheduled:
        sent = {r.period for r in conn.execute(
            report_reminders.select().where(report_reminders.c.agreement_id == row.id))}  # fmt: skip
        assert set(reporting.due_of(conn, row, row.every, moment)["missing"]) <= sent, row.id


DUE_KINDS = tuple(f"{d.value}_due" for d in schedules.Duty)


def reminders_sent(conn) -> set[tuple[int, str, str]]:
    """(agreement, duty, period) of every duty reminder, each sent exactly once."""
    keys = [(r.agreement_id, r.duty, r.period) for r in conn.execute(duty_reminders.select())]
    notes = [
        (n.subject, n.kind, json.loads(n.body_json)["period"])
        for n in conn.execute(notifications.select().where(notifications.c.kind.in_(DUE_KINDS)))
    ]
    assert len(notes) == len(set(notes)), "a reminder sent twice"
    assert sorted(notes) == sorted((f"agreement:{a}", f"{d}_due", p) for a, d, p in keys)
    return set(keys)


def ended_and_unfiled(conn, key: tuple[int, str, str], moment) -> bool:
    """Read from the rows themselves, not through :mod:`sandbox.workflow.schedules`: the
    agreement is in force, the period is one of its schedule's (at or after the schedule's
    start) and ended by ``moment`` within the term, and no record of the duty that serves
    the agreement (an evaluation of it; a training or drill of its operator naming it or
    none) falls in it."""
    agreement_id, duty, period = key
    row = conn.execute(agreements_t.select().where(agreements_t.c.id == agreement_id)).first()
    plan = conn.execute(duty_schedules.select().where(
        duty_schedules.c.agreement_id == agreement_id, duty_schedules.c.duty == duty)).first()  # fmt: skip
    start, end = parse_period(period)
    begun = max(parse_time(plan.since), parse_time(row.valid_from))
    if row.status != "active" or not begun < end <= min(moment, parse_time(row.valid_until)):
        return False
    if label_of(start.date(), plan.every) != period:
        return False
    if duty == "evaluation":
        stamps = [parse_time(e.created_at) for e in conn.execute(
            evaluations.select().where(evaluations.c.agreement_id == agreement_id))]  # fmt: skip
        return not any(start <= t < end for t in stamps)
    days = [date.fromisoformat(r.held_on) for r in conn.execute(security_records.select())
            if r.operator_id == row.operator_id and r.kind == duty
            and r.agreement_id in (None, agreement_id)]  # fmt: skip
    return not any(start.date() <= d < end.date() for d in days)


def duties_are_reminded(conn, moment, before: set) -> None:
    """After a tick at ``moment``: each reminder it sent was of a period ended by then with
    nothing on record, of an agreement in force; no such period is left unreminded."""
    sent = reminders_sent(conn)
    for key in sent - before:
        assert ended_and_unfiled(conn, key, moment), key
    for row in conn.execute(
        agreements_t.select().add_columns(duty_schedules.c.duty, duty_schedules.c.every,
                                          duty_schedules.c.since)
        .join(duty_schedules, duty_schedules.c.agreement_id == agreements_t.c.id)
        .where(agreements_t.c.status == "active")
    ):  # fmt: skip
        begun = max(parse_time(row.since), parse_time(row.valid_from))
        for period in ended_periods(begun, min(moment, parse_time(row.valid_until)), row.every):
            key = (row.id, row.duty, period)
            assert key in sent or not ended_and_unfiled(conn, key, moment), key


step = st.tuples(
    st.sampled_from(ACTIONS),
    st.sampled_from(NAMES),
    st.integers(min_value=1, max_value=3),  # which object
    st.integers(min_value=-2, max_value=12) | st.integers(min_value=-20, max_value=60),  # moment
    st.integers(min_value=-5, max_value=5),  # term start, in days from NOW
    st.integers(min_value=1, max_value=30),  # term length in days
    st.sampled_from(JOB_KINDS),
    st.booleans() | st.just(True),  # mostly the principal whose duty the action is
)

PROPER = {
    "request": "operator",
    "approve": "stats_bureau",
    "incident": "operator",
    "hold": "stats_bureau",
    "lift": "stats_bureau",
    "end_use": "stats_bureau",
    "record": "operator",
    "countersign": "stats_bureau",
}  # the rest: the city authority


def signatures_are_sound(conn) -> None:
    """Art. 4, 13: one signature per agreement and dataset, each by the dataset's provider,
    and every data request its provider approved backed by that provider's signature."""
    from sandbox.core.store import datasets

    owner = {r.id: r.provider_id for r in conn.execute(datasets.select())}
    signed = [(r.agreement_id, r.dataset_id, r.provider_id)
              for r in conn.execute(countersignatures.select())]  # fmt: skip
    assert len({(a, d) for a, d, _ in signed}) == len(signed)
    assert all(owner[d] == p for _, d, p in signed)
    for req in conn.execute(data_requests.select().where(data_requests.c.status == "approved")):
        if req.decided_by == owner[req.dataset_id]:
            assert (req.agreement_id, req.dataset_id, req.decided_by) in signed, req.id


def latest(conn, table, n: int) -> int:
    """The id of the n-th latest row (or n itself when there is none: a NotFound case)."""
    ids = [r.id for r in conn.execute(table.select())][::-1]
    return ids[(n - 1) % len(ids)] if ids else n


def act(platform, conn_read, who, action, n, at, start, length, kind):
    moment = NOW + timedelta(days=at)
    a = latest(conn_read, agreements_t, n)
    if action == "sign":
        app_ids = [r.id for r in conn_read.execute(applications.select())]
        app = app_ids[(n - 1) % len(app_ids)]
        return sign(
            _Cast(platform),
            app,
            authority=who,
            start=NOW + timedelta(days=start),
            until=NOW + timedelta(days=start + length),
            report_every="month" if n % 2 else None,
            training_every="month" if n != 2 else None,
            drill_every="quarter" if n == 3 else None,
            evaluate_every="month" if n % 2 else "quarter",
        )
    if action == "request":
        return requests.request_data(platform, who, a, "pums", purpose="p", now=moment)
    if action == "approve":
        return requests.approve(platform, who, latest(conn_read, data_requests, n), now=moment)
    if action == "suspend":
        return agreements.suspend(platform, who, a, "random audit")
    if action == "restore":
        return agreements.restore(platform, who, a, "done")
    if action == "fail":
        return supervision.evaluate(
            platform,
            who,
            a,
            passed=False,
            notes="n",
            deadline=moment + timedelta(days=length),
            now=moment,
        )
    if action == "pass":
        return supervision.evaluate(platform, who, a, passed=True, notes="n", now=moment)
    if action == "schedule":
        every = ["month", "quarter", "year", "fortnight"][(n + length) % 4]  # one bad name
        duty = list(schedules.Duty)[n - 1].value
        return schedules.change(platform, who, a, {duty: every}, now=moment)
    if action == "record":
        held_on = (datetime.now(BEIJING) - timedelta(days=3 * length)).date().isoformat()
        kind = "training" if n % 2 else "drill"
        return duties.record(platform, who, kind, held_on=held_on, topic="t", attendees=3,
                             agreement_id=None if n == 1 else a)  # fmt: skip
    if action == "countersign":
        return countersign.countersign(platform, who, a, "pums", "county figures only")
    if action == "rectify":
        return supervision.rectify(platform, who, a, "fixed")
    if action == "terminate":
        return agreements.terminate(platform, who, a, "not rectified", now=moment)
    if action == "incident":
        return supervision.report_incident(
            platform, who, "operator", supervision.IncidentKind.LEAK, "x"
        )
    if action in HOLDS:
        return HOLDS[action](platform, who, a, "pums", "random check")
    if action == "tick":
        return scheduler.tick(platform, now=moment, by=None if who.name == "city" else who)
    if action == "expire":
        return agreements.expire(
            platform, who if who.role.value == "authority" else None, now=moment
        )
    raise AssertionError(action)


HOLDS = {
    "hold": providers.suspend_use,
    "lift": providers.lift_use,
    "end_use": providers.terminate_use,
}


class _Cast:
    """Just enough of tests.workflow_helpers.Cast for ``sign``."""

    def __init__(self, platform):
        self.platform = platform
        self.city = None


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=3, max_size=12))
def test_random_workflows_keep_every_invariant(template, tmp_path_factory, steps):
    home = tmp_path_factory.mktemp("prop") / "home"
    shutil.copytree(template, home)
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            before = snapshot(conn)
            counts = check_replay(conn, before)
            operator = by_name(conn, "operator")
        for action, name, n, at, start, length, kind, proper in steps:
            with platform.store.read() as conn:
                who = by_name(conn, PROPER.get(action, "city") if proper else name)
                if action == "probe":
                    gate_is_sound(conn, operator, NOW + timedelta(days=at, hours=n), kind)
                    continue
                seq_before = ledger.count(conn)
                sent_before = reminders_sent(conn)
                try:
                    act(platform, conn, who, action, n, at, start, length, kind)
                    failed = False
                except SandboxError:
                    failed = True
            with platform.store.read() as conn:
                after = snapshot(conn)
                new_counts = check_replay(conn, after)
                if failed:
                    assert after == before and ledger.count(conn) == seq_before
                for subject, state in after.items():
                    changed = before.get(subject) != state
                    assert new_counts[subject] - counts.get(subject, 0) == int(changed), subject
                gate_is_sound(conn, operator, NOW + timedelta(days=at), "sql_aggregate")
                signatures_are_sound(conn)
                if action == "tick" and not failed:
                    tick_is_complete(conn, NOW + timedelta(days=at))
                    duties_are_reminded(conn, NOW + timedelta(days=at), sent_before)
                else:
                    assert reminders_sent(conn) == sent_before, action
            before, counts = after, new_counts
        # The platform's tick twice (nothing is sent twice), when the month of the
        # evaluations and records made now has ended and the first agreement is in term.
        last = NOW + timedelta(days=35)
        for _ in range(2):
            with platform.store.read() as conn:
                sent_before = reminders_sent(conn)
            scheduler.tick(platform, now=last)
            with platform.store.read() as conn:
                tick_is_complete(conn, last)
                duties_are_reminded(conn, last, sent_before)
        verify_ledger(platform)
    finally:
        platform.close()
