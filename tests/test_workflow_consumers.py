"""Consumers (Art. 16, 17, 21): the catalogue of released products, feedback on
verification products, incidents reported by consumers and their incident-response
plans. Through the real job path and the real verification service."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from policies.errors import InputError, PermissionDenied
from sandbox.cli.app import main
from sandbox.cli.supervision import INCIDENT_KINDS
from sandbox.core import ledger
from sandbox.core.principals import Role
from sandbox.registry.inbox import notifications_of
from sandbox.registry.tables import agreements, incidents
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import consumers, deliveries, scheduler
from sandbox.workflow.catalogue import catalogue
from sandbox.workflow.lists import list_page
from sandbox.workflow.supervision import IncidentKind
from tests.workflow_helpers import NOW, granted, make_cast, verify_ledger

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
HELD = "SELECT educ, COUNT(*) AS n FROM pums WHERE age > 85 GROUP BY educ"
FIELDS = {"id", "kind", "title", "operator", "datasets", "released_at"}


@pytest.fixture
def cast(platform, make_principal, provider, pums_dataset):
    c = make_cast(platform, make_principal, provider)
    c.bank, c.tokens["bank"] = make_principal("other_bank", Role.CONSUMER, org="Other Bank")
    yield c
    verify_ledger(platform)


def run_jobs(cast, *sqls: str) -> list:
    service = JobService(cast.platform, spare=False)
    try:
        return [service.submit(cast.operator, {"sql": sql}) for sql in sqls]
    finally:
        service.close()


@pytest.fixture
def product(cast):
    cast.agreement, _ = granted(cast, until=NOW + timedelta(days=2))
    [outcome] = run_jobs(cast, RELEASABLE)
    assert outcome.state is JobState.RELEASED, outcome.reason
    return outcome.product_id


# --- the catalogue (Art. 17) ------------------------------------------------------------------


def test_the_catalogue_lists_released_products_to_everyone_and_nothing_held(cast, product):
    held, refused = run_jobs(cast, HELD, "SELECT * FROM pums")
    assert held.state is JobState.WITHHELD and refused.state is JobState.REFUSED
    for who in (cast.consumer, cast.provider, cast.r1, cast.rival, cast.other_county):
        page = catalogue(cast.platform, who)
        assert [(e["id"], e["kind"]) for e in page["items"]] == [(product, "report")], who.name
    [entry] = catalogue(cast.platform, cast.bank)["items"]
    assert set(entry) == FIELDS  # no value, no SQL, no path
    assert (entry["operator"], entry["datasets"]) == ("operator", ["pums"])
    assert entry["title"] == "income by education for lending"  # the application's scenario
    scheduler.tick(cast.platform, now=NOW + timedelta(days=3))  # expired: deleted (Art. 13)
    assert catalogue(cast.platform, cast.consumer) == {"items": [], "total": 0,
                                                       "next_before": None}  # fmt: skip


def test_the_catalogue_pages_newest_first(cast, product):
    more = [o.product_id for o in run_jobs(cast, RELEASABLE, RELEASABLE, RELEASABLE)]
    seen, before = [], None
    while True:
        page = catalogue(cast.platform, cast.consumer, limit=3, before=before)
        seen += [e["id"] for e in page["items"]]
        if page["next_before"] is None:
            break
        before = page["next_before"]
    assert seen == [*reversed(more), product] and page["total"] == 4
    for bad in ({"limit": 0}, {"before": "prod-000001"}):
        with pytest.raises(InputError):
            catalogue(cast.platform, cast.consumer, **bad)


def test_the_catalogue_from_the_command_line(cast, product):
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]
    shown = runner.invoke(main, [*home, "product", "catalogue", "--json", "--as",
                                 cast.tokens["consumer"]])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert [e["id"] for e in json.loads(shown.stdout)["items"]] == [product]
    text = runner.invoke(main, [*home, "product", "catalogue", "--as", cast.tokens["r1"]])
    assert product in text.output and "report" in text.output


# --- consumers report incidents (Art. 21) -----------------------------------------------------


def incident_rows(cast) -> int:
    with cast.platform.store.read() as conn:
        return conn.execute(select(func.count()).select_from(incidents)).scalar_one()


def kinds_in(cast, who) -> list[str]:
    return [n["kind"] for n in notifications_of(cast.platform, who)]


def test_a_consumer_reports_an_incident_on_a_delivered_product(cast, product):
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    done = consumers.incident_report(cast.platform, cast.consumer, "leak",
                                     "the table was mailed outside the bank", product=product)  # fmt: skip
    incident = done["incident"]
    assert done["suspended"] == [] and len(done["notified"]) == 3
    for told in (cast.operator, cast.city, cast.provider):  # operator, signer, provider
        [note] = [n for n in notifications_of(cast.platform, told) if n["kind"] == "incident"]
        assert note["subject"] == f"incident:{incident}" and note["body"]["product"] == product
        assert note["body"]["reported_by"] == "consumer"
    for untold in (cast.bank, cast.rival, cast.county):
        assert "incident" not in kinds_in(cast, untold)
    with cast.platform.store.read() as conn:
        status = conn.execute(select(agreements.c.status)).scalars().all()
        [entry] = ledger.query(conn, subject=f"incident:{incident}")
    assert status == ["active"]  # a consumer's word suspends nothing: the authority decides
    assert (entry["action"], entry["actor"], entry["details"]["product"]) == (
        "incident.reported", "consumer", product)  # fmt: skip
    [row] = list_page(cast.platform, cast.consumer, "incidents")["items"]
    assert (row["id"], row["product"], row["kind"], row["suspended"]) == (
        incident, product, "leak", [])  # fmt: skip
    assert list_page(cast.platform, cast.bank, "incidents")["items"] == []
    assert [i["id"] for i in list_page(cast.platform, cast.provider, "incidents")["items"]] == [
        incident
    ]


def test_a_consumer_reports_only_on_what_reached_it_and_nothing_is_written(cast, product):
    answers = []
    for probe in (product, "prod-999999"):  # another's real product, and none
        with pytest.raises(PermissionDenied) as info:
            consumers.incident_report(cast.platform, cast.bank, "misuse", "x", product=probe)
        answers.append((info.value.code, info.value.article, str(info.value).replace(probe, "?")))
    assert answers[0] == answers[1] and answers[0][:2] == ("not_delivered", "Art. 21")
    with pytest.raises(PermissionDenied) as info:  # the operator reports with --operator
        consumers.incident_report(cast.platform, cast.operator, "leak", "x", product=product)
    assert info.value.article == "Art. 21"
    with pytest.raises(InputError, match="either --operator"):
        consumers.incident_report(cast.platform, cast.city, "leak", "x", operator="operator",
                                  product=product)  # fmt: skip
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    with pytest.raises(InputError):
        consumers.incident_report(cast.platform, cast.consumer, "leak", "  ", product=product)
    with pytest.raises(ValueError):
        consumers.incident_report(cast.platform, cast.consumer, "rumour", "x", product=product)
    assert incident_rows(cast) == 0 and "incident" not in kinds_in(cast, cast.operator)
    assert INCIDENT_KINDS == [k.value for k in IncidentKind]  # the CLI offers every kind


# --- consumers' incident-response plans (Art. 21) ---------------------------------------------


def test_a_consumer_files_its_plan_and_authorities_list_it(cast):
    first = consumers.file_plan(cast.platform, cast.consumer, "stop use; call the operator")
    latest = consumers.file_plan(cast.platform, cast.consumer, "stop use; call both; contain")
    other = consumers.file_plan(cast.platform, cast.bank, "call the authority within an hour")
    assert [p["id"] for p in list_page(cast.platform, cast.consumer, "plans")["items"]] == [
        latest, first]  # fmt: skip
    for reader in (cast.city, cast.county, cast.auditor):
        assert [p["id"] for p in list_page(cast.platform, reader, "plans")["items"]] == [
            other, latest, first]  # fmt: skip
    [shown] = list_page(cast.platform, cast.bank, "plans")["items"]
    assert (shown["consumer"], shown["plan"]) == ("other_bank", "call the authority within an hour")
    with cast.platform.store.read() as conn:
        [entry] = ledger.query(conn, subject=f"incident_plan:{latest}")
    digest = hashlib.sha256(b"stop use; call both; contain").hexdigest()
    assert (entry["action"], entry["details"]["sha256"]) == ("incident_plan.filed", digest)
    for who in (cast.operator, cast.provider, cast.r1):
        with pytest.raises(PermissionDenied) as info:
            list_page(cast.platform, who, "plans")
        assert info.value.article == "Art. 21"
    with pytest.raises(PermissionDenied):
        consumers.file_plan(cast.platform, cast.operator, "ours is in the application")
    with pytest.raises(InputError):
        consumers.file_plan(cast.platform, cast.consumer, "   ")
    assert list_page(cast.platform, cast.auditor, "plans")["total"] == 3


def test_plans_and_consumer_incidents_from_the_command_line(cast, product, tmp_path):
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]

    def run(who, *args):
        return runner.invoke(main, [*home, *args, "--as", cast.tokens[who]])

    plan = tmp_path / "plan.txt"
    plan.write_text("stop use; call the operator and the authority", encoding="utf-8")
    filed = run("consumer", "security", "plan", "--file", str(plan))
    assert filed.exit_code == 0 and filed.output.startswith("incident-response plan "), filed.output
    listed = json.loads(run("city", "security", "plans", "--json").output)
    assert [p["plan"] for p in listed["items"]] == [plan.read_text(encoding="utf-8")]
    refused = run("consumer", "incident", "report", "--product", product, "--kind", "misuse",
                  "--description", "resold")  # fmt: skip
    assert refused.exit_code == 3 and "not_delivered" in refused.output
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    told = run("consumer", "incident", "report", "--product", product, "--kind", "misuse",
               "--description", "resold to a broker")  # fmt: skip
    assert told.exit_code == 0 and "nothing suspended" in told.output, told.output
