"""The operation flow of Art. 9 to 14 against a real store: happy paths and every refusal.

Notice -> application -> review -> agreement -> data request -> grant, with the
county scoping of Art. 5 and the separation of duties (nobody reviews or
approves its own organisation's work). Every test that writes ends with a
verified ledger.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from policies.errors import Conflict, InputError, PermissionDenied, PolicyRefusal
from policies.workflow import AgreementState, ApplicationState, Disposal, RequestState
from sandbox.data.grants import grants_of
from sandbox.registry.tables import applications, data_requests
from sandbox.registry.terms import terms_of
from sandbox.workflow import agreements, requests, reviews
from tests.workflow_helpers import (
    COUNTY,
    NOW,
    OTHER_COUNTY,
    apply,
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
    passed_application,
    publish,
    sign,
)


def status(platform, table, obj_id):
    with platform.store.read() as conn:
        return conn.execute(table.select().where(table.c.id == obj_id)).first().status


# --- notices ----------------------------------------------------------------------------------


def test_a_notice_is_published_with_one_ledger_entry(cast):
    nid = publish(cast)
    [entry] = entries(cast.platform, f"notice:{nid}")
    assert (entry["action"], entry["actor"], entry["article"]) == (
        "notice.published",
        "city",
        "Art. 10",
    )
    assert entry["details"]["datasets"] == ["pums"]


def test_a_county_authority_publishes_only_in_its_county(cast):
    nid = publish(cast, by=cast.county)
    assert entries(cast.platform, f"notice:{nid}")[0]["details"]["jurisdiction"] == COUNTY
    with pytest.raises(PermissionDenied) as caught:
        publish(cast, by=cast.county, jurisdiction=OTHER_COUNTY)
    assert (caught.value.code, caught.value.article) == ("outside_jurisdiction", "Art. 5")
    with pytest.raises(PermissionDenied):
        publish(cast, by=cast.county, jurisdiction="city")


def test_only_an_authority_publishes(cast):
    with pytest.raises(PermissionDenied) as caught:
        publish(cast, by=cast.operator)
    assert caught.value.article == "Art. 10"


def test_a_notice_deadline_in_the_past_is_bad_input(cast):
    with pytest.raises(InputError):
        publish(cast, deadline=NOW - timedelta(days=1))


# --- applications -----------------------------------------------------------------------------


def test_an_application_is_submitted(cast):
    aid = apply(cast, publish(cast))
    assert status(cast.platform, applications, aid) == "submitted"
    [entry] = entries(cast.platform, f"application:{aid}")
    assert (entry["actor"], entry["article"], entry["details"]["to"]) == (
        "operator",
        "Art. 11",
        "submitted",
    )


def test_a_late_application_is_refused_under_art_11(cast):
    nid = publish(cast, deadline=datetime.now(UTC) + timedelta(minutes=5))
    from sandbox.workflow.applications import apply as raw_apply

    with pytest.raises(PolicyRefusal) as caught:
        raw_apply(
            cast.platform,
            cast.operator,
            nid,
            scenario="s",
            datasets={"pums": None},
            security_measures="m",
            security_officer="o",
            incident_plan="p",
            now=NOW + timedelta(days=1),
        )
    assert (caught.value.rule, caught.value.article) == ("application_late", "Art. 11")


@pytest.mark.parametrize(
    "field,rule,article",
    [
        ("security_officer", "security_officer_required", "Art. 20"),
        ("incident_plan", "incident_plan_required", "Art. 21"),
    ],
)
def test_officer_and_incident_plan_are_required(cast, field, rule, article):
    with pytest.raises(PolicyRefusal) as caught:
        apply(cast, publish(cast), **{field: "  "})
    assert (caught.value.rule, caught.value.article) == (rule, article)


def test_an_application_stays_within_the_notice(cast):
    nid = publish(cast)
    with pytest.raises(PolicyRefusal) as caught:
        apply(cast, nid, datasets={"charities": None})
    assert (caught.value.rule, caught.value.article) == ("outside_notice_scope", "Art. 10")
    with pytest.raises(InputError):
        apply(cast, nid, datasets={"pums": ["salary"]})


def test_only_an_operator_applies(cast):
    with pytest.raises(PermissionDenied):
        apply(cast, publish(cast), operator=cast.consumer)


# --- reviews ----------------------------------------------------------------------------------


def test_two_passing_reviews_pass_the_application(cast):
    aid = passed_application(cast)
    assert status(cast.platform, applications, aid) == "passed"
    moves = [e["details"]["to"] for e in entries(cast.platform, f"application:{aid}")]
    assert moves == ["submitted", "under_review", "passed"]


def test_a_low_dimension_fails_the_application(cast):
    aid = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, aid, ["r1", "r2"])
    reviews.score(cast.platform, cast.r1, aid, capability=90, scenario=90, security=50)
    state = reviews.score(cast.platform, cast.r2, aid, capability=90, scenario=90, security=60)
    assert state is ApplicationState.FAILED


def test_one_reviewer_is_not_enough_by_default(cast):
    aid = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, aid, ["r1"])
    state = reviews.score(cast.platform, cast.r1, aid, capability=99, scenario=99, security=99)
    assert state is ApplicationState.UNDER_REVIEW
    reviews.appoint(cast.platform, cast.city, aid, ["r2"])
    state = reviews.score(cast.platform, cast.r2, aid, capability=70, scenario=70, security=70)
    assert state is ApplicationState.PASSED


def test_the_pass_rule_is_configurable_per_notice(cast):
    aid = apply(cast, publish(cast, min_score=80, min_reviewers=1))
    reviews.appoint(cast.platform, cast.city, aid, ["r1"])
    state = reviews.score(cast.platform, cast.r1, aid, capability=85, scenario=79, security=90)
    assert state is ApplicationState.FAILED


def test_a_reviewer_of_the_applicants_organisation_is_refused(cast):
    aid = apply(cast, publish(cast))
    with pytest.raises(PermissionDenied) as caught:
        reviews.appoint(cast.platform, cast.city, aid, ["r3_same_org"])
    assert (caught.value.code, caught.value.article) == ("own_organisation", "Art. 12")


def test_an_unappointed_reviewer_may_not_score(cast):
    aid = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, aid, ["r1"])
    with pytest.raises(PermissionDenied) as caught:
        reviews.score(cast.platform, cast.r2, aid, capability=70, scenario=70, security=70)
    assert caught.value.code == "not_appointed"


@pytest.mark.parametrize("bad", [-1, 101])
def test_scores_are_0_to_100(cast, bad):
    aid = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, aid, ["r1"])
    with pytest.raises(InputError):
        reviews.score(cast.platform, cast.r1, aid, capability=bad, scenario=70, security=70)


def test_a_reviewer_scores_once(cast):
    aid = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, aid, ["r1", "r2"])
    reviews.score(cast.platform, cast.r1, aid, capability=70, scenario=70, security=70)
    with pytest.raises(Conflict):
        reviews.score(cast.platform, cast.r1, aid, capability=70, scenario=70, security=70)


def test_another_county_may_not_appoint_reviewers(cast):
    aid = apply(cast, publish(cast, by=cast.county))
    with pytest.raises(PermissionDenied) as caught:
        reviews.appoint(cast.platform, cast.other_county, aid, ["r1"])
    assert caught.value.code == "outside_jurisdiction"
    reviews.appoint(cast.platform, cast.city, aid, ["r1"])  # the city covers every county


# --- agreements -------------------------------------------------------------------------------


def test_an_agreement_carries_every_field_of_art_13(cast):
    aid = passed_application(cast)
    agreement_id = sign(cast, aid, disclosure={"min_entities": 20})
    with cast.platform.store.read() as conn:
        data = agreements.agreement_dict(conn, cast.operator, agreement_id)
    assert data["status"] == "active"
    assert data["parties"] == {
        "authority": "city",
        "operator": "operator",
        "providers": [{"dataset": "pums", "provider": cast.provider.name, "signed": False,
                       "signed_at": None, "terms": None}],
    }  # fmt: skip
    assert data["scope"]["datasets"] == {"pums": ["age", "educ", "income", "pid", "sex"]}
    assert data["scope"]["disclosure"] == {"min_entities": 20}
    for field in (
        "rights_duties",
        "security_requirements",
        "exit_conditions",
        "breach_liability",
        "disposal",
        "term",
    ):
        assert data[field]
    [entry] = entries(cast.platform, f"agreement:{agreement_id}")
    assert (entry["action"], entry["article"]) == ("agreement.active", "Art. 13")


def test_no_agreement_without_a_passed_review(cast):
    aid = apply(cast, publish(cast))
    with pytest.raises(PolicyRefusal) as caught:
        sign(cast, aid)
    assert (caught.value.rule, caught.value.article) == ("review_not_passed", "Art. 13")


def test_every_agreement_field_is_required(cast):
    aid = passed_application(cast)
    with pytest.raises(InputError) as caught:
        agreements.sign(
            cast.platform,
            cast.city,
            aid,
            valid_from=NOW,
            valid_until=NOW + timedelta(days=1),
            rights_duties="r",
            security_requirements="s",
            exit_conditions="",
            breach_liability="b",
            disposal=Disposal.DELETE,
        )
    assert "exit_conditions" in str(caught.value) and caught.value.article == "Art. 13"


def test_an_application_gets_one_agreement(cast):
    aid = passed_application(cast)
    sign(cast, aid)
    with pytest.raises(Conflict):
        sign(cast, aid)


def test_a_county_authority_signs_only_in_its_county(cast):
    aid = passed_application(cast, authority=cast.county)
    with pytest.raises(PermissionDenied):
        sign(cast, aid, authority=cast.other_county)
    assert sign(cast, aid, authority=cast.county)


def test_other_operators_do_not_see_an_agreement(cast):
    agreement_id = sign(cast, passed_application(cast))
    with cast.platform.store.read() as conn, pytest.raises(Exception) as caught:
        agreements.agreement_dict(conn, cast.rival, agreement_id)
    assert caught.value.code == "not_found"


# --- data requests and grants -----------------------------------------------------------------


def test_approval_creates_a_grant_linked_to_the_agreement(cast):
    agreement_id, grant_id = granted(cast, review_required=True, disclosure={"min_entities": 15})
    with cast.platform.store.read() as conn:
        [grant] = grants_of(conn, cast.operator.id)
        req = conn.execute(data_requests.select()).first()
    assert (grant.id, grant.agreement_id, grant.review_required) == (grant_id, agreement_id, True)
    assert grant.columns == frozenset({"age", "educ", "income", "pid", "sex"})
    assert grant.job_kinds == frozenset({"sql_aggregate"})
    assert dict(grant.disclosure) == {"min_entities": 15}
    with cast.platform.store.read() as conn:
        terms = terms_of(conn, [agreement_id])[agreement_id]
    assert grant.valid_until == terms.valid_until
    assert (req.status, req.grant_id) == ("approved", grant_id)
    [add] = entries(cast.platform, f"grant:{grant_id}")
    assert (add["actor"], add["article"]) == ("stats_bureau", "Art. 14")


def test_a_request_outside_the_agreement_is_refused(cast):
    agreement_id = sign(cast, passed_application(cast))
    with pytest.raises(PolicyRefusal) as caught:
        requests.request_data(
            cast.platform, cast.operator, agreement_id, "pums", purpose="x", columns=["married"]
        )
    assert (caught.value.rule, caught.value.article) == ("outside_agreement_scope", "Art. 13")


def test_only_the_provider_or_an_authority_approves(cast, make_principal):
    from sandbox.core.principals import Role

    other_provider, _ = make_principal("other_bureau", Role.PROVIDER, org="Other Bureau")
    agreement_id = sign(cast, passed_application(cast))
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="x")
    for who in (other_provider, cast.operator, cast.r1):
        with pytest.raises(PermissionDenied):
            requests.approve(cast.platform, who, rid)
    with pytest.raises(PermissionDenied) as caught:
        requests.approve(cast.platform, cast.other_county, rid)
    assert caught.value.code == "outside_jurisdiction"
    assert status(cast.platform, data_requests, rid) == RequestState.SUBMITTED.value
    assert requests.approve(cast.platform, cast.city, rid)


def test_nobody_approves_a_request_of_its_own_organisation(cast, make_principal):
    from sandbox.core.principals import Role

    insider, _ = make_principal("opco_authority", Role.AUTHORITY, org="OpCo", jurisdiction="city")
    agreement_id = sign(cast, passed_application(cast))
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="x")
    with pytest.raises(PermissionDenied) as caught:
        requests.approve(cast.platform, insider, rid)
    assert caught.value.code == "own_organisation"


def test_a_refused_request_makes_no_grant(cast):
    agreement_id = sign(cast, passed_application(cast))
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="x")
    requests.refuse_request(cast.platform, cast.provider, rid, "purpose too broad")
    assert status(cast.platform, data_requests, rid) == "refused"
    with cast.platform.store.read() as conn:
        assert grants_of(conn, cast.operator.id) == []
    with pytest.raises(Conflict):
        requests.approve(cast.platform, cast.provider, rid)


def test_no_request_under_a_suspended_agreement(cast):
    agreement_id = sign(cast, passed_application(cast))
    agreements.suspend(cast.platform, cast.city, agreement_id, "audit")
    with pytest.raises(PolicyRefusal) as caught:
        requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="x")
    assert (caught.value.rule, caught.value.article) == ("agreement_suspended", "Art. 24")


def test_quality_tickets_are_answered_by_the_provider_only(cast):
    tid = requests.report_quality(cast.platform, cast.operator, "pums", "income has blanks")
    with pytest.raises(PermissionDenied):
        requests.answer_quality(cast.platform, cast.operator, tid, "no")
    requests.answer_quality(
        cast.platform, cast.provider, tid, "fixed in version 1", fixed_version=1
    )
    moves = [e["details"]["to"] for e in entries(cast.platform, f"quality_ticket:{tid}")]
    assert moves == ["open", "answered"]


def test_agreement_states_are_in_the_table(cast):
    agreement_id = sign(cast, passed_application(cast))
    agreements.suspend(cast.platform, cast.city, agreement_id, "audit")
    agreements.restore(cast.platform, cast.city, agreement_id, "audit done")
    with pytest.raises(Conflict):
        agreements.restore(cast.platform, cast.city, agreement_id, "again")
    moves = [
        (e["details"]["from"], e["details"]["to"])
        for e in entries(cast.platform, f"agreement:{agreement_id}")
    ]
    assert moves == [(None, "active"), ("active", "suspended"), ("suspended", "active")]
    assert json.loads(json.dumps(AgreementState.ACTIVE)) == "active"
