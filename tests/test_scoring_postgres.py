"""Scoring calls on a PostgreSQL store: the limits, the enumeration defence and the
consumer's standing are written in the store's dialect (the counters and the standing
are verification's, shared with it).

One platform whose ``store.url`` is a fresh database of the session's embedded
PostgreSQL server (tests/pg_store.py); the model is trained and published on it.
"""

from __future__ import annotations

import pytest
from model_helpers import BANDS, CONSENT, SOUND, make_world
from sqlalchemy import select

from policies.errors import PolicyRefusal, RateLimited
from sandbox.core.platform import Platform
from sandbox.models import calls, service, services
from sandbox.verification.tables import verify_standing

pytestmark = pytest.mark.postgres


@pytest.fixture
def platform(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    plat = Platform.init(tmp_path / "home")
    assert plat.store.is_postgres
    yield plat
    calls.close(plat)
    plat.close()


def test_guessing_subjects_throttles_the_consumer_on_postgresql(platform, make_principal, tmp_path):
    w = make_world(platform, make_principal, tmp_path / "data")
    service.train(platform, w.operator, SOUND)
    services.define(
        platform, w.operator, {"name": "sme_credit", "model": SOUND["name"], "bands": BANDS}
    )
    services.approve(platform, w.city, "sme_credit")
    known = w.table.column("credit_code").to_pylist()[0]
    assert calls.call(platform, w.consumer, "sme_credit", [{"key": known}], CONSENT).code in "abcd"
    stopped = None
    for i in range(120):
        consent = {**CONSENT, "reference": f"R{i}"}
        guess = f"91370800G{i:08d}"
        try:
            calls.call(platform, w.consumer, "sme_credit", [{"key": guess}], consent)
        except (PolicyRefusal, RateLimited) as error:
            stopped = error
            break
    assert stopped is not None
    with platform.store.read() as conn:
        standing = conn.execute(
            select(verify_standing.c.status).where(verify_standing.c.consumer_id == w.consumer.id)
        ).scalar()
    assert standing in ("throttled", "blocked")
