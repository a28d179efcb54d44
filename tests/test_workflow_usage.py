"""Usage figures that match the ledger (Art. 16, 23; issue 20, item 7): the calls of an
operator's verification products are counted, and only the operator's own and its
consumers' downloads count as its products' downloads, not the authority's or an
auditor's reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from verify_helpers import IDENTITY, SOCIAL_INSURANCE, make_world

from sandbox.core import ledger
from sandbox.data.products import fetch_product
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.verification import products as verify_products
from sandbox.verification import service as verification
from sandbox.workflow import deliveries
from sandbox.workflow.usage import figures
from tests.workflow_helpers import (
    cast_fixture,  # noqa: F401  (the fixture cast)
    granted,
)

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"


def totals(platform, operator: str) -> dict:
    now = datetime.now(UTC)
    with platform.store.read() as conn:
        return figures(conn, operator, now - timedelta(days=1), now + timedelta(days=1))["totals"]


def test_only_the_operators_and_its_consumers_downloads_count(cast, tmp_path):
    granted(cast)
    service = JobService(cast.platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": RELEASABLE})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED
    product = outcome.product_id
    for n, who in enumerate((cast.operator, cast.city, cast.auditor)):
        fetch_product(cast.platform, who, product, tmp_path / str(n))
    deliveries.deliver(cast.platform, cast.operator, product, "consumer")
    fetch_product(cast.platform, cast.consumer, product, tmp_path / "consumer")
    with cast.platform.store.read() as conn:
        assert len(ledger.query(conn, action="product.download")) == 4
    assert totals(cast.platform, "operator")["downloads"] == 2


def test_the_calls_of_the_operators_verification_products_are_counted(
    platform, make_principal, tmp_path
):
    world = make_world(platform, make_principal, tmp_path / "data", persons=200)
    for definition in (IDENTITY, SOCIAL_INSURANCE):
        verify_products.define(platform, world.operator, definition)
    verify_products.approve(platform, world.city, "si_paid_6_of_12")
    codes = world.tables["enterprises"].column("credit_code").to_pylist()[:3]
    for code in codes:
        verification.call(
            platform, world.consumer, "si_paid_6_of_12", [{"keys": {"credit_code": code}}]
        )
    with platform.store.read() as conn:
        assert len(ledger.query(conn, action="verify.call")) == 3
    assert totals(platform, "operator")["verifications"] == 3
    verification.service_for(platform).close()
