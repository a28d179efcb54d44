"""Usage reports due on the agreement's schedule (Art. 16; issue 20, item 7): the tick
reminds the operator once per period whose report it has not filed, and a filed report
stops the reminder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies.errors import InputError
from sandbox.registry.inbox import notifications_of
from sandbox.workflow import scheduler, usage
from sandbox.workflow.reporting import ended_periods
from tests.workflow_helpers import (
    cast_fixture,  # noqa: F401  (the fixture cast)
    granted,
    passed_application,
    sign,
)


def reminders(cast) -> list[str]:
    notes = notifications_of(cast.platform, cast.operator)
    return [n["body"]["period"] for n in notes if n["kind"] == "usage_report_due"]


def test_ended_periods_are_the_ones_a_report_names():
    start = datetime(2026, 2, 10, tzinfo=UTC)
    assert ended_periods(start, datetime(2026, 7, 1, tzinfo=UTC), "quarter") == [
        "2026-Q1",
        "2026-Q2",
    ]
    assert ended_periods(start, datetime(2026, 4, 30, tzinfo=UTC), "month") == [
        "2026-02",
        "2026-03",
    ]
    assert ended_periods(start, datetime(2026, 3, 31, tzinfo=UTC), "quarter") == []
    for label in ended_periods(start, datetime(2027, 1, 1, tzinfo=UTC), "quarter"):
        usage.parse_period(label)  # each is a period `sandbox report usage` takes


def test_the_tick_reminds_once_per_unfiled_period(cast, tmp_path):
    start = datetime.now(UTC) - timedelta(days=70)
    agreement_id, _ = granted(cast, start=start, report_every="month")
    now = datetime.now(UTC)
    due = ended_periods(start, now, "month")
    assert len(due) >= 2
    done = scheduler.tick(cast.platform, now=now)
    assert [r["period"] for r in done["reminded"]] == due
    assert {r["agreement"] for r in done["reminded"]} == {agreement_id}
    assert reminders(cast) == due
    assert scheduler.tick(cast.platform, now=now)["reminded"] == []  # once each
    report = usage.usage_report(cast.platform, cast.operator, "operator", due[0])
    usage.write_report(cast.platform, cast.operator, report, tmp_path / "r")
    later = now + timedelta(days=32)
    more = scheduler.tick(cast.platform, now=later)["reminded"]
    assert due[0] not in [r["period"] for r in more]  # filed, so never reminded again
    assert [r["period"] for r in more] == ended_periods(start, later, "month")[len(due) :]


def test_no_schedule_no_reminder_and_a_bad_schedule_is_refused(cast):
    granted(cast, start=datetime.now(UTC) - timedelta(days=120))
    assert scheduler.tick(cast.platform)["reminded"] == []
    with pytest.raises(InputError, match="month or quarter"):
        sign(cast, passed_application(cast), report_every="weekly")
