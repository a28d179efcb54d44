"""Products delivered to named consumers (Art. 15) and their feedback (Art. 16), through the
real job path: the consumer lists and downloads what was delivered to it and nothing else,
and only a consumer that received a product gives feedback, on its three points."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policies.errors import Conflict, InputError, NotFound, PermissionDenied, PolicyRefusal
from sandbox.core import ledger
from sandbox.core.principals import Role
from sandbox.data.products import fetch_product, list_products
from sandbox.registry.inbox import notifications_of
from sandbox.registry.tables import feedback_points
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import agreements, deliveries, feedback, scheduler
from tests.workflow_helpers import NOW, granted, make_cast, verify_ledger

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"


@pytest.fixture
def cast(platform, make_principal, provider, pums_dataset):
    c = make_cast(platform, make_principal, provider)
    c.bank, _ = make_principal("other_bank", Role.CONSUMER, org="Other Bank")
    yield c
    verify_ledger(platform)


@pytest.fixture
def product(cast):
    service = JobService(cast.platform, spare=False)
    try:
        cast.agreement, _ = granted(cast, until=NOW + timedelta(days=2))
        outcome = service.submit(cast.operator, {"sql": RELEASABLE})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome.reason
    return outcome.product_id


def listed(cast, who) -> list[str]:
    with cast.platform.store.read() as conn:
        return [p["id"] for p in list_products(conn, who)]


def test_a_delivered_product_reaches_its_consumer_only(cast, product, tmp_path):
    assert listed(cast, cast.consumer) == []
    deliveries.deliver(cast.platform, cast.operator, product, "consumer", "credit limits")
    assert listed(cast, cast.consumer) == [product] and listed(cast, cast.bank) == []
    folder = fetch_product(cast.platform, cast.consumer, product, tmp_path / "got")
    assert (folder / "manifest.json").exists()
    with pytest.raises(NotFound):
        fetch_product(cast.platform, cast.bank, product, tmp_path / "not")
    [note] = notifications_of(cast.platform, cast.consumer)
    assert (note["kind"], note["body"]["product"]) == ("product_delivered", product)
    with cast.platform.store.read() as conn:
        actions = [e["action"] for e in ledger.query(conn, subject=f"product:{product}")]
    assert "product.delivered" in actions and "product.download" in actions


def test_only_the_owner_delivers_while_its_use_is_in_force(cast, product):
    with pytest.raises(NotFound):
        deliveries.deliver(cast.platform, cast.rival, product, "consumer")
    with pytest.raises(PermissionDenied):
        deliveries.deliver(cast.platform, cast.consumer, product, "other_bank")
    with pytest.raises(InputError, match="not a consumer"):
        deliveries.deliver(cast.platform, cast.operator, product, "operator")
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    with pytest.raises(Conflict, match="already"):
        deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    agreements.suspend(cast.platform, cast.city, cast.agreement, "audit")
    with pytest.raises(PolicyRefusal) as info:
        deliveries.deliver(cast.platform, cast.operator, product, "other_bank")
    assert info.value.article == "Art. 24"


def test_feedback_only_from_a_recipient_on_three_points(cast, product):
    with pytest.raises(PermissionDenied) as info:
        feedback.give(cast.platform, cast.consumer, product, quality=4, use=4, effect=4)
    assert (info.value.code, info.value.article) == ("not_delivered", "Art. 16")
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    fid = feedback.give(cast.platform, cast.consumer, product, quality=5, use=3, effect=4)
    with cast.platform.store.read() as conn:
        points = conn.execute(select(feedback_points)).one()
        [entry] = ledger.query(conn, subject=f"feedback:{fid}")
    assert (points.quality, points.use_score, points.effect) == (5, 3, 4)
    assert entry["details"]["rating"] == 4 and entry["details"]["use"] == 3
    with pytest.raises(PermissionDenied):
        feedback.give(cast.platform, cast.bank, product, quality=5, use=5, effect=5)


def test_feedback_refusals_do_not_tell_which_products_exist(cast, product):
    # Product ids follow job ids: a consumer probing ids it was not given must get one
    # answer for another operator's real product and for an id no job ever made.
    guessed = "prod-999999"
    answers = []
    for probe in (product, guessed):
        with pytest.raises(PermissionDenied) as info:
            feedback.give(cast.platform, cast.bank, probe, quality=3, use=3, effect=3)
        answers.append((type(info.value), info.value.code, str(info.value).replace(probe, "?")))
    assert answers[0] == answers[1], answers
    assert "Art. 16" in answers[0][2]


def test_a_deleted_product_leaves_its_consumers_too(cast, product, tmp_path):
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    scheduler.tick(cast.platform, now=NOW + timedelta(days=3))
    assert listed(cast, cast.consumer) == []
    with pytest.raises(NotFound, match="disposal clause"):
        fetch_product(cast.platform, cast.consumer, product, tmp_path / "gone")
    with pytest.raises(Conflict, match="deleted"):
        feedback.give(cast.platform, cast.consumer, product, quality=1, use=1, effect=1)
