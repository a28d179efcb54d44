"""Trainings, drills and evaluations due on the agreement's schedule (Art. 20, 21, 23;
issue 20, item 1): the tick reminds the operator of each ended period with no training or
drill on record, and the signing authority of each with no evaluation, once; a record in
the period stops the reminder; an authority covering the agreement changes a schedule,
ledgered; bad names are refused with nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from policies.errors import InputError, PermissionDenied, PolicyRefusal
from sandbox.cli.app import main
from sandbox.core import ledger
from sandbox.registry.inbox import notifications_of
from sandbox.registry.tables import agreements as agreements_t
from sandbox.registry.tables import duty_schedules
from sandbox.workflow import agreements, duties, scheduler, schedules, supervision
from sandbox.workflow.periods import ended_periods, label_of
from tests.workflow_helpers import (
    COUNTY,
    NOW,
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
    passed_application,
    sign,
)

START = datetime(2025, 1, 10, tzinfo=UTC)  # a term that began in the first quarter of 2025
UNTIL = NOW + timedelta(days=400)


def due_notes(cast, who, kind: str) -> list[tuple[str, str]]:
    """(subject, period) of each reminder of ``kind`` in ``who``'s inbox, oldest first."""
    notes = notifications_of(cast.platform, who)
    return sorted((n["subject"], n["body"]["period"]) for n in notes if n["kind"] == kind)


def reminded(done: dict) -> list[tuple[int, str, str]]:
    return [(r["agreement"], r["duty"], r["period"]) for r in done["duties_reminded"]]


def test_periods_are_the_ones_a_report_names_years_included():
    assert ended_periods(START, datetime(2027, 1, 1, tzinfo=UTC), "year") == ["2025", "2026"]
    assert ended_periods(START, datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "year") == ["2025"]
    assert ended_periods(START, datetime(2025, 7, 1, tzinfo=UTC), "quarter") == [
        "2025-Q1",
        "2025-Q2",
    ]
    assert [label_of(datetime(2025, m, 1).date(), "quarter") for m in (3, 4, 12)] == [
        "2025-Q1",
        "2025-Q2",
        "2025-Q4",
    ]


def test_the_tick_reminds_once_per_unfiled_period_and_not_before_it_ends(cast):
    agreement_id, _ = granted(cast, start=START, until=UNTIL, training_every="quarter")
    end_q1 = datetime(2025, 4, 1, tzinfo=UTC)
    assert reminded(scheduler.tick(cast.platform, now=end_q1 - timedelta(seconds=1))) == []
    assert due_notes(cast, cast.operator, "training_due") == []
    done = scheduler.tick(cast.platform, now=end_q1)
    assert reminded(done) == [(agreement_id, "training", "2025-Q1")]
    assert reminded(scheduler.tick(cast.platform, now=end_q1 + timedelta(days=5))) == []
    later = datetime(2025, 10, 2, tzinfo=UTC)
    assert reminded(scheduler.tick(cast.platform, now=later)) == [
        (agreement_id, "training", "2025-Q2"),
        (agreement_id, "training", "2025-Q3"),
    ]
    subject = f"agreement:{agreement_id}"
    assert due_notes(cast, cast.operator, "training_due") == [
        (subject, "2025-Q1"),
        (subject, "2025-Q2"),
        (subject, "2025-Q3"),
    ]
    assert due_notes(cast, cast.city, "training_due") == []  # the operator's duty, not its
    [note] = [n for n in notifications_of(cast.platform, cast.operator)
              if n["kind"] == "training_due" and n["body"]["period"] == "2025-Q1"]  # fmt: skip
    assert (
        note["body"]["every"] == "quarter"
        and "security record --kind training" in (note["body"]["how"])
    )
    sent = [e for e in entries(cast.platform, f"notification:{note['id']}")]
    assert sent[0]["actor"] == "platform" and sent[0]["article"] == "Art. 20"


def test_a_record_in_the_period_stops_the_reminder(cast):
    agreement_id, _ = granted(cast, start=START, until=UNTIL, drill_every="quarter")
    other = sign(cast, passed_application(cast), start=START, until=UNTIL)
    record = dict(topic="a leaked laptop", attendees=4)
    duties.record(cast.platform, cast.operator, "drill", held_on="2025-02-15", **record)
    duties.record(cast.platform, cast.operator, "training", held_on="2025-05-15", **record)
    duties.record(
        cast.platform, cast.operator, "drill", held_on="2025-05-16", **record, agreement_id=other
    )  # fmt: skip  (serves the other agreement only)
    duties.record(cast.platform, cast.operator, "drill", held_on="2025-08-01", **record,
                  agreement_id=agreement_id)  # fmt: skip
    done = scheduler.tick(cast.platform, now=datetime(2025, 10, 1, tzinfo=UTC))
    # Q1: a drill for all its agreements; Q2: a training, and a drill for another one; Q3:
    # a drill named for this one.
    assert reminded(done) == [(agreement_id, "drill", "2025-Q2")]
    with cast.platform.store.read() as conn:
        shown = agreements.agreement_dict(conn, cast.operator, agreement_id)["schedules"]
    assert shown["drill"]["due"][:3] == ["2025-Q1", "2025-Q2", "2025-Q3"]
    assert "2025-Q2" in shown["drill"]["missing"] and "2025-Q3" not in shown["drill"]["missing"]


def test_an_evaluation_stops_the_authoritys_reminder(cast):
    start = NOW - timedelta(days=70)
    agreement_id, _ = granted(cast, start=start, until=UNTIL, evaluate_every="month")
    supervision.evaluate(cast.platform, cast.city, agreement_id, passed=True, notes="in order")
    evaluated = label_of(datetime.now(UTC).date(), "month")
    moment = NOW + timedelta(days=40)  # the month of the evaluation has ended
    due = ended_periods(start, moment, "month")
    assert evaluated in due and len(due) >= 3
    done = scheduler.tick(cast.platform, now=moment)
    want = [(agreement_id, "evaluation", p) for p in due if p != evaluated]
    assert reminded(done) == want
    assert [p for _, p in due_notes(cast, cast.city, "evaluation_due")] == [w[2] for w in want]
    assert due_notes(cast, cast.operator, "evaluation_due") == []  # the authority's duty
    note = next(n for n in notifications_of(cast.platform, cast.city)
                if n["kind"] == "evaluation_due")  # fmt: skip
    assert f"sandbox evaluate --agreement {agreement_id}" in note["body"]["how"]


def test_only_agreements_in_force_are_reminded(cast):
    agreement_id, _ = granted(cast, start=START, until=UNTIL, training_every="month")
    agreements.suspend(cast.platform, cast.city, agreement_id, "audit")
    assert reminded(scheduler.tick(cast.platform, now=datetime(2025, 6, 1, tzinfo=UTC))) == []
    agreements.restore(cast.platform, cast.city, agreement_id, "done")
    done = scheduler.tick(cast.platform, now=datetime(2025, 3, 1, tzinfo=UTC))
    assert reminded(done) == [(agreement_id, "training", "2025-01"), (agreement_id, "training",
                                                                      "2025-02")]  # fmt: skip


def _written(cast) -> tuple[int, int, list]:
    with cast.platform.store.read() as conn:
        count = conn.execute(agreements_t.select()).all()
        rows = [tuple(r) for r in conn.execute(duty_schedules.select())]
        return ledger.count(conn), len(count), rows


def test_bad_period_names_are_refused_and_nothing_is_written(cast):
    agreement_id, _ = granted(cast, start=START, until=UNTIL, drill_every="year")
    app = passed_application(cast)
    before = _written(cast)
    for field, flag, article in [
        ("training_every", "--training-every", "Art. 20"),
        ("drill_every", "--drill-every", "Art. 21"),
        ("evaluate_every", "--evaluate-every", "Art. 23"),
    ]:
        with pytest.raises(InputError) as info:
            sign(cast, app, **{field: "fortnight"})
        assert flag in str(info.value) and info.value.article == article
        assert "month, quarter or year" in str(info.value)
    with pytest.raises(InputError, match="--drill-every 'weekly'"):
        schedules.change(cast.platform, cast.city, agreement_id, {"drill": "weekly"})
    with pytest.raises(InputError, match="no schedule for 'audit'"):
        schedules.change(cast.platform, cast.city, agreement_id, {"audit": "year"})
    with pytest.raises(InputError, match="name a schedule"):
        schedules.change(cast.platform, cast.city, agreement_id, {"drill": None})
    with pytest.raises(PermissionDenied, match="Art. 21"):  # an operator sets no schedule
        schedules.change(cast.platform, cast.operator, agreement_id, {"drill": "month"})
    with pytest.raises(PermissionDenied) as info:  # a county authority, a city agreement
        schedules.change(cast.platform, cast.county, agreement_id, {"drill": "month"})
    assert info.value.code == "outside_jurisdiction"
    assert _written(cast) == before


def test_an_authority_changes_a_schedule_from_the_moment_it_changes(cast):
    agreement_id, _ = granted(cast, start=START, until=UNTIL, training_every="year")
    moment = datetime(2025, 5, 20, tzinfo=UTC)
    shown = schedules.change(cast.platform, cast.city, agreement_id,
                             {"training": "quarter", "evaluation": "year"}, now=moment)  # fmt: skip
    assert shown["training"]["every"] == "quarter" and shown["evaluation"]["every"] == "year"
    assert shown["training"]["since"] == moment.isoformat()
    sets = [e for e in entries(cast.platform, f"agreement:{agreement_id}")
            if e["action"] == "schedule.set"]  # fmt: skip
    assert [(e["details"]["duty"], e["details"]["was"], e["details"]["every"], e["article"])
            for e in sets] == [("training", "year", "quarter", "Art. 20"),
                               ("evaluation", None, "year", "Art. 23")]  # fmt: skip
    again = schedules.change(cast.platform, cast.city, agreement_id, {"training": "quarter"})
    assert again["training"]["since"] == moment.isoformat()  # unchanged: nothing written
    assert len([e for e in entries(cast.platform, f"agreement:{agreement_id}")
                if e["action"] == "schedule.set"]) == 2  # fmt: skip
    # Q1 2025 was under the yearly rule: the quarterly one starts with the quarter of the
    # change.
    done = scheduler.tick(cast.platform, now=datetime(2025, 10, 1, tzinfo=UTC))
    assert reminded(done) == [(agreement_id, "training", "2025-Q2"),
                              (agreement_id, "training", "2025-Q3")]  # fmt: skip


def test_a_county_authority_schedules_its_own_county_and_not_after_the_end(cast):
    agreement_id, _ = granted(cast, authority=cast.county, notice_kw={"jurisdiction": COUNTY},
                              start=START, until=NOW + timedelta(days=2))  # fmt: skip
    assert schedules.change(cast.platform, cast.county, agreement_id, {"drill": "month"})["drill"]
    with pytest.raises(PermissionDenied):
        schedules.change(cast.platform, cast.other_county, agreement_id, {"drill": "year"})
    scheduler.tick(cast.platform, now=NOW + timedelta(days=3))  # the term ends: expired
    with pytest.raises(PolicyRefusal) as info:
        schedules.change(cast.platform, cast.county, agreement_id, {"drill": "year"})
    assert info.value.rule == "agreement_ended" and info.value.article == "Art. 21"


def test_the_command_line_signs_schedules_and_shows_what_is_due(cast):
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]
    app = passed_application(cast)
    terms = ["--from", "2025-01-10", "--until", UNTIL.date().isoformat(), "--rights-duties",
             "r", "--security-requirements", "s", "--exit-conditions", "e",
             "--breach-liability", "b", "--disposal", "delete"]  # fmt: skip
    signed = runner.invoke(main, [*home, "agreement", "sign", str(app), *terms,
                                  "--report-every", "quarter", "--training-every", "quarter",
                                  "--drill-every", "year", "--evaluate-every", "year",
                                  "--as", cast.tokens["city"], "--json"])  # fmt: skip
    assert signed.exit_code == 0, signed.output
    agreement_id = json.loads(signed.output)["agreement"]
    shown = runner.invoke(main, [*home, "agreement", "show", str(agreement_id), "--as",
                                 cast.tokens["operator"], "--json"])  # fmt: skip
    found = json.loads(shown.output)["schedules"]
    assert list(found) == ["usage_report", "training", "drill", "evaluation"]
    assert [found[d]["every"] for d in found] == ["quarter", "quarter", "year", "year"]
    assert found["drill"]["due"][0] == "2025" and found["drill"]["missing"][0] == "2025"
    assert found["training"]["due"][:2] == ["2025-Q1", "2025-Q2"]
    changed = runner.invoke(main, [*home, "agreement", "schedule", str(agreement_id),
                                   "--drill-every", "quarter", "--as", cast.tokens["city"]])  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert "drill every quarter: due none yet; missing none" in changed.output
    refused = runner.invoke(main, [*home, "agreement", "schedule", str(agreement_id),
                                   "--drill-every", "year", "--as", cast.tokens["operator"]])  # fmt: skip
    assert refused.exit_code == 3 and "(Art. 21)" in refused.output
