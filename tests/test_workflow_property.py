"""Random sequences of workflow actions by random principals (hypothesis).

Each example copies one prepared platform home (principals, the pums dataset,
three passed applications) and drives up to a dozen actions: sign, request,
approve, suspend, restore, fail an evaluation, rectify, terminate, report an
incident, expire, a provider's hold on its data (suspend, lift, terminate), the
platform's tick, each at a random moment and by a random principal. After every
action it asserts:

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
* the ledger verifies.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import timedelta
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
from sandbox.registry.base import parse_time
from sandbox.registry.tables import (
    agreements as agreements_t,
)
from sandbox.registry.tables import (
    applications,
    data_requests,
    evaluations,
    output_reviews,
    provider_holds,
    report_reminders,
    report_schedules,
    review_appointments,
)
from sandbox.workflow import agreements, providers, reporting, requests, scheduler, supervision
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
    "rectify",
    "terminate",
    "incident",
    "expire",
    "hold",
    "lift",
    "end_use",
    "tick",
    "probe",
    "probe",
]


@pytest.fixture
def template(tmp_path, platform, make_principal, provider, pums_dataset) -> Path:
    cast = make_cast(platform, make_principal, provider)
    apps = [passed_application(cast) for _ in range(3)]
    # Agreement 1 is in force, with a grant; applications 2 and 3 await signing.
    agreement_id = sign(
        cast, apps[0], start=NOW - timedelta(days=1), until=NOW + timedelta(days=10)
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
}  # the rest: the city authority


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
                if action == "tick" and not failed:
                    tick_is_complete(conn, NOW + timedelta(days=at))
            before, counts = after, new_counts
        verify_ledger(platform)
    finally:
        platform.close()
