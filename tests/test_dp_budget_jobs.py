"""One privacy budget per entity population and year, charged when a DP job is queued.

Through the real workflow (agreements, data requests, grants), the real JobService
and worker: two agreements of two operators (who may collude) on two datasets about
the same persons draw on one yearly total; a withheld or failed job has spent its
epsilon; a refusal spends nothing and says what remains; two submissions racing for
the last epsilon get it once. :func:`world` is shared with the CLI and API tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from policies.classes import Classification
from policies.errors import InputError, NotFound, PermissionDenied, PolicyRefusal
from policies.workflow import Vote
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.data import vault
from sandbox.guard import dp_admin, dp_budget, dp_views
from sandbox.guard.tables import dp_charges
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import airlock, applications, notices, requests, reviews
from tests.conftest import DATA, PUMS_CLASSIFICATION
from tests.workflow_helpers import Cast, make_cast, sign

YEAR = datetime.now(UTC).year  # the jobs are submitted now: this year's budget pays
COLUMNS = ["educ", "income", "sex", "pid", "age"]
COUNT = "SELECT sex, COUNT(*) AS n FROM {table} GROUP BY sex"


@dataclass
class World:
    platform: Platform
    cast: Cast
    a: int  # the operator's agreement, on pums
    b: int  # the rival's agreement, on pums2 (the same persons)


def agreement_on(cast: Cast, operator, dataset: str, **sign_kw) -> int:
    """An active agreement of ``operator`` on ``dataset`` and its approved grant."""
    platform = cast.platform
    nid = notices.publish(
        platform,
        cast.city,
        title=f"Statistics on {dataset}",
        domain="finance",
        scenario="regional aggregates",
        datasets=[dataset],
        conditions="licensed data firm",
        deadline=datetime.now(UTC) + timedelta(days=30),
    )
    aid = applications.apply(
        platform,
        operator,
        nid,
        scenario="aggregates by sex",
        datasets={dataset: COLUMNS},
        security_measures="ISO 27001",
        security_officer="Wang Li",
        incident_plan="call the authority within one hour",
        job_kinds=["sql_aggregate"],
        product_kinds=["report"],
    )
    reviews.appoint(platform, cast.city, aid, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(platform, reviewer, aid, capability=80, scenario=75, security=90)
    agreement_id = sign(cast, aid, **sign_kw)
    rid = requests.request_data(platform, operator, agreement_id, dataset, purpose="aggregates")
    requests.approve(platform, cast.provider, rid)
    return agreement_id


def world(platform: Platform, make_principal, provider, *, b_review: bool = False) -> World:
    """pums and pums2 (one CSV, one population of persons), agreement a of the operator on
    pums and b of the rival on pums2, both in the DP mode at 0.5 a job; no budget yet."""
    # sex's codes declared: the DP mode releases the declared grid of its keys
    classification = Classification.from_dict(
        {**PUMS_CLASSIFICATION, "domains": {"sex": {"codes": [0, 1]}}}
    )
    for name in ("pums", "pums2"):
        vault.register(platform, provider, name, str(DATA / "pums_1000_pid.csv"), classification)
    cast = make_cast(platform, make_principal, provider)
    a = agreement_on(cast, cast.operator, "pums")
    b = agreement_on(cast, cast.rival, "pums2", review_required=b_review)
    for agreement, dataset in ((a, "pums"), (b, "pums2")):
        dp_admin.configure(platform, cast.city, agreement, dataset, per_query=0.5, bounds={})
    return World(platform, cast, a, b)


def charges(platform: Platform) -> list[tuple[int, int, float]]:
    with platform.store.read() as conn:
        rows = conn.execute(select(dp_charges).order_by(dp_charges.c.job_id))
        return [(r.job_id, r.agreement_id, r.epsilon) for r in rows]


@pytest.fixture
def w(platform, make_principal, provider) -> World:
    return world(platform, make_principal, provider)


def test_two_agreements_on_two_datasets_of_the_persons_share_one_yearly_cap(w):
    """Collusion: the operator and its rival each hold an agreement, on two datasets about
    the same persons. Under per-agreement-and-dataset budgets they had twice the epsilon;
    now the persons' 2026 total of 1.0 caps both: 0.5 each, then both are refused."""
    platform, cast = w.platform, w.cast
    dp_admin.set_total(platform, cast.city, "person", YEAR, 1.0)
    dp_admin.set_share(platform, cast.city, w.a, YEAR, 0.5)
    with pytest.raises(PolicyRefusal) as over:  # b cannot be given what a already holds
        dp_admin.set_share(platform, cast.city, w.b, YEAR, 1.0)
    assert over.value.rule == "dp_shares_over_total" and over.value.article == "Art. 15"
    assert "never exceed the year's total" in str(over.value)
    dp_admin.set_share(platform, cast.city, w.b, YEAR, 0.5)
    service = JobService(platform, spare=False)
    try:
        first = [
            service.submit(cast.operator, {"sql": COUNT.format(table="pums")}),
            service.submit(cast.rival, {"sql": COUNT.format(table="pums2")}),
        ]
        again = [
            service.submit(cast.operator, {"sql": COUNT.format(table="pums")}),
            service.submit(cast.rival, {"sql": COUNT.format(table="pums2")}),
        ]
    finally:
        service.close()
    assert [o.state for o in first] == [JobState.RELEASED] * 2, [o.reason for o in first]
    assert first[0].report["dp"]["population"] == "person"
    assert first[0].report["dp"]["accounting"] == "pure epsilon-DP, basic composition, delta 0"
    for outcome, agreement in zip(again, (w.a, w.b), strict=True):
        assert outcome.state is JobState.REFUSED
        assert outcome.reason["rule"] == "dp_budget_exhausted"
        assert f"agreement {agreement} has 0 of its share of 0.5 left" in outcome.reason["message"]
        assert "the person population has 0 of 1 left" in outcome.reason["message"]
    with platform.store.read() as conn:
        shown = dp_views.budgets(conn, cast.auditor, YEAR)["budgets"]
        spent = dp_views.spends(conn, cast.city, YEAR)
        rivals = dp_views.spends(conn, cast.rival, YEAR)
    assert shown == [
        {
            "population": "person",
            "year": YEAR,
            "epsilon": 1.0,
            "shared": 1.0,
            "unshared": 0.0,
            "spent": 1.0,
            "remaining": 0.0,
            "accounting": dp_budget.ACCOUNTING,
        }
    ]
    assert spent["total"] == 1.0
    assert {(g["agreement"], tuple(g["jobs"])) for g in spent["agreements"]} == {
        (w.a, (first[0].job_id,)),
        (w.b, (first[1].job_id,)),
    }
    # an operator sees its own agreement's spends only
    assert [g["agreement"] for g in rivals["agreements"]] == [w.b] and rivals["total"] == 0.5


def test_a_withheld_job_has_spent_its_epsilon(platform, make_principal, provider):
    """Agreement b's outputs wait for the output review: the job is withheld, and its
    epsilon stays spent (the operator learns nothing from the budget about why)."""
    w = world(platform, make_principal, provider, b_review=True)
    dp_admin.set_total(platform, w.cast.city, "person", YEAR, 2.0)
    dp_admin.set_share(platform, w.cast.city, w.b, YEAR, 0.5)
    service = JobService(platform, spare=False)
    try:
        held = service.submit(w.cast.rival, {"sql": COUNT.format(table="pums2")})
        next_one = service.submit(w.cast.rival, {"sql": COUNT.format(table="pums2")})
    finally:
        service.close()
    assert held.state is JobState.WITHHELD, (held.reason, held.report)
    assert charges(platform) == [(held.job_id, w.b, 0.5)]
    assert next_one.state is JobState.REFUSED
    assert next_one.reason["rule"] == "dp_budget_exhausted"
    # two checkers release it later: it was paid for once, when it was queued
    airlock.appoint_checkers(platform, w.cast.city, ["r1", "r2"], agreement_id=w.b)
    airlock.vote(platform, w.cast.r1, held.job_id, Vote.APPROVE, "safe")
    final = airlock.vote(platform, w.cast.r2, held.job_id, Vote.APPROVE, "safe")
    assert final["status"] == "approved" and final["product"]
    assert charges(platform) == [(held.job_id, w.b, 0.5)]
    with platform.store.read() as conn:
        assert len(ledger.query(conn, action="dp.spend")) == 1


def test_a_refusal_spends_nothing_and_names_the_remaining_budget(w):
    platform, cast = w.platform, w.cast
    dp_admin.set_total(platform, cast.city, "person", YEAR, 2.0)
    dp_admin.set_share(platform, cast.city, w.a, YEAR, 0.75)  # one job of 0.5, then 0.25 left
    service = JobService(platform, spare=False)
    try:
        done = service.submit(cast.operator, {"sql": COUNT.format(table="pums")})
        with platform.store.read() as conn:
            before = len(ledger.query(conn, action="dp.spend"))
        refused = service.submit(cast.operator, {"sql": COUNT.format(table="pums")})
        no_share = service.submit(cast.rival, {"sql": COUNT.format(table="pums2")})
    finally:
        service.close()
    assert done.state is JobState.RELEASED
    assert refused.state is JobState.REFUSED and refused.reason["article"] == "Art. 15"
    message = refused.reason["message"]
    assert "needs epsilon 0.5" in message and "has 0.25 of its share of 0.75 left" in message
    assert "the person population has 1.5 of 2 left" in message
    # b has no share at all: refused before it runs, nothing charged either
    assert no_share.state is JobState.REFUSED
    assert f"agreement {w.b} has 0 of its share of 0 left" in no_share.reason["message"]
    assert charges(platform) == [(done.job_id, w.a, 0.5)]
    with platform.store.read() as conn:
        assert len(ledger.query(conn, action="dp.spend")) == before


def test_two_submissions_racing_for_the_last_epsilon_get_it_once(w):
    platform, cast = w.platform, w.cast
    dp_admin.set_total(platform, cast.city, "person", YEAR, 1.0)
    dp_admin.set_share(platform, cast.city, w.a, YEAR, 0.5)
    services = [JobService(platform, spare=False) for _ in range(2)]
    outcomes: list = [None, None]
    start = threading.Barrier(2)

    def submit(i: int) -> None:
        start.wait()
        outcomes[i] = services[i].enqueue(cast.operator, {"sql": COUNT.format(table="pums")})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in services:
        s.close()
    states = sorted(o.state.value for o in outcomes)
    assert states == ["queued", "refused"], [o.reason for o in outcomes]
    assert len(charges(platform)) == 1


def test_shares_never_exceed_the_total_and_bad_input_names_field_and_article(w):
    platform, cast = w.platform, w.cast
    with pytest.raises(PolicyRefusal, match="no budget for"):
        dp_admin.set_share(platform, cast.city, w.a, YEAR, 0.5)
    dp_admin.set_total(platform, cast.city, "person", YEAR, 1.0)
    for bad, field in (
        (lambda: dp_admin.set_total(platform, cast.city, "person", YEAR, -1), "epsilon"),
        (lambda: dp_admin.set_total(platform, cast.city, "people", YEAR, 1), "population"),
        (lambda: dp_admin.set_total(platform, cast.city, "person", 1850, 1), "year"),
        (lambda: dp_admin.set_share(platform, cast.city, w.a, YEAR, float("nan")), "epsilon"),
    ):
        with pytest.raises(InputError) as info:
            bad()
        assert str(info.value).startswith(f"{field}:") and "Art. 15" in str(info.value)
    with pytest.raises(NotFound, match="agreement: there is no agreement 999"):
        dp_admin.set_share(platform, cast.city, 999, YEAR, 0.5)
    with pytest.raises(PolicyRefusal, match="never raised"):
        dp_admin.set_total(platform, cast.city, "person", YEAR, 5.0)
    dp_admin.set_share(platform, cast.city, w.a, YEAR, 0.6)
    with pytest.raises(PolicyRefusal) as over:
        dp_admin.set_share(platform, cast.city, w.b, YEAR, 0.5)
    assert "more than the 0.4" in str(over.value) and over.value.rule == "dp_shares_over_total"
    with pytest.raises(PolicyRefusal, match="below the 0.6 already shared"):
        dp_admin.set_total(platform, cast.city, "person", YEAR, 0.5)
    # only authorities set; a county authority neither the total nor a city agreement's share
    with pytest.raises(PermissionDenied):
        dp_admin.set_total(platform, cast.operator, "person", YEAR, 1.0)
    with pytest.raises(PermissionDenied, match="Art. 5"):
        dp_admin.set_total(platform, cast.county, "person", YEAR, 1.0)
    with pytest.raises(PermissionDenied, match="Art. 5"):
        dp_admin.set_share(platform, cast.county, w.a, YEAR, 0.1)
    with platform.store.read() as conn:
        shares = dp_views.shares(conn, cast.auditor, YEAR)["shares"]
        entries = ledger.query(conn, action="dp.share") + ledger.query(conn, action="dp.budget.set")
    assert [(s["agreement"], s["epsilon"]) for s in shares] == [(w.a, 0.6)]  # nothing half-written
    assert len(entries) == 2


def test_organisations_are_a_population_of_their_own(w, provider):
    """A dataset whose entities are organisations draws on the organisations' budget:
    spending the persons' does not touch it, and no share of it means no DP job on it."""
    platform, cast = w.platform, w.cast
    classification = Classification.from_dict(
        {
            **PUMS_CLASSIFICATION,
            "entity_kind": "organisation",
            "domains": {"sex": {"codes": [0, 1]}},
        }
    )
    vault.register(platform, provider, "firms", str(DATA / "pums_1000_pid.csv"), classification)
    c = agreement_on(cast, cast.operator, "firms")
    dp_admin.configure(platform, cast.city, c, "firms", per_query=0.5, bounds={})
    dp_admin.set_total(platform, cast.city, "person", YEAR, 1.0)
    dp_admin.set_share(platform, cast.city, c, YEAR, 1.0)  # persons: not what firms draw on
    service = JobService(platform, spare=False)
    try:
        refused = service.submit(cast.operator, {"sql": COUNT.format(table="firms")})
        dp_admin.set_total(platform, cast.city, "organisation", YEAR, 1.0)
        dp_admin.set_share(platform, cast.city, c, YEAR, 0.5, population="organisation")
        done = service.submit(cast.operator, {"sql": COUNT.format(table="firms")})
    finally:
        service.close()
    assert refused.state is JobState.REFUSED
    assert "the organisation population has 0 of 0 left" in refused.reason["message"]
    assert done.state is JobState.RELEASED, (done.reason, done.report)
    assert done.report["dp"]["population"] == "organisation"
    with platform.store.read() as conn:
        assert dp_budget.balance(conn, c, "person", YEAR).share_spent == 0
        assert dp_budget.balance(conn, c, "organisation", YEAR).share_spent == 0.5
