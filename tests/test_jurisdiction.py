"""County scope on reads and on grants (issue 19, item 2), through the real API.

The probe found that a county authority (370811), which may not approve a city data
request, could still grant a city dataset directly (and the operator's job was
released), set PSI terms on a city grant, read the reviews of city applications,
every product, every job, the whole ledger, and ask ``verify who`` about any
resident. Each finding is an attack here by the county authority that succeeded
before and is refused or filtered now; the city authority (and the auditor) still
see and do everything, and the county authority still reaches what is its own.

The world: the city signed an agreement with ``operator`` and the county one with
``rival``, each with a grant on ``pums`` and a released job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from policies.access import GrantStatus
from policies.errors import PermissionDenied
from sandbox.core.principals import Role
from sandbox.data.grants import add_grant, grants_of, set_grant_status
from sandbox.demo.verification import IDENTITY
from sandbox.guard import dp_views
from sandbox.registry.jurisdiction import CITY, grant_place, job_place
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.verification import products as verify_products
from sandbox.verification import service as verification
from sandbox.workflow import agreements, airlock, requests, reviews
from tests.api_server import ApiServer, check_envelope
from tests.verify_helpers import CONSENT, make_world
from tests.workflow_helpers import (
    COUNTY,
    Cast,
    apply,
    granted,
    make_cast,
    publish,
    register_pums_with_counties,
    sign,
)

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
UNTIL = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()


@dataclass
class World:
    cast: Cast
    server: ApiServer
    city_agreement: int
    city_application: int
    city_grant: int
    city_job: int
    city_product: str
    county_agreement: int
    county_application: int
    county_grant: int
    county_job: int
    county_product: str

    def get(self, who: str, path: str, **params) -> httpx.Response:
        response = httpx.get(
            self.server.url + path, headers=self.auth(who), params=params, timeout=30
        )
        check_envelope(response)
        return response

    def post(self, who: str, path: str, body: dict) -> httpx.Response:
        response = httpx.post(self.server.url + path, headers=self.auth(who), json=body, timeout=30)
        check_envelope(response)
        return response

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cast.tokens[who]}"}


def _county_agreement(cast: Cast) -> tuple[int, int, int]:
    """The county authority's own flow: notice, application by ``rival``, review,
    agreement, data request approved by the provider; (application, agreement, grant)."""
    notice = publish(cast, by=cast.county)
    application = apply(cast, notice, operator=cast.rival)
    reviews.appoint(cast.platform, cast.county, application, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(cast.platform, reviewer, application, capability=80, scenario=75, security=90)
    agreement = sign(cast, application, authority=cast.county)
    request = requests.request_data(
        cast.platform, cast.rival, agreement, "pums", purpose="income by sex"
    )
    return application, agreement, requests.approve(cast.platform, cast.provider, request)


def _released(platform, operator) -> tuple[int, str]:
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(operator, {"sql": RELEASABLE})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome.reason
    return outcome.job_id, outcome.product_id


@pytest.fixture
def world(platform, make_principal, provider, pums_dataset):
    cast = make_cast(platform, make_principal, provider)
    register_pums_with_counties(cast)  # a county agreement reads only its county's rows
    city_agreement, city_grant = granted(cast)
    with platform.store.read() as conn:
        city_application = agreements.agreement_dict(conn, cast.city, city_agreement)["application"]
    county_application, county_agreement, county_grant = _county_agreement(cast)
    city_job, city_product = _released(platform, cast.operator)
    county_job, county_product = _released(platform, cast.rival)
    with ApiServer(platform.home) as server:
        yield World(
            cast,
            server,
            city_agreement,
            city_application,
            city_grant,
            city_job,
            city_product,
            county_agreement,
            county_application,
            county_grant,
            county_job,
            county_product,
        )


def _refused_art5(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "outside_jurisdiction", error
    assert error["article"] == "Art. 5" and "(Art. 5)" in error["message"], error


# --- the rule itself ----------------------------------------------------------------------------


def test_each_object_takes_the_place_it_was_made_under(world):
    platform = world.cast.platform
    with platform.store.read() as conn:
        assert grant_place(conn, world.city_grant) == CITY
        assert grant_place(conn, world.county_grant) == COUNTY
        assert job_place(conn, world.city_job) == CITY
        assert job_place(conn, world.county_job) == COUNTY
    direct = add_grant(platform, world.cast.city, "rival", "pums", until=UNTIL)
    with platform.store.read() as conn:
        assert grant_place(conn, direct) == CITY  # a direct grant is the city's


# --- writes: direct grants and PSI terms are the city's ------------------------------------------


def test_a_county_authority_may_not_grant_a_city_dataset_directly(world, make_principal):
    """A direct grant is the city authority's, and made on the host only: over the API
    nobody grants directly (Art. 13, 14), and on the host a county authority is refused."""
    newco, _ = make_principal("newco", Role.OPERATOR, org="NewCo")
    body = {"operator": "newco", "dataset": "pums", "until": UNTIL}
    for who in ("county", "city"):
        response = world.post(who, "/v1/grants", body)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "direct_grant_host_only"
    platform = world.cast.platform
    with pytest.raises(PermissionDenied, match="only the city authority may grant"):
        add_grant(platform, world.cast.county, "newco", "pums", until=UNTIL)
    with platform.store.read() as conn:
        assert grants_of(conn, newco.id) == []
    service = JobService(platform, spare=False)
    try:  # the probe's operator has no grant, so its job is refused
        refused = service.submit(newco, {"sql": RELEASABLE})
        assert refused.state is JobState.REFUSED
        # the city authority still grants directly on the host, and the job then runs
        add_grant(platform, world.cast.city, "newco", "pums", until=UNTIL)
        assert service.submit(newco, {"sql": RELEASABLE}).state is JobState.RELEASED
    finally:
        service.close()


def test_a_county_authority_suspends_only_grants_of_its_county(world):
    platform, cast = world.cast.platform, world.cast
    with pytest.raises(PermissionDenied) as info:
        set_grant_status(platform, cast.county, world.city_grant, GrantStatus.SUSPENDED, "probe")
    assert info.value.article == "Art. 5"
    direct = add_grant(platform, cast.city, "rival", "pums", until=UNTIL)
    with pytest.raises(PermissionDenied, match="Art. 5"):
        set_grant_status(platform, cast.county, direct, GrantStatus.SUSPENDED, "probe")
    # its own county's grant, and the city on any grant
    set_grant_status(platform, cast.county, world.county_grant, GrantStatus.SUSPENDED, "check")
    set_grant_status(platform, cast.city, direct, GrantStatus.SUSPENDED, "check")


def test_a_county_authority_may_not_set_psi_terms_on_a_city_grant(world):
    cast = world.cast
    direct = add_grant(
        cast.platform, cast.city, "operator", "pums", until=UNTIL, job_kinds=["psi_match"]
    )
    body = {"dataset": "pums", "column": "pid", "grant": direct, "min_items": 10}
    _refused_art5(world.post("county", "/v1/psi/terms", body))
    assert world.get("city", "/v1/ledger", action="psi.terms").json() == []
    assert world.post("city", "/v1/psi/terms", body).status_code == 201


def test_a_county_authority_may_not_stop_a_city_operator_by_an_incident(world):
    """An incident suspends all of an operator's data use: a county authority reports
    one only for an operator holding an agreement of its county."""
    body = {"operator": "operator", "kind": "leak", "description": "probe"}
    _refused_art5(world.post("county", "/v1/incidents", body))
    with world.cast.platform.store.read() as conn:
        city = agreements.agreement_dict(conn, world.cast.city, world.city_agreement)
    assert city["status"] == "active"
    # its own county's operator, and the city authority for any operator
    assert world.post("county", "/v1/incidents", {**body, "operator": "rival"}).is_success
    assert world.post("city", "/v1/incidents", body).is_success


# --- reads: reviews, grants, jobs, products ------------------------------------------------------


def test_a_county_authority_reads_only_the_reviews_of_its_county(world):
    _refused_art5(world.get("county", f"/v1/applications/{world.city_application}/reviews"))
    city = world.get("city", f"/v1/applications/{world.city_application}/reviews")
    assert city.status_code == 200 and len(city.json()) == 2
    own = world.get("county", f"/v1/applications/{world.county_application}/reviews")
    assert own.status_code == 200 and len(own.json()) == 2
    assert world.get("auditor", f"/v1/applications/{world.city_application}/reviews").is_success


def test_a_county_authority_lists_only_the_grants_of_its_county(world):
    county = world.get("county", "/v1/grants").json()
    assert [g["id"] for g in county] == [world.county_grant]
    for who in ("city", "auditor"):
        ids = {g["id"] for g in world.get(who, "/v1/grants").json()}
        assert {world.city_grant, world.county_grant} <= ids


def test_a_county_authority_reads_only_the_jobs_of_its_county(world):
    county = world.get("county", "/v1/jobs").json()
    assert [j["id"] for j in county] == [world.county_job]
    _refused_art5(world.get("county", f"/v1/jobs/{world.city_job}"))
    own = world.get("county", f"/v1/jobs/{world.county_job}")
    assert own.status_code == 200 and own.json()["state"] == "released"
    for who in ("city", "auditor"):
        ids = [j["id"] for j in world.get(who, "/v1/jobs").json()]
        assert {world.city_job, world.county_job} <= set(ids)
        assert world.get(who, f"/v1/jobs/{world.city_job}").status_code == 200


def test_a_county_authority_reads_only_the_products_of_its_county(world):
    county = world.get("county", "/v1/products").json()
    assert [p["id"] for p in county] == [world.county_product]
    city_product = f"/v1/products/{world.city_product}"
    for path in (city_product, city_product + "/files/output.csv", city_product + "/zip"):
        _refused_art5(world.get("county", path))
    assert world.get("county", f"/v1/products/{world.county_product}").status_code == 200
    for who in ("city", "auditor"):
        ids = {p["id"] for p in world.get(who, "/v1/products").json()}
        assert {world.city_product, world.county_product} <= ids
        assert world.get(who, city_product + "/files/output.csv").status_code == 200


def test_a_county_authority_reads_no_output_review_or_budget_of_the_city(world):
    cast = world.cast
    with pytest.raises(PermissionDenied, match="Art. 5"):
        airlock.show(cast.platform, cast.county, world.city_job)
    with cast.platform.store.read() as conn, pytest.raises(PermissionDenied, match="Art. 5"):
        dp_views.show(conn, cast.county, world.city_agreement)
    assert airlock.show(cast.platform, cast.county, world.county_job)["job"] == world.county_job
    assert airlock.show(cast.platform, cast.city, world.city_job)["job"] == world.city_job
    with cast.platform.store.read() as conn:
        assert dp_views.show(conn, cast.city, world.city_agreement) == []
        assert dp_views.show(conn, cast.county, world.county_agreement) == []


# --- reads: the ledger -------------------------------------------------------------------------


def test_a_county_authority_reads_only_the_ledger_of_its_county(world):
    city_subjects = {
        f"job:{world.city_job}",
        f"product:{world.city_product}",
        f"grant:{world.city_grant}",
        f"agreement:{world.city_agreement}",
        f"application:{world.city_application}",
    }
    entries = world.get("county", "/v1/ledger", limit=10_000).json()
    subjects = {e["subject"] for e in entries}
    assert not subjects & city_subjects
    assert {
        f"job:{world.county_job}",
        f"product:{world.county_product}",
        f"grant:{world.county_grant}",
        f"agreement:{world.county_agreement}",
        f"application:{world.county_application}",
    } <= subjects
    others = [e for e in entries if e["actor"] != "county"]  # its own acts are its to read
    assert not any(e["subject"].startswith(("principal:", "dataset:")) for e in others)
    # asking for a city subject by name shows nothing; the limit counts what is shown
    assert world.get("county", "/v1/ledger", subject=f"job:{world.city_job}").json() == []
    first = world.get("county", "/v1/ledger", limit=3).json()
    assert [e["seq"] for e in first] == [e["seq"] for e in entries[:3]]
    # the city authority and the auditor read every entry
    for who in ("city", "auditor"):
        every = {e["subject"] for e in world.get(who, "/v1/ledger", limit=10_000).json()}
        assert city_subjects <= every and subjects <= every


def test_the_host_cli_reads_the_ledger_with_the_same_scope(world):
    from sandbox.cli.local import LocalBackend

    platform = world.cast.platform
    county = LocalBackend(platform, world.cast.tokens["county"]).ledger(limit=10_000)
    api = world.get("county", "/v1/ledger", limit=10_000).json()
    assert [e["seq"] for e in county] == [e["seq"] for e in api]
    city = LocalBackend(platform, world.cast.tokens["city"]).ledger(limit=10_000)
    assert len(city) > len(county)


# --- reads: verify who -------------------------------------------------------------------------


@pytest.fixture
def verified(platform, make_principal, tmp_path):
    """A city verification product, one consumer call about a resident, a county authority."""
    w = make_world(platform, make_principal, tmp_path / "data")
    _county, token = make_principal("county", Role.AUTHORITY, org="Rencheng", jurisdiction=COUNTY)
    w.tokens["county"] = token
    verify_products.define(platform, w.operator, IDENTITY)
    verify_products.approve(platform, w.city, "identity")
    persons = w.tables["persons"].to_pydict()
    keys = {"pid": persons["pid"][0], "name": persons["name"][0]}
    verification.call(platform, w.consumer, "identity", [{"keys": keys}], CONSENT)
    with ApiServer(platform.home) as server:
        yield w, server, keys


def test_a_county_authority_may_not_ask_who_verified_a_city_resident(verified):
    w, server, keys = verified

    def who(name: str, body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {w.tokens[name]}"}
        response = httpx.post(server.url + "/v1/verify/who", headers=headers, json=body)
        check_envelope(response)
        return response

    county = who("county", {"keys": keys})
    assert county.status_code == 400, county.text
    assert "among the products of your county" in county.json()["error"]["message"]
    _refused_art5(who("county", {"keys": keys, "product": "identity"}))
    headers = {"Authorization": f"Bearer {w.tokens['county']}"}
    listed = httpx.get(server.url + "/v1/verify/products", headers=headers)
    assert listed.status_code == 200 and listed.json() == []
    stats = httpx.get(server.url + "/v1/verify/products/identity/stats", headers=headers)
    assert stats.status_code == 403 and stats.json()["error"]["article"] == "Art. 5"
    for name in ("city", "auditor"):
        found = who(name, {"keys": keys})
        assert found.status_code == 200, found.text
        assert [c["consumer"] for c in found.json()] == ["consumer"]
