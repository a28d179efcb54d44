"""Lists of workflow objects (issue 20, item 4): each reader sees what its single reads
show, newest first and a page at a time; open notices are discoverable by operators."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from policies.errors import InputError, PermissionDenied
from sandbox.cli.app import main
from sandbox.registry.tables import data_requests
from sandbox.workflow import requests, supervision
from sandbox.workflow.lists import list_page
from tests.workflow_helpers import (
    COUNTY,
    NOW,
    apply,
    cast_fixture,  # noqa: F401  (the fixture cast)
    granted,
    passed_application,
    publish,
)


def requests_of(conn, agreement_id: int) -> list[int]:
    rows = conn.execute(
        select(data_requests.c.id)
        .where(data_requests.c.agreement_id == agreement_id)
        .order_by(data_requests.c.id.desc())
    )
    return list(rows.scalars())


def ids(cast, who, kind, **filters) -> list[int]:
    return [i["id"] for i in list_page(cast.platform, who, kind, **filters)["items"]]


def test_each_reader_lists_what_it_may_read(cast):
    city_agreement, _ = granted(cast)
    county_agreement, _ = granted(cast, authority=cast.county, notice_kw={"jurisdiction": COUNTY})
    rival_app = apply(cast, publish(cast), operator=cast.rival)
    assert ids(cast, cast.operator, "agreements") == [county_agreement, city_agreement]
    assert ids(cast, cast.rival, "agreements") == []
    assert ids(cast, cast.county, "agreements") == [county_agreement]
    assert ids(cast, cast.other_county, "agreements") == []
    assert ids(cast, cast.provider, "agreements") == [county_agreement, city_agreement]
    assert ids(cast, cast.auditor, "agreements") == [county_agreement, city_agreement]
    assert rival_app in ids(cast, cast.rival, "applications")
    assert rival_app not in ids(cast, cast.operator, "applications")
    assert rival_app not in ids(cast, cast.r1, "applications")  # not appointed to it
    assert len(ids(cast, cast.provider, "requests")) == 2
    assert ids(cast, cast.rival, "requests") == []
    for who, kind in [(cast.consumer, "agreements"), (cast.provider, "applications"),
                      (cast.r1, "requests"), (cast.consumer, "tickets")]:  # fmt: skip
        with pytest.raises(PermissionDenied, match="may not list"):
            list_page(cast.platform, who, kind)


def test_a_county_authority_lists_its_county_only(cast):
    # Every list an authority reads keeps to its jurisdiction (Art. 5): the other county's
    # authority sees none of this county's applications, agreements or data requests, and
    # its totals do not count them either (a total is no oracle of another county's work).
    city_agreement, _ = granted(cast)
    county_agreement, _ = granted(cast, authority=cast.county, notice_kw={"jurisdiction": COUNTY})
    with cast.platform.store.read() as conn:
        county_requests = requests_of(conn, county_agreement)
        city_requests = requests_of(conn, city_agreement)
    county_app = list_page(cast.platform, cast.county, "applications")["items"]
    assert len(county_app) == 1 and county_app[0]["id"] not in ids(
        cast, cast.other_county, "applications"
    )
    assert ids(cast, cast.county, "requests") == county_requests
    assert set(ids(cast, cast.city, "requests")) == set(county_requests + city_requests)
    for kind in ("applications", "agreements", "requests"):
        page = list_page(cast.platform, cast.other_county, kind)
        assert (page["items"], page["total"]) == ([], 0), kind
    assert list_page(cast.platform, cast.county, "agreements", status="active")["total"] == 1


def test_a_refused_list_names_who_may_list_it(cast):
    with pytest.raises(PermissionDenied) as info:
        list_page(cast.platform, cast.consumer, "agreements")
    assert info.value.article == "Art. 13"
    assert "listed by: operator, provider, authority, auditor" in str(info.value)


def test_open_notices_are_discoverable_and_pages_follow_each_other(cast):
    closing = publish(cast, deadline=NOW + timedelta(days=2))
    later = [publish(cast) for _ in range(4)]
    assert ids(cast, cast.consumer, "notices", open_only=True) == [*reversed(later), closing]
    assert ids(cast, cast.operator, "notices", open_only=True, now=NOW + timedelta(days=3)) == [
        *reversed(later)
    ]
    seen, before = [], None
    while True:
        page = list_page(cast.platform, cast.operator, "notices", limit=2, before=before)
        seen += [i["id"] for i in page["items"]]
        if page["next_before"] is None:
            break
        before = page["next_before"]
    assert seen == sorted(seen, reverse=True) and len(seen) == page["total"] == 5
    for bad in ({"limit": 0}, {"before": 0}):
        with pytest.raises(InputError):
            list_page(cast.platform, cast.operator, "notices", **bad)
    with pytest.raises(InputError, match="unknown list"):
        list_page(cast.platform, cast.operator, "grants")


def test_status_filters_and_the_command_line(cast):
    agreement_id, _ = granted(cast)
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="x")
    requests.refuse_request(cast.platform, cast.provider, rid, "no")
    assert ids(cast, cast.operator, "requests", status="refused") == [rid]
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]

    def run(who, *args):
        result = runner.invoke(main, [*home, *args, "--as", cast.tokens[who]])
        assert result.exit_code == 0, result.output
        return result.output

    listed = json.loads(run("operator", "request", "list", "--status", "refused", "--json"))
    assert [i["reason"] for i in listed["items"]] == ["no"]
    assert "pums" in run("operator", "agreement", "list")
    assert json.loads(run("consumer", "notice", "list", "--open", "--json"))["total"] == 1
    text = run("operator", "application", "list", "--limit", "1")
    assert "more: --before" not in text  # one application only
    refused = runner.invoke(main, [*home, "agreement", "list", "--as", cast.tokens["consumer"]])
    assert refused.exit_code == 3 and "Art. 13" in refused.output


def test_reviews_evaluations_and_incidents_follow_their_single_reads(cast):
    # Reviews (Art. 12), evaluations (Art. 23) and incidents (Art. 21) are listed to those
    # who read or are told of each: a county authority its county's, and the incident of an
    # operator holding an agreement of its county; a provider the incidents of the
    # operators using its data, not those of an operator that holds none of it.
    city_agreement, _ = granted(cast)
    county_agreement, _ = granted(cast, authority=cast.county, notice_kw={"jurisdiction": COUNTY})
    all_reviews = ids(cast, cast.auditor, "reviews")
    assert len(all_reviews) == 4 and all_reviews == sorted(all_reviews, reverse=True)
    assert len(ids(cast, cast.r1, "reviews")) == 2 and ids(cast, cast.r3_same_org, "reviews") == []
    assert set(ids(cast, cast.r1, "reviews")) | set(ids(cast, cast.r2, "reviews")) == set(
        all_reviews
    )
    county_reviews = list_page(cast.platform, cast.county, "reviews")["items"]
    county_app = ids(cast, cast.county, "applications")
    assert {r["application"] for r in county_reviews} == set(county_app)
    assert sorted(r["reviewer"] for r in county_reviews) == ["r1", "r2"]
    assert county_reviews[0]["scores"] == {"capability": 80, "scenario": 75, "security": 90}
    assert ids(cast, cast.other_county, "reviews") == []
    assert set(ids(cast, cast.city, "reviews")) == set(all_reviews)

    city_eval = supervision.evaluate(cast.platform, cast.city, city_agreement, passed=True,
                                     notes="reports on time")  # fmt: skip
    county_eval = supervision.evaluate(cast.platform, cast.county, county_agreement, passed=True,
                                       notes="logs kept")  # fmt: skip
    assert ids(cast, cast.operator, "evaluations") == [county_eval, city_eval]
    assert ids(cast, cast.rival, "evaluations") == []
    assert ids(cast, cast.county, "evaluations") == [county_eval]
    assert ids(cast, cast.other_county, "evaluations") == []
    [shown] = list_page(cast.platform, cast.county, "evaluations")["items"]
    assert (shown["agreement"], shown["authority"], shown["status"], shown["notes"]) == (
        county_agreement, "county", "passed", "logs kept")  # fmt: skip

    theirs = supervision.report_incident(cast.platform, cast.rival, "rival", "loss", "laptop")
    ours = supervision.report_incident(cast.platform, cast.operator, "operator", "leak", "a csv")
    rival_incident, our_incident = theirs["incident"], ours["incident"]
    assert ids(cast, cast.operator, "incidents") == [our_incident]
    assert ids(cast, cast.rival, "incidents") == [rival_incident]
    assert ids(cast, cast.provider, "incidents") == [our_incident]  # the rival uses none of it
    assert ids(cast, cast.county, "incidents") == [our_incident]
    assert ids(cast, cast.other_county, "incidents") == []
    assert ids(cast, cast.city, "incidents") == [our_incident, rival_incident]
    assert ids(cast, cast.auditor, "incidents") == [our_incident, rival_incident]
    [row] = list_page(cast.platform, cast.provider, "incidents")["items"]
    assert (row["operator"], row["reported_by"], row["kind"], row["description"]) == (
        "operator", "operator", "leak", "a csv")  # fmt: skip
    assert sorted(row["suspended"]) == sorted([city_agreement, county_agreement])
    assert list_page(cast.platform, cast.other_county, "incidents")["total"] == 0


def test_reviews_evaluations_and_incidents_refuse_other_roles_and_page(cast):
    for who, kind, article in [(cast.operator, "reviews", "Art. 12"),
                               (cast.consumer, "reviews", "Art. 12"),
                               (cast.provider, "evaluations", "Art. 23"),
                               (cast.r1, "evaluations", "Art. 23"),
                               (cast.consumer, "evaluations", "Art. 23"),
                               (cast.r1, "incidents", "Art. 21")]:  # fmt: skip
        with pytest.raises(PermissionDenied, match="may not list") as info:
            list_page(cast.platform, who, kind)
        assert info.value.article == article
    for _ in range(3):
        passed_application(cast)
    seen, before = [], None
    while True:
        page = list_page(cast.platform, cast.r2, "reviews", limit=2, before=before)
        seen += [i["id"] for i in page["items"]]
        if page["next_before"] is None:
            break
        before = page["next_before"]
    assert len(seen) == page["total"] == 3 and seen == sorted(seen, reverse=True)
    assert ids(cast, cast.r2, "reviews", status="scored") == seen
    with pytest.raises(InputError, match="incidents have no status"):
        list_page(cast.platform, cast.auditor, "incidents", status="open")


def test_reviews_evaluations_and_incidents_from_the_command_line(cast):
    agreement_id, _ = granted(cast)
    supervision.evaluate(cast.platform, cast.city, agreement_id, passed=False, notes="late",
                         deadline=NOW + timedelta(days=10))  # fmt: skip
    supervision.report_incident(cast.platform, cast.city, "operator", "damage", "disk failed")
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]

    def run(who, *args):
        return runner.invoke(main, [*home, *args, "--as", cast.tokens[who]])

    reviews = json.loads(run("r1", "review", "list", "--json").output)
    assert [(r["reviewer"], r["status"]) for r in reviews["items"]] == [("r1", "scored")]
    text = run("operator", "evaluation", "list").output
    assert "failed" in text and "late" in text
    incidents = json.loads(run("operator", "incident", "list", "--json").output)["items"]
    assert [(i["kind"], i["reported_by"]) for i in incidents] == [("damage", "city")]
    refused = run("r1", "incident", "list")
    assert refused.exit_code == 3 and "Art. 21" in refused.output
    assert run("city", "evaluate", "--help").exit_code == 0  # the command stays
