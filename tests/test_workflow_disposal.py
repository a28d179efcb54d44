"""Disposal that completes (Art. 13): agreements expire on their own at term end (the tick),
their disposal clause deletes or hands over every derived product, a deleted product
leaves every product list and read, and the home still backs up, restores and verifies."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from api_server import ApiServer, make_home
from click.testing import CliRunner

from policies.errors import NotFound, PermissionDenied
from policies.workflow import Disposal, PassRule
from sandbox.cli.app import main
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.backup import backup, restore, verify_home
from sandbox.data.products import list_products, readable_product
from sandbox.registry.inbox import notifications_of
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.verification import products as verify_products
from sandbox.verification.disposal import dispose_indexes
from sandbox.verification.tables import verify_products as table
from sandbox.workflow import agreements, applications, notices, reviews, scheduler
from sandbox.workflow.providers import uses_of
from tests.verify_helpers import IDENTITY, make_world
from tests.workflow_helpers import (
    NOW,
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
    passed_application,
    sign,
    verify_ledger,
)

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
TERM = timedelta(days=2)


@pytest.fixture
def service(platform):
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


def released(cast, service, **sign_kw) -> tuple[int, str]:
    agreement_id, _ = granted(cast, until=NOW + TERM, **sign_kw)
    outcome = service.submit(cast.operator, {"sql": RELEASABLE})
    assert outcome.state is JobState.RELEASED, outcome.reason
    return agreement_id, outcome.product_id


def test_the_tick_expires_at_term_end_and_not_before(cast, service):
    agreement_id, product = released(cast, service)
    assert scheduler.tick(cast.platform, now=NOW + TERM - timedelta(days=1))["expired"] == []
    assert (cast.platform.home / "products" / product).exists()
    done = scheduler.tick(cast.platform, now=NOW + TERM + timedelta(days=1))
    assert done["expired"] == [agreement_id] and done["disposed"] == {agreement_id: [product]}
    assert scheduler.tick(cast.platform, now=NOW + TERM + timedelta(days=2))["expired"] == []
    [expired] = [e for e in entries(cast.platform, f"agreement:{agreement_id}")
                 if e["details"].get("to") == "expired"]  # fmt: skip
    assert expired["actor"] == "platform" and expired["article"] == "Art. 13"


def test_a_deleted_product_leaves_every_list_and_read(cast, service):
    agreement_id, product = released(cast, service)
    scheduler.tick(cast.platform, now=NOW + TERM + timedelta(days=1))
    assert not (cast.platform.home / "products" / product).exists()
    with cast.platform.store.read() as conn:
        for who in (cast.city, cast.auditor):
            assert product not in {p["id"] for p in list_products(conn, who)}
            with pytest.raises(NotFound, match="deleted"):
                readable_product(conn, who, product)
        assert uses_of(conn, cast.provider)["products"] == []
    note = [n for n in notifications_of(cast.platform, cast.operator)
            if n["kind"] == "agreement_expired"][-1]  # fmt: skip
    assert note["body"]["products"] == [product] and note["body"]["disposal"] == "delete"


def test_backup_and_restore_work_after_a_disposal(cast, service, tmp_path):
    if cast.platform.store.is_postgres:  # refused by design: pg_dump backs up that store
        pytest.skip("sandbox backup copies a SQLite store; PostgreSQL is backed up with pg_dump")
    _, deleted = released(cast, service)
    scheduler.tick(cast.platform, now=NOW + TERM + timedelta(days=1))
    _, kept = released(cast, service, disposal=Disposal.HAND_OVER)
    report = backup(cast.platform, tmp_path / "backup")  # failed: manifest.json is missing
    assert report.products == 1
    assert verify_home(cast.platform).products == 1
    checked = restore(tmp_path / "backup", tmp_path / "restored")
    assert checked.products == 1
    restored = Platform.open(tmp_path / "restored")
    try:
        assert (restored.home / "products" / kept).exists()
        assert not (restored.home / "products" / deleted).exists()
    finally:
        restored.close()


def test_a_hand_over_keeps_the_product_in_the_authoritys_custody(cast, service):
    agreement_id, product = released(cast, service, disposal=Disposal.HAND_OVER)
    scheduler.tick(cast.platform, now=NOW + TERM + timedelta(days=1))
    assert (cast.platform.home / "products" / product).exists()
    with cast.platform.store.read() as conn:
        assert product in {p["id"] for p in list_products(conn, cast.city)}
        assert product not in {p["id"] for p in list_products(conn, cast.operator)}
    [handed] = entries(cast.platform, f"product:{product}")[-1:]
    assert handed["action"] == "product.hand_over" and handed["details"]["custodian"] == "city"


def test_only_the_platform_or_an_authority_ticks(cast):
    with pytest.raises(PermissionDenied, match="Art. 13"):
        scheduler.tick(cast.platform, by=cast.operator, now=NOW)


def test_sandbox_tick_runs_on_the_host_only(cast):
    ended = sign(cast, passed_application(cast), start=NOW - timedelta(days=10),
                 until=NOW - timedelta(days=1))  # fmt: skip
    home = ["--home", str(cast.platform.home)]
    remote = CliRunner().invoke(main, [*home, "--server", "http://127.0.0.1:9", "tick"])
    assert remote.exit_code == 2 and "runs on the platform's host only" in remote.output
    done = CliRunner().invoke(main, [*home, "tick", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["expired"] == [ended]
    again = CliRunner().invoke(main, [*home, "tick"])
    assert again.exit_code == 0 and again.output.strip() == "nothing is due"


def test_an_ended_agreement_deletes_its_verification_indexes(platform, make_principal, tmp_path):
    """A verification index is a derived product: the delete clause removes it (Art. 13)."""
    w = make_world(platform, make_principal, tmp_path / "data", persons=200)
    verify_products.define(platform, w.operator, IDENTITY)
    verify_products.approve(platform, w.city, "identity")
    files = sorted((platform.home / "verify").glob("identity-*.sqlite"))
    assert files
    assert dispose_indexes(platform) == []  # the agreement is in force: nothing to do
    end = NOW + timedelta(days=366)
    assert scheduler.tick(platform, now=end)["expired"] == [w.agreement]
    assert dispose_indexes(platform) == ["identity"]
    assert not any(path.exists() for path in files)
    with platform.store.read() as conn:
        row = conn.execute(table.select()).first()
    assert (row.status, row.index_path) == ("withdrawn", None)
    assert [e["action"] for e in entries(platform, "verification:identity")][-2:] == [
        "verify.withdrawn",
        "verify.index_deleted",
    ]
    withdrawn = entries(platform, "verification:identity")[-2]["details"]
    assert (withdrawn["agreement"], withdrawn["event"]["action"]) == (
        w.agreement,
        "agreement.expired",
    )
    assert dispose_indexes(platform) == []  # once
    verify_ledger(platform)


def test_the_servers_loop_expires_agreements_on_its_own(tmp_path):
    """A real server: an agreement whose term has ended expires without anyone asking."""
    make_home(tmp_path / "home")
    platform = Platform.open(tmp_path / "home")
    try:
        with platform.store.read() as conn:
            city, operator, reviewer, provider = (
                by_name(conn, name, role)
                for name, role in [("authority", Role.AUTHORITY), ("operator", Role.OPERATOR),
                                   ("reviewer", Role.REVIEWER), ("provider", Role.PROVIDER)]
            )  # fmt: skip
        source = tmp_path / "d.csv"
        source.write_text("pid,income\nP1,10\nP2,20\n", encoding="utf-8")
        shape = {"entity_key": "pid", "columns": {"pid": "identifier", "income": "measure"}}
        vault.register(platform, provider, "d", str(source), vault.Classification.from_dict(shape))
        nid = notices.publish(platform, city, title="t", domain="d", scenario="s", datasets=["d"],
                              conditions="c", deadline=NOW + timedelta(days=3),
                              pass_rule=PassRule(min_reviewers=1))  # fmt: skip
        aid = applications.apply(platform, operator, nid, scenario="s", datasets={"d": None},
                                 security_measures="m", security_officer="o",
                                 incident_plan="p")  # fmt: skip
        reviews.appoint(platform, city, aid, ["reviewer"])
        reviews.score(platform, reviewer, aid, capability=80, scenario=80, security=80)
        ended = agreements.sign(platform, city, aid, valid_from=NOW - timedelta(days=9),
                                valid_until=NOW - timedelta(days=1), rights_duties="r",
                                security_requirements="s", exit_conditions="e",
                                breach_liability="b", disposal=Disposal.DELETE)  # fmt: skip
    finally:
        platform.close()
    with ApiServer(tmp_path / "home"):
        platform = Platform.open(tmp_path / "home")
        try:
            for _ in range(100):
                done = [e for e in entries(platform, f"agreement:{ended}")
                        if e["action"] == "agreement.expired"]  # fmt: skip
                if done:
                    break
                time.sleep(0.1)
            assert done and done[0]["actor"] == "platform"
        finally:
            platform.close()
