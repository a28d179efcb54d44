"""The verification products' tests (tests/test_verify.py) again, on a PostgreSQL store:
the group commit, the counters and the limits written in the store's dialect.

The same test functions and fixtures, with ``platform`` a home whose ``store.url`` is a
fresh database of the session's embedded PostgreSQL server (tests/pg_store.py).
"""

from __future__ import annotations

import pytest
from test_verify import *  # noqa: F403  (the same tests, collected here on PostgreSQL)

from sandbox.core.platform import Platform

pytestmark = pytest.mark.postgres


@pytest.fixture
def platform(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    plat = Platform.init(tmp_path / "home")
    assert plat.store.is_postgres
    yield plat
    plat.close()
