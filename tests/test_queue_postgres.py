"""The job queue's tests (tests/test_queue.py) again, on a PostgreSQL store.

The same test functions and fixtures, with ``platform`` a home whose ``store.url`` is a
fresh database of the session's embedded PostgreSQL server (tests/pg_store.py).
"""

from __future__ import annotations

import pytest
from test_queue import *  # noqa: F403  (the same tests, collected here on PostgreSQL)

from sandbox.core.platform import Platform

pytestmark = pytest.mark.postgres


@pytest.fixture
def platform(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    plat = Platform.init(tmp_path / "home")
    assert plat.store.is_postgres
    yield plat
    plat.close()


def test_a_server_process_starting_beside_a_live_one_recovers_nothing(
    platform, granted, operator, service
):
    """On PostgreSQL the lock files of one home cannot see the other hosts: a starting
    process fails only jobs of hosts whose lease ran out, so a job with no such host
    stays running (the SQLite test of the same name holds the lock files' rule;
    tests/test_store_postgres.py the leases)."""
    from sandbox.api.executor import Executor
    from sandbox.run.jobstate import JobState, transition

    running = service.enqueue(operator, {"sql": RELEASABLE})  # noqa: F405
    with platform.store.transaction() as conn:  # another host is running it
        transition(platform, conn, running.job_id, operator, JobState.RUNNING)
    starting = Executor(platform, service)
    starting._recover_once()
    assert starting.recovered == {"failed": [], "queued": []}
    assert service.outcome(operator, running.job_id).state is JobState.RUNNING
    starting.stop()
