"""The server's executor (:class:`sandbox.api.executor.Executor`) beside its chores: the
scheduled source pulls and the workflow tick must never hold up the job queue.

A slow pull is made real: the source is a table of the session's embedded PostgreSQL
server that the test holds locked (``LOCK TABLE``), so the pull waits in the source's
database for as long as the test wants, as a pull from a stalled upstream does. The
platform's own store is the home's SQLite file.
"""

from __future__ import annotations

import time

import pytest

from policies.classes import Classification
from sandbox.api.executor import Executor
from sandbox.data import vault
from sandbox.data.refresh import set_schedule
from sandbox.run.jobstate import JobState
from tests.test_queue import RELEASABLE, granted, operator, service  # noqa: F401 (fixtures)

pytestmark = pytest.mark.postgres

FEED_CLASSES = Classification.from_dict(
    {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension", "n": "measure"}}
)


def _wait(what, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    return what()


@pytest.fixture
def stalled_source(platform, provider, pg_url):
    """A source scheduled at 00:00 (due at once) whose table the test then locks: the
    next pull waits until the lock is let go. Yields (is a pull waiting now?, let go)."""
    import psycopg2

    source = psycopg2.connect(pg_url)
    with source.cursor() as cur:
        cur.execute("CREATE TABLE feed (pid text, county text, n integer)")
        cur.execute("INSERT INTO feed VALUES ('P1', 'c1', 1), ('P2', 'c2', 2), ('P3', 'c1', 3)")
    source.commit()
    vault.register(platform, provider, "feed", f"{pg_url}&table=feed", FEED_CLASSES)
    set_schedule(platform, provider, "feed", "00:00")
    with source.cursor() as cur:
        cur.execute("LOCK TABLE feed IN ACCESS EXCLUSIVE MODE")  # held to the rollback
    watcher = psycopg2.connect(pg_url)
    watcher.autocommit = True

    def waiting() -> bool:
        with watcher.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'feed'::regclass"
            )
            return cur.fetchone()[0] > 0

    try:
        yield waiting, source.rollback  # the rollback ends the lock: the pull goes on
    finally:
        source.rollback()
        source.close()
        watcher.close()


def test_a_stalled_scheduled_pull_does_not_hold_up_the_queue(
    platform,
    granted,  # noqa: F811 - the fixture imported from tests/test_queue.py
    operator,  # noqa: F811
    service,  # noqa: F811
    stalled_source,
):
    waiting, let_go = stalled_source
    executor = Executor(platform, service, idle_s=0.05)
    executor.start()
    try:
        assert _wait(waiting, 30), "the scheduled pull never began"
        queued = service.enqueue(operator, {"sql": RELEASABLE})
        executor.wake()
        state = _wait(
            lambda: (
                service.outcome(operator, queued.job_id).state
                in (JobState.RELEASED, JobState.WITHHELD)
            ),
            30,
        )
        assert state, (
            "a job queued while a scheduled pull was stalled did not run: "
            f"{service.outcome(operator, queued.job_id).state}"
        )
    finally:
        let_go()
        executor.stop()
