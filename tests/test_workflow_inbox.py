"""Everyone told (Art. 12, 13, 14, 21, 24): each decision that concerns a principal lands
in its inbox, in the decision's own transaction, and the inbox pages newest first."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policies.errors import InputError
from sandbox.registry.inbox import inbox_of, notifications_of
from sandbox.workflow import agreements, requests, reviews, supervision
from tests.workflow_helpers import (
    NOW,
    apply,
    cast_fixture,  # noqa: F401  (the fixture cast)
    granted,
    passed_application,
    publish,
    sign,
)


def kinds(cast, who) -> list[str]:
    return [n["kind"] for n in notifications_of(cast.platform, who)]


def latest(cast, who, kind: str) -> dict:
    return [n for n in notifications_of(cast.platform, who) if n["kind"] == kind][-1]


def test_a_review_result_reaches_the_applicant_with_the_combined_scores(cast):
    aid = passed_application(cast)
    note = latest(cast, cast.operator, "application_passed")
    assert note["subject"] == f"application:{aid}"
    assert note["body"]["scores"] == {"capability": 80, "scenario": 75, "security": 90}
    assert "r1" not in str(note["body"])  # the result, not who scored what
    assert "application_passed" in kinds(cast, cast.city)  # the notice's publisher too
    failing = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, failing, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(cast.platform, reviewer, failing, capability=40, scenario=50, security=30)
    assert latest(cast, cast.operator, "application_failed")["body"]["result"] == "failed"


def test_a_refused_data_request_tells_the_operator_why(cast):
    agreement_id = sign(cast, passed_application(cast))
    rid = requests.request_data(
        cast.platform, cast.operator, agreement_id, "pums", purpose="everything"
    )
    requests.refuse_request(cast.platform, cast.provider, rid, "purpose too broad")
    note = latest(cast, cast.operator, "data_request_refused")
    assert note["body"] == {"request": rid, "dataset": "pums", "reason": "purpose too broad"}
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="sums")
    grant = requests.approve(cast.platform, cast.provider, rid)
    assert latest(cast, cast.operator, "data_request_approved")["body"]["grant"] == grant


def test_quality_tickets_reach_the_provider_and_answers_the_reporter(cast):
    granted(cast)
    ticket = requests.report_quality(cast.platform, cast.operator, "pums", "ages over 120")
    note = latest(cast, cast.provider, "quality_ticket")
    assert note["body"]["ticket"] == ticket and note["body"]["reporter"] == "operator"
    requests.answer_quality(cast.platform, cast.provider, ticket, "capped at 99 by the source")
    assert latest(cast, cast.operator, "quality_answered")["body"]["ticket"] == ticket


def test_suspension_restoration_termination_and_expiry_are_told(cast):
    first, _ = granted(cast)
    agreements.suspend(cast.platform, cast.city, first, "audit", deadline=NOW - timedelta(days=1))
    assert latest(cast, cast.operator, "agreement_suspended")["body"]["reason"] == "audit"
    agreements.restore(cast.platform, cast.city, first, "audit passed")
    assert latest(cast, cast.operator, "agreement_restored")["subject"] == f"agreement:{first}"
    agreements.suspend(cast.platform, cast.city, first, "breach", deadline=NOW - timedelta(days=1))
    agreements.terminate(cast.platform, cast.city, first, "not rectified")
    ended = latest(cast, cast.operator, "agreement_terminated")
    assert ended["body"]["reason"] == "not rectified" and ended["body"]["disposal"] == "delete"
    second, _ = granted(cast, until=NOW + timedelta(days=2))
    agreements.expire(cast.platform, None, now=NOW + timedelta(days=3))
    for who in (cast.operator, cast.city):  # the operator and the signing authority
        assert latest(cast, who, "agreement_expired")["subject"] == f"agreement:{second}"


def test_the_inbox_pages_newest_first_and_is_nobody_elses(cast):
    granted(cast)
    for n in range(5):
        requests.report_quality(cast.platform, cast.operator, "pums", f"problem {n}")
    everything = notifications_of(cast.platform, cast.provider)
    seen, before = [], None
    while True:
        page = inbox_of(cast.platform, cast.provider, limit=2, before=before)
        assert page["total"] == len(everything) and len(page["items"]) <= 2
        seen += [n["id"] for n in page["items"]]
        if page["next_before"] is None:
            break
        before = page["next_before"]
    assert seen == sorted((n["id"] for n in everything), reverse=True)
    only = inbox_of(cast.platform, cast.provider, kind="quality_ticket")
    assert only["total"] == 5 and {n["kind"] for n in only["items"]} == {"quality_ticket"}
    assert inbox_of(cast.platform, cast.rival)["items"] == []  # not its notifications
    for bad in ({"limit": 0}, {"limit": 501}, {"before": 0}):
        with pytest.raises(InputError, match="--limit|--before"):
            inbox_of(cast.platform, cast.provider, **bad)


def test_an_incident_is_told_to_the_authority_and_the_provider(cast):
    granted(cast)
    supervision.report_incident(
        cast.platform, cast.operator, "operator", supervision.IncidentKind.LOSS, "disk lost"
    )
    assert "incident" in kinds(cast, cast.city) and "incident" in kinds(cast, cast.provider)
    assert "agreement_suspended" in kinds(cast, cast.operator)
