"""Providers as authorizing units (Art. 4, 5, 13, 21, 24), through the real job path.

A provider lists what uses its data, suspends, lifts or ends the use of its dataset
under one agreement (only the jobs reading that use are cancelled), and is told of
its operators' incidents. Jobs run in the real JobService on the real pums data.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from policies.errors import Conflict, NotFound, PermissionDenied, PolicyRefusal
from policies.workflow import PassRule
from sandbox.core.principals import Role
from sandbox.data import vault
from sandbox.registry.inbox import notifications_of
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import agreements, notices, providers, requests, reviews, supervision
from tests.workflow_helpers import NOW, apply, entries, make_cast, sign, verify_ledger

ON_PUMS = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
ON_FARMS = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM farms GROUP BY sex"


@pytest.fixture
def cast(platform, make_principal, provider, pums_dataset, pums_csv, pums_classification):
    c = make_cast(platform, make_principal, provider)
    c.farmer, _ = make_principal("farm_bureau", Role.PROVIDER, org="Agriculture Bureau")
    vault.register(platform, c.farmer, "farms", str(pums_csv), pums_classification)
    yield c
    verify_ledger(platform)


@pytest.fixture
def service(platform):
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


def agreement_on(cast, operator, datasets: list[str]) -> int:
    """A signed agreement of ``operator`` with an approved grant on each dataset."""
    nid = notices.publish(
        cast.platform,
        cast.city,
        title="Income statistics",
        domain="finance",
        scenario="regional income aggregates",
        datasets=datasets,
        conditions="licensed firm",
        deadline=NOW + timedelta(days=30),
        pass_rule=PassRule(),
    )
    scope = {name: ["educ", "income", "sex", "pid", "age"] for name in datasets}
    aid = apply(cast, nid, operator=operator, datasets=scope)
    reviews.appoint(cast.platform, cast.city, aid, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(cast.platform, reviewer, aid, capability=80, scenario=75, security=90)
    agreement_id = sign(cast, aid)
    owners = {"pums": cast.provider, "farms": cast.farmer}
    for name in datasets:
        rid = requests.request_data(cast.platform, operator, agreement_id, name, purpose="sums")
        requests.approve(cast.platform, owners[name], rid)
    return agreement_id


def state(service, who, job_id) -> JobState:
    return service.outcome(who, job_id).state


def test_a_provider_lists_the_agreements_jobs_and_products_using_its_data(cast, service):
    agreement_id = agreement_on(cast, cast.operator, ["pums", "farms"])
    on_pums = service.submit(cast.operator, {"sql": ON_PUMS})
    on_farms = service.submit(cast.operator, {"sql": ON_FARMS})
    assert on_pums.state is JobState.RELEASED and on_farms.state is JobState.RELEASED
    with cast.platform.store.read() as conn:
        mine = providers.uses_of(conn, cast.provider)
        theirs = providers.uses_of(conn, cast.farmer)
        with pytest.raises(PermissionDenied, match="Art. 5"):
            providers.uses_of(conn, cast.operator)
    assert [a["id"] for a in mine["agreements"]] == [agreement_id]
    assert mine["agreements"][0]["datasets"] == ["pums"]
    assert [j["id"] for j in mine["jobs"]] == [on_pums.job_id]
    assert [p["id"] for p in mine["products"]] == [on_pums.product_id]
    assert [j["id"] for j in theirs["jobs"]] == [on_farms.job_id]
    assert {g["dataset"] for g in theirs["grants"]} == {"farms"}


def test_suspending_one_use_cancels_only_the_jobs_reading_it(cast, service):
    agreement_id = agreement_on(cast, cast.operator, ["pums", "farms"])
    rival_agreement = agreement_on(cast, cast.rival, ["pums"])
    on_pums = service.enqueue(cast.operator, {"sql": ON_PUMS})
    on_farms = service.enqueue(cast.operator, {"sql": ON_FARMS})
    rivals = service.enqueue(cast.rival, {"sql": ON_PUMS})
    assert {on_pums.state, on_farms.state, rivals.state} == {JobState.QUEUED}
    result = providers.suspend_use(
        cast.platform, cast.provider, agreement_id, "pums", "consent withdrawn by a resident"
    )
    assert result["cancelled_jobs"] == [on_pums.job_id]
    assert state(service, cast.operator, on_pums.job_id) is JobState.FAILED
    assert state(service, cast.operator, on_farms.job_id) is JobState.QUEUED
    assert state(service, cast.rival, rivals.job_id) is JobState.QUEUED
    assert entries(cast.platform, f"job:{on_pums.job_id}")[-1]["article"] == "Art. 24"
    refused = service.submit(cast.operator, {"sql": ON_PUMS})
    assert refused.state is JobState.REFUSED and refused.reason["article"] == "Art. 24"
    assert service.submit(cast.operator, {"sql": ON_FARMS}).state is JobState.RELEASED
    kinds = {n["kind"] for n in notifications_of(cast.platform, cast.operator)}
    assert "data_use_suspended" in kinds
    assert any(
        n["kind"] == "data_use_suspended" for n in notifications_of(cast.platform, cast.city)
    )
    with cast.platform.store.read() as conn:  # the agreement itself stays active
        assert agreements.agreement_dict(conn, cast.city, agreement_id)["status"] == "active"
        assert agreements.agreement_dict(conn, cast.city, rival_agreement)["status"] == "active"
    providers.lift_use(cast.platform, cast.provider, agreement_id, "pums", "consent restored")
    assert service.submit(cast.operator, {"sql": ON_PUMS}).state is JobState.RELEASED


def test_ending_a_use_revokes_it_for_good(cast, service):
    agreement_id = agreement_on(cast, cast.operator, ["pums"])
    ended = providers.terminate_use(
        cast.platform, cast.provider, agreement_id, "pums", "the operator broke the terms"
    )
    assert ended["status"] == "terminated" and len(ended["grants"]) == 1
    refused = service.submit(cast.operator, {"sql": ON_PUMS})
    assert refused.state is JobState.REFUSED
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="again")
    for approver in (cast.provider, cast.city):
        with pytest.raises(PolicyRefusal) as info:
            requests.approve(cast.platform, approver, rid)
        assert info.value.rule == "data_use_held" and info.value.article == "Art. 24"
    with pytest.raises(Conflict, match="has ended"):
        providers.terminate_use(cast.platform, cast.provider, agreement_id, "pums", "twice")
    with pytest.raises(Conflict, match="terminated"):
        providers.lift_use(cast.platform, cast.provider, agreement_id, "pums", "undo")
    [created] = entries(cast.platform, f"provider_hold:{ended['hold']}")
    assert created["details"]["to"] == "terminated" and created["article"] == "Art. 24"


def test_a_provider_holds_only_its_own_data_under_an_agreement_that_covers_it(cast):
    agreement_id = agreement_on(cast, cast.operator, ["pums"])
    with pytest.raises(PermissionDenied) as info:
        providers.suspend_use(cast.platform, cast.farmer, agreement_id, "pums", "not mine")
    assert info.value.code == "not_the_provider"
    with pytest.raises(NotFound, match="does not cover dataset 'farms'"):
        providers.suspend_use(cast.platform, cast.farmer, agreement_id, "farms", "not used")
    for who in (cast.city, cast.operator, cast.auditor):
        with pytest.raises(PermissionDenied):
            providers.suspend_use(cast.platform, who, agreement_id, "pums", "not a provider")
    with pytest.raises(Exception, match="reason"):
        providers.suspend_use(cast.platform, cast.provider, agreement_id, "pums", "  ")
    providers.suspend_use(cast.platform, cast.provider, agreement_id, "pums", "check")
    with pytest.raises(Conflict, match="suspended already"):
        providers.suspend_use(cast.platform, cast.provider, agreement_id, "pums", "again")


def test_the_providers_of_an_operators_data_hear_of_its_incidents(cast):
    agreement_on(cast, cast.operator, ["pums"])
    result = supervision.report_incident(
        cast.platform, cast.operator, "operator", supervision.IncidentKind.LEAK, "laptop lost"
    )
    [note] = notifications_of(cast.platform, cast.provider)
    assert note["kind"] == "incident" and note["subject"] == f"incident:{result['incident']}"
    assert notifications_of(cast.platform, cast.farmer) == []  # its data was not used


def test_suspending_an_agreement_cancels_only_its_own_jobs(cast, service):
    on_pums_agreement = agreement_on(cast, cast.operator, ["pums"])
    agreement_on(cast, cast.operator, ["farms"])
    on_pums = service.enqueue(cast.operator, {"sql": ON_PUMS})
    on_farms = service.enqueue(cast.operator, {"sql": ON_FARMS})
    agreements.suspend(cast.platform, cast.city, on_pums_agreement, "audit")
    assert state(service, cast.operator, on_pums.job_id) is JobState.FAILED
    assert state(service, cast.operator, on_farms.job_id) is JobState.QUEUED


def test_the_uses_view_shows_no_sql_results_or_other_providers_data(cast, service):
    # An operator's job reading two providers' data: each provider learns that the job
    # read its own dataset, never the SQL, the result, the column names chosen, or the
    # other provider's dataset (Art. 5 gives it the use of its data, not the operator's work).
    agreement_on(cast, cast.operator, ["pums", "farms"])
    both = service.submit(
        cast.operator,
        {"sql": "SELECT p.sex, COUNT(*) AS hidden_alias FROM pums p JOIN farms f "
                "ON p.pid = f.pid GROUP BY p.sex"},
    )  # fmt: skip
    assert both.state is JobState.RELEASED, both.reason
    alone = service.submit(cast.operator, {"sql": ON_PUMS})
    with cast.platform.store.read() as conn:
        mine = providers.uses_of(conn, cast.provider)
        theirs = providers.uses_of(conn, cast.farmer)
    seen = {j["id"]: j for j in mine["jobs"]}
    assert set(seen) == {both.job_id, alone.job_id}
    assert seen[both.job_id]["datasets"] == ["pums"]
    assert [j["datasets"] for j in theirs["jobs"]] == [["farms"]]
    for job in mine["jobs"] + theirs["jobs"]:
        assert set(job) == {"id", "kind", "state", "operator", "datasets"}
    [shared] = [p for p in theirs["products"]]
    assert shared["id"] == both.product_id and shared["datasets"] == ["farms"]
    for product in mine["products"]:
        assert set(product) == {"id", "job", "operator", "datasets", "created_at"}
    text = json.dumps([mine, theirs])
    assert "hidden_alias" not in text and "SELECT" not in text and "total" not in text


def test_another_providers_refusal_does_not_name_what_was_requested(cast):
    # A provider probing request and ticket ids it does not decide learns no dataset name
    # from the refusal: which data an operator asked for or complained about is between
    # the operator and that data's provider (the lists show a provider its own only).
    agreement_id = agreement_on(cast, cast.operator, ["pums"])
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="x")
    ticket = requests.report_quality(cast.platform, cast.operator, "pums", "ages over 120")
    probes = [
        lambda: requests.approve(cast.platform, cast.farmer, rid),
        lambda: requests.refuse_request(cast.platform, cast.farmer, rid, "no"),
        lambda: requests.answer_quality(cast.platform, cast.farmer, ticket, "fixed"),
    ]
    for probe in probes:
        with pytest.raises(PermissionDenied) as info:
            probe()
        assert info.value.code == "not_the_provider" and info.value.article == "Art. 14"
        assert "pums" not in str(info.value), str(info.value)
