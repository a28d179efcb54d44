"""Enforcement and supervision through the real job path (Art. 13, 16, 21 to 24).

Jobs run in the real JobService (real worker processes on the real pums data);
evaluations, incidents, expiry and disposal change what the one policy gate
(:func:`sandbox.data.grants.may_run`) answers, and each refusal names its rule and article.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from policies.errors import Conflict, InputError, PermissionDenied, PolicyRefusal
from policies.workflow import Disposal
from sandbox.data.grants import add_grant, grants_of, may_run
from sandbox.registry.tables import output_reviews, product_dispositions
from sandbox.registry.terms import terms_of
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import agreements, airlock, deliveries, feedback, supervision, usage
from tests.workflow_helpers import (
    NOW,
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
)

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
HELD = "SELECT educ, COUNT(*) AS n FROM pums WHERE age > 85 GROUP BY educ"


@pytest.fixture
def service(platform):
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


def refused(outcome) -> tuple[str, str]:
    assert outcome.state is JobState.REFUSED
    return outcome.reason["rule"], outcome.reason["article"]


def agreement_status(cast, agreement_id) -> str:
    with cast.platform.store.read() as conn:
        return agreements.agreement_dict(conn, cast.city, agreement_id)["status"]


def test_a_job_under_an_active_agreement_is_released(cast, service):
    agreement_id, grant_id = granted(cast)
    outcome = service.submit(cast.operator, {"sql": RELEASABLE})
    assert outcome.state is JobState.RELEASED, outcome.reason
    with cast.platform.store.read() as conn:
        assert agreements.products_under(conn, agreement_id)[0].id == outcome.product_id


def test_failed_evaluation_suspends_rectification_restores(cast, service):
    agreement_id, _ = granted(cast)
    ev = supervision.evaluate(
        cast.platform,
        cast.city,
        agreement_id,
        passed=False,
        notes="late usage reports",
        deadline=NOW + timedelta(days=30),
    )
    assert agreement_status(cast, agreement_id) == "suspended"
    assert refused(service.submit(cast.operator, {"sql": RELEASABLE})) == (
        "agreement_suspended",
        "Art. 24",
    )
    notes = supervision.notifications_of(cast.platform, cast.operator)
    [note] = [n for n in notes if n["kind"] == "evaluation_failed"]
    assert note["body"]["evaluation"] == ev
    assert "agreement_suspended" not in {n["kind"] for n in notes}  # one notice of it
    [created] = entries(cast.platform, f"evaluation:{ev}")
    assert created["details"]["figures"]["totals"]["jobs"] == 0  # drawn from the ledger
    supervision.rectify(cast.platform, cast.city, agreement_id, "reports filed")
    assert agreement_status(cast, agreement_id) == "active"
    assert service.submit(cast.operator, {"sql": RELEASABLE}).state is JobState.RELEASED
    moves = [e["details"]["to"] for e in entries(cast.platform, f"evaluation:{ev}")]
    assert moves == ["failed", "rectified"]


def test_a_failed_evaluation_needs_a_future_deadline(cast):
    agreement_id, _ = granted(cast)
    with pytest.raises(InputError) as caught:
        supervision.evaluate(cast.platform, cast.city, agreement_id, passed=False, notes="x")
    assert caught.value.article == "Art. 24"


def test_a_passed_evaluation_changes_nothing(cast):
    agreement_id, _ = granted(cast)
    supervision.evaluate(cast.platform, cast.city, agreement_id, passed=True, notes="good")
    assert agreement_status(cast, agreement_id) == "active"
    with pytest.raises(Conflict):
        supervision.rectify(cast.platform, cast.city, agreement_id, "nothing to rectify")


def test_termination_only_after_the_rectification_deadline(cast, service):
    agreement_id, _ = granted(cast)
    deadline = NOW + timedelta(days=10)
    supervision.evaluate(
        cast.platform, cast.city, agreement_id, passed=False, notes="x", deadline=deadline
    )
    with pytest.raises(PolicyRefusal) as caught:
        agreements.terminate(cast.platform, cast.city, agreement_id, "not rectified")
    assert (caught.value.rule, caught.value.article) == ("rectification_pending", "Art. 24")
    agreements.terminate(
        cast.platform, cast.city, agreement_id, "not rectified", now=deadline + timedelta(seconds=1)
    )
    assert agreement_status(cast, agreement_id) == "terminated"
    assert refused(service.submit(cast.operator, {"sql": RELEASABLE})) == (
        "agreement_terminated",
        "Art. 24",
    )
    with pytest.raises(Conflict):
        agreements.restore(cast.platform, cast.city, agreement_id, "too late")


def test_only_the_covering_authority_evaluates(cast):
    agreement_id, _ = granted(cast, authority=cast.county)
    for who in (cast.other_county, cast.operator, cast.auditor):
        with pytest.raises(PermissionDenied):
            supervision.evaluate(cast.platform, who, agreement_id, passed=True, notes="x")


def test_after_the_term_jobs_are_refused_and_products_disposed(cast, service):
    agreement_id, _ = granted(cast, disposal=Disposal.DELETE)
    product = service.submit(cast.operator, {"sql": RELEASABLE}).product_id
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    with cast.platform.store.read() as conn:
        end = terms_of(conn, [agreement_id])[agreement_id].valid_until
        with pytest.raises(PolicyRefusal) as caught:
            may_run(conn, cast.operator, ["pums"], "sql_aggregate", now=end)
    assert (caught.value.rule, caught.value.article) == ("agreement_expired", "Art. 13")
    with pytest.raises(PolicyRefusal) as early:
        agreements.expire(cast.platform, cast.city, agreement_id)
    assert early.value.rule == "agreement_in_term"
    assert agreements.expire(cast.platform, cast.city, now=end) == [agreement_id]
    assert agreement_status(cast, agreement_id) == "expired"
    assert not (cast.platform.home / "products" / product).exists()
    [disposed] = entries(cast.platform, f"product:{product}")[-1:]
    assert (disposed["action"], disposed["article"]) == ("product.delete", "Art. 13")
    assert refused(service.submit(cast.operator, {"sql": RELEASABLE})) == (
        "agreement_expired",
        "Art. 13",
    )
    with pytest.raises(Conflict):
        feedback.give(cast.platform, cast.consumer, product, quality=5, use=5, effect=5)


def test_hand_over_keeps_the_product_with_the_authority(cast, service):
    agreement_id, _ = granted(cast, disposal=Disposal.HAND_OVER)
    product = service.submit(cast.operator, {"sql": RELEASABLE}).product_id
    with cast.platform.store.read() as conn:
        end = terms_of(conn, [agreement_id])[agreement_id].valid_until
    agreements.expire(cast.platform, None, now=end)  # the platform itself
    assert (cast.platform.home / "products" / product).exists()
    with cast.platform.store.read() as conn:
        row = conn.execute(product_dispositions.select()).first()
    assert (row.action, row.custodian_id) == ("hand_over", cast.city.id)


def test_an_incident_suspends_all_of_the_operators_access_at_once(cast, service):
    first, _ = granted(cast)
    second, _ = granted(cast)
    direct = add_grant(cast.platform, cast.city, "operator", "pums", until="2099-01-01")
    result = supervision.report_incident(
        cast.platform, cast.operator, "operator", supervision.IncidentKind.LEAK, "laptop lost"
    )
    assert result["suspended"] == [first, second] and result["grants"] == [direct]
    assert {agreement_status(cast, a) for a in (first, second)} == {"suspended"}
    rule, article = refused(service.submit(cast.operator, {"sql": RELEASABLE}))
    assert article == "Art. 24" and rule in {"agreement_suspended", "grant_suspended"}
    notes = supervision.notifications_of(cast.platform, cast.city)
    [note] = [n for n in notes if n["kind"] == "incident"]
    assert note["subject"] == f"incident:{result['incident']}"
    suspended = [
        e
        for e in entries(cast.platform, f"agreement:{first}")
        if e["details"].get("to") == "suspended"
    ]
    assert suspended[0]["article"] == "Art. 21"


def test_an_operator_reports_only_its_own_incidents(cast):
    with pytest.raises(Exception) as caught:
        supervision.report_incident(
            cast.platform, cast.rival, "operator", supervision.IncidentKind.LOSS, "x"
        )
    assert caught.value.code == "not_found"
    with pytest.raises(PermissionDenied):
        supervision.report_incident(
            cast.platform, cast.consumer, "operator", supervision.IncidentKind.LOSS, "x"
        )


def test_suspension_cancels_queued_jobs(cast, service):
    agreement_id, _ = granted(cast)
    queued = service.enqueue(cast.operator, {"sql": RELEASABLE})
    assert queued.state is JobState.QUEUED
    job_id = queued.job_id
    agreements.suspend(cast.platform, cast.city, agreement_id, "audit")
    outcome = service.outcome(cast.operator, job_id)
    assert outcome.state is JobState.FAILED
    assert entries(cast.platform, f"job:{job_id}")[-1]["article"] == "Art. 24"


def test_suspension_freezes_held_outputs(cast, service):
    agreement_id, _ = granted(cast)
    held = service.submit(cast.operator, {"sql": HELD})
    assert held.state is JobState.WITHHELD, held.reason
    agreements.suspend(cast.platform, cast.city, agreement_id, "audit")
    with cast.platform.store.read() as conn:
        review = conn.execute(output_reviews.select()).first()
    assert (review.job_id, review.status) == (held.job_id, "frozen")
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    with pytest.raises(PolicyRefusal) as caught:
        airlock.vote(cast.platform, cast.r1, held.job_id, "approve", "fine")
    assert (caught.value.rule, caught.value.article) == ("output_frozen", "Art. 24")
    agreements.restore(cast.platform, cast.city, agreement_id, "audit done")
    assert airlock.show(cast.platform, cast.r1, held.job_id)["status"] == "pending"


def test_inspection_records_findings_and_tasks(cast):
    granted(cast)
    iid = supervision.inspect(
        cast.platform,
        cast.city,
        "operator",
        ["logs kept 30 days only"],
        ["keep logs 180 days"],
        NOW + timedelta(days=60),
    )
    [entry] = entries(cast.platform, f"inspection:{iid}")
    assert (entry["action"], entry["article"]) == ("inspection.recorded", "Art. 22")
    assert supervision.notifications_of(cast.platform, cast.operator)[-1]["kind"] == "inspection"
    with pytest.raises(InputError):
        supervision.inspect(cast.platform, cast.city, "operator", [])
    with pytest.raises(
        PermissionDenied
    ):  # supervisory departments inspect (auditors): not consumers
        supervision.inspect(cast.platform, cast.consumer, "operator", ["x"])


def test_feedback_and_the_usage_report(cast, service, tmp_path):
    granted(cast)
    product = service.submit(cast.operator, {"sql": RELEASABLE}).product_id
    assert refused(service.submit(cast.operator, {"sql": "SELECT pid FROM pums"}))
    with pytest.raises(PermissionDenied) as info:  # not delivered to it yet (Art. 16)
        feedback.give(cast.platform, cast.consumer, product, quality=4, use=4, effect=4)
    assert info.value.code == "not_delivered"
    deliveries.deliver(cast.platform, cast.operator, product, "consumer", "county limits")
    feedback.give(cast.platform, cast.consumer, product, quality=4, use=5, effect=3,
                  comment="useful")  # fmt: skip
    for bad in (0, 6, True):
        with pytest.raises(InputError, match="--use"):
            feedback.give(cast.platform, cast.consumer, product, quality=4, use=bad, effect=4)
    with pytest.raises(PermissionDenied):
        feedback.give(cast.platform, cast.operator, product, quality=5, use=5, effect=5)
    quarter = f"{NOW.year}-Q{(NOW.month - 1) // 3 + 1}"
    report = usage.usage_report(cast.platform, cast.operator, "operator", quarter)
    assert report["totals"]["jobs"] == 2 and report["totals"]["refusals"] == 1
    assert report["totals"]["products"] == 1 and report["totals"]["feedback"] == 1
    assert report["mean_rating"] == 4
    files = usage.write_report(cast.platform, cast.operator, report, tmp_path / "out")
    png = (tmp_path / "out" / "usage.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png
    rows = (tmp_path / "out" / "usage.csv").read_text().splitlines()
    assert rows[0].startswith("week,jobs,refusals") and len(rows) == len(report["weeks"]) + 1
    assert json.loads((tmp_path / "out" / "usage.json").read_text())["totals"] == report["totals"]
    assert set(files) == {"usage.json", "usage.csv", "usage.png"}
    with pytest.raises(Exception) as caught:
        usage.usage_report(cast.platform, cast.rival, "operator", quarter)
    assert caught.value.code == "not_found"


def test_period_parsing():
    start, end = usage.parse_period("2026-Q3")
    assert (start.month, end.month, end.year) == (7, 10, 2026)
    assert usage.parse_period("2026-Q4")[1].year == 2027
    assert usage.parse_period("2026-12")[1].month == 1
    for bad in ("2026-Q5", "26-Q1", "2026-13", ""):
        with pytest.raises(InputError):
            usage.parse_period(bad)


def test_a_direct_grant_still_works_without_an_agreement(cast, service):
    add_grant(cast.platform, cast.city, "operator", "pums", until="2099-01-01")
    with cast.platform.store.read() as conn:
        [grant] = grants_of(conn, cast.operator.id)
    assert grant.agreement_id is None and grant.review_required is False
    assert service.submit(cast.operator, {"sql": RELEASABLE}).state is JobState.RELEASED
