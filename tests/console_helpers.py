"""Builders for the console's tests: a held output waiting for two checkers, and signing in.

The scene goes through the real workflow functions (tests/workflow_helpers.py) and the
real job service: an agreement that asks for the output review, a granted PUMS, a job
whose output the platform holds back, two appointed checkers.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import pyarrow.parquet as pq

from sandbox.run.execution import JobService
from sandbox.run.jobstate import ACTIVE_STATES, JobState, job_outcome
from sandbox.run.settle import held_paths
from sandbox.workflow import airlock
from tests.workflow_helpers import Cast, granted

# Cells of every size: some pass, some are suppressed (the review shows each one's rules).
HELD_SQL = "SELECT educ, sex, COUNT(*) AS n, SUM(income) AS income FROM pums GROUP BY educ, sex"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SIGNIN = re.compile(r'name="signin" value="([^"]+)"')


@dataclass
class Scene:
    cast: Cast
    agreement_id: int
    job_id: int

    def held(self) -> tuple[list[dict], dict]:
        """The held table's rows and the output check's report, as the platform keeps them."""
        table_path, meta_path = held_paths(self.cast.platform, self.job_id)
        return pq.read_table(table_path).to_pylist(), json.loads(meta_path.read_text())["report"]


def submit_and_wait(cast: Cast, sql: str) -> int:
    """The operator's job, run to its end; returns its id once the platform withheld it
    (the scene's agreement asks for the output review)."""
    service = JobService(cast.platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": sql})
    finally:
        service.close()
    # A console test's app may already run its executor, which can claim the job first.
    deadline = time.monotonic() + 60
    while outcome.state in ACTIVE_STATES and time.monotonic() < deadline:
        time.sleep(0.1)
        with cast.platform.store.read() as conn:
            outcome = job_outcome(conn, cast.city, outcome.job_id)
    assert outcome.state is JobState.WITHHELD, (outcome.state, outcome.reason)
    return outcome.job_id


def held_scene(cast: Cast) -> Scene:
    agreement_id, _grant = granted(cast, review_required=True)
    job_id = submit_and_wait(cast, HELD_SQL)
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    return Scene(cast, agreement_id, job_id)


def post_sign_in(client, token: str, next_path: str = "", *, follow: bool = True):
    """The sign-in form, read and sent back with ``token`` as a browser does; the answer
    (unfollowed, its 303 and cookies, with ``follow`` False)."""
    page = client.get("/console/login")
    signin = SIGNIN.search(page.text).group(1)
    return client.post(
        "/console/login",
        data={"token": token, "signin": signin, "next": next_path},
        follow_redirects=follow,
    )


def sign_in(client, token: str, next_path: str = "") -> str:
    """Sign in through the form (as a browser does); returns the session's CSRF token."""
    answer = post_sign_in(client, token, next_path)
    assert answer.status_code == 200, answer.text[:500]
    return CSRF.search(answer.text).group(1)
