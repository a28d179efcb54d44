"""Consumers (Art. 16, 17, 21): the catalogue of released products, feedback on
verification products, incidents reported by consumers and their incident-response
plans. Through the real job path and the real verification service."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from policies.errors import InputError
from sandbox.cli.app import main
from sandbox.core.principals import Role
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import scheduler
from sandbox.workflow.catalogue import catalogue
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
