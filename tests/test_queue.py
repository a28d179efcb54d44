"""The persisted queue: enqueue, run later, recover after a crash, cancel, release held output.

Real platform homes, real worker processes. A "crash" is a job row left in
``running`` by a process that is gone, exactly what a killed server leaves.
"""

from __future__ import annotations

import pytest

from policies.classes import Classification
from policies.errors import Conflict
from sandbox.core import ledger
from sandbox.core.keys import load_public
from sandbox.core.principals import Role
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.data.release import verify_product
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState, cancel_operator_jobs, recover, transition
from sandbox.run.settle import release_held
from sandbox.run.views import withheld_report
from tests.conftest import PUMS_CLASSIFICATION

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
# income has zeros and a zero-count cell is impossible here; negative values send a
# cell to review, so make a dataset with some.
REVIEW = "SELECT sex, SUM(delta) AS total FROM ledgerish GROUP BY sex"


@pytest.fixture
def operator(make_principal):
    return make_principal("bank", Role.OPERATOR)[0]


@pytest.fixture
def granted(platform, pums_dataset, make_principal, operator):
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    add_grant(platform, authority, "bank", "pums", until="2099-01-01")
    return authority


@pytest.fixture
def service(platform):
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


def _verify_ledger(platform):
    with platform.store.read() as conn:
        return ledger.verify(conn, load_public(platform.public_key_path))


def test_enqueue_leaves_the_job_queued_until_run(platform, granted, operator, service):
    queued = service.enqueue(operator, {"sql": RELEASABLE})
    assert queued.state is JobState.QUEUED
    assert not any((platform.home / "products").iterdir())
    done = service.run_next()
    assert done is not None and done.job_id == queued.job_id
    assert done.state is JobState.RELEASED
    assert service.run_next() is None  # the queue is empty
    assert service.run(queued.job_id) is None  # a job runs once


def test_a_queued_job_reads_the_version_it_was_admitted_against(
    platform, granted, operator, service, provider, tmp_path, pums_csv
):
    queued = service.enqueue(operator, {"sql": RELEASABLE})
    changed = tmp_path / "pums_v2.csv"
    lines = pums_csv.read_text().splitlines()
    changed.write_text("\n".join(lines[:-100]) + "\n")  # version 2: 100 persons fewer
    v2 = vault.register(
        platform, provider, "pums", str(changed), Classification.from_dict(PUMS_CLASSIFICATION)
    )
    assert v2.version.version == 2
    service.run(queued.job_id)
    with platform.store.read() as conn:
        entries = ledger.query(conn, subject=f"job:{queued.job_id}", action="job.queued")
    assert entries[0]["details"]["inputs"][0]["version"] == 1
    manifest = verify_product(
        platform.home / "products" / f"prod-{queued.job_id:06d}",
        load_public(platform.public_key_path),
    )
    assert manifest["datasets"][0]["version"] == 1


def test_recover_fails_interrupted_jobs_and_keeps_the_queue(platform, granted, operator, service):
    interrupted = service.enqueue(operator, {"sql": RELEASABLE})
    waiting = service.enqueue(operator, {"sql": RELEASABLE})
    with platform.store.transaction() as conn:  # what a killed server leaves behind
        transition(platform, conn, interrupted.job_id, operator, JobState.RUNNING)
    result = recover(platform)
    assert result == {"failed": [interrupted.job_id], "queued": [waiting.job_id]}
    outcome = service.outcome(operator, interrupted.job_id)
    assert outcome.state is JobState.FAILED
    assert outcome.reason["code"] == "interrupted"
    assert "nothing was released" in outcome.reason["message"]
    assert service.run(waiting.job_id).state is JobState.RELEASED
    assert not (platform.home / "products" / f"prod-{interrupted.job_id:06d}").exists()
    _verify_ledger(platform)


def test_cancel_fails_active_jobs_and_a_late_worker_result_is_dropped(
    platform, granted, operator, service
):
    queued = service.enqueue(operator, {"sql": RELEASABLE})
    with platform.store.transaction() as conn:
        cancelled = cancel_operator_jobs(
            platform, conn, operator.id, "the operator's agreement is suspended", "Art. 24"
        )
    assert cancelled == [queued.job_id]
    outcome = service.outcome(operator, queued.job_id)
    assert outcome.state is JobState.FAILED
    assert outcome.reason == {
        "code": "cancelled",
        "message": "the operator's agreement is suspended",
        "article": "Art. 24",
    }
    assert service.run(queued.job_id) is None
    assert not any((platform.home / "products").iterdir())
    _verify_ledger(platform)


def test_release_held_makes_a_signed_product_naming_the_reviewers(
    platform, provider, make_principal, operator, service, tmp_path
):
    data = tmp_path / "ledgerish.csv"
    rows = ["pid,sex,delta"] + [f"{i},{i % 2},{(i % 7) - 3}" for i in range(1, 301)]
    data.write_text("\n".join(rows) + "\n")
    classification = Classification.from_dict(
        {
            "entity_key": "pid",
            "columns": {"pid": "identifier", "sex": "dimension", "delta": "measure"},
        }
    )
    vault.register(platform, provider, "ledgerish", str(data), classification)
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    add_grant(platform, authority, "bank", "ledgerish", until="2099-01-01")
    held = service.submit(operator, {"sql": REVIEW})
    assert held.state is JobState.WITHHELD
    assert held.report == withheld_report()  # the operator: no counts, no rules (issue 17)
    held = service.outcome(authority, held.job_id)  # the authority reads why
    assert "negative" in held.report["counts"] and held.report["counts"]["negative"] > 0
    assert not (platform.home / "products" / f"prod-{held.job_id:06d}").exists()

    product_id = release_held(platform, held.job_id, ["checker_a", "checker_b"])
    manifest = verify_product(
        platform.home / "products" / product_id, load_public(platform.public_key_path)
    )
    assert manifest["review"] == {"approved_by": ["checker_a", "checker_b"]}
    assert service.outcome(operator, held.job_id).state is JobState.RELEASED
    with pytest.raises(Conflict):
        release_held(platform, held.job_id, ["checker_a", "checker_b"])
    _verify_ledger(platform)


def test_a_server_process_starting_beside_a_live_one_recovers_nothing(
    platform, granted, operator, service
):
    """Every server process opens the platform, and opening clears ``tmp/``; the
    processes' lock files live elsewhere, so a sibling starting up sees the live one and
    leaves its running job alone. Once every process has stopped, the next start
    recovers it."""
    from sandbox.api.executor import Executor
    from sandbox.core.platform import Platform

    live = Executor(platform, service)
    live._recover_once()  # the first process: alone, recovers, then holds its share
    running = service.enqueue(operator, {"sql": RELEASABLE})
    with platform.store.transaction() as conn:  # the live process is running it
        transition(platform, conn, running.job_id, operator, JobState.RUNNING)
    sibling_platform = Platform.open(platform.home)  # clears tmp/, as a new process does
    sibling = Executor(sibling_platform, JobService(sibling_platform, spare=False))
    sibling._recover_once()
    assert sibling.recovered is None, "a sibling recovered while another process lived"
    assert service.outcome(operator, running.job_id).state is JobState.RUNNING
    sibling.stop()
    live.stop()
    restarted = Executor(sibling_platform, sibling.service)
    restarted._recover_once()
    assert restarted.recovered["failed"] == [running.job_id]
    restarted.stop()
    sibling.service.close()
    sibling_platform.close()
