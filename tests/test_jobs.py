"""The path of a job: its states, their ledger entries, the grants gate, who may see it.

Every test runs the real JobService on a real platform home in ``tmp_path``
(conftest's ``platform`` and ``pums_dataset``); jobs that get past admission run
in real worker processes.
"""

from __future__ import annotations

import json
import os

import pytest

from policies.access import GrantStatus
from policies.classes import Classification
from policies.errors import NotFound, PermissionDenied
from policies.job_states import TRANSITIONS
from sandbox.core import ledger
from sandbox.core.keys import load_public
from sandbox.core.principals import Role
from sandbox.data import vault
from sandbox.data.grants import add_grant, set_grant_status
from sandbox.data.products import list_products
from sandbox.data.release import verify_product
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState, job_outcome, list_jobs, may_transition
from sandbox.run.views import withheld_report
from tests.conftest import PUMS_CLASSIFICATION

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
ALL_SMALL = "SELECT educ, COUNT(*) AS n FROM pums WHERE age > 85 GROUP BY educ"
FINAL = {JobState.REFUSED, JobState.RELEASED, JobState.FAILED}
# A withheld output waits for the output review, which may release it.


@pytest.fixture
def authority(make_principal):
    return make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]


@pytest.fixture
def operator(make_principal):
    return make_principal("bank", Role.OPERATOR)[0]


@pytest.fixture
def service(platform):
    svc = JobService(platform, spare=False)
    yield svc
    svc.close()


@pytest.fixture
def granted(platform, pums_dataset, authority, operator) -> int:
    """The operator holds an active grant for pums; returns the grant id."""
    return add_grant(platform, authority, "bank", "pums", until="2099-01-01")


def _job_entries(platform, job_id: int) -> list[dict]:
    with platform.store.read() as conn:
        return ledger.query(conn, subject=f"job:{job_id}")


# --------------------------------------------------------------------------- state machine


def test_final_states_have_no_way_out():
    for state in FINAL:
        assert state not in TRANSITIONS
        assert not any(may_transition(state, new) for new in JobState)


def test_the_transition_table_is_the_design():
    allowed = {(old, new) for old in JobState for new in JobState if may_transition(old, new)}
    assert allowed == {
        (JobState.SUBMITTED, JobState.REFUSED),
        (JobState.SUBMITTED, JobState.QUEUED),
        (JobState.SUBMITTED, JobState.FAILED),  # recovery after a crash before admission
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.QUEUED, JobState.FAILED),
        (JobState.RUNNING, JobState.CHECKING),
        (JobState.RUNNING, JobState.FAILED),
        (JobState.CHECKING, JobState.RELEASED),
        (JobState.CHECKING, JobState.WITHHELD),
        (JobState.CHECKING, JobState.FAILED),
        (JobState.WITHHELD, JobState.RELEASED),  # approved by the output review
    }


def test_every_state_is_reachable_from_submitted_and_every_path_ends():
    seen, frontier = {JobState.SUBMITTED}, [JobState.SUBMITTED]
    while frontier:
        for new in TRANSITIONS.get(frontier.pop(), ()):
            if new not in seen:
                seen.add(new)
                frontier.append(new)
    assert seen == set(JobState)
    assert {s for s in JobState if s not in TRANSITIONS} == FINAL
    assert not any(may_transition(s, s) for s in JobState)


# --------------------------------------------------------------------------- ledger


def test_a_released_job_ledgers_every_step_naming_the_operator(
    platform, service, operator, granted
):
    outcome = service.submit(operator, {"sql": RELEASABLE})
    assert outcome.state is JobState.RELEASED, outcome
    entries = _job_entries(platform, outcome.job_id)
    assert [e["action"] for e in entries] == [
        "job.submitted",
        "job.queued",
        "job.running",
        "job.checking",
        "job.released",
    ]
    for entry in entries:
        assert (entry["actor"], entry["role"]) == ("bank", "operator"), entry
        assert entry["article"].startswith("Art. ")
    froms = [e["details"].get("from") for e in entries[1:]]
    assert froms == ["submitted", "queued", "running", "checking"]
    assert entries[0]["details"]["request"] == {"sql": RELEASABLE}
    isolation = entries[3]["details"]["isolation"]
    assert "scrubbed_env" in isolation and "duckdb_external_access_off" in isolation
    if os.geteuid() == 0:
        assert "netns" in isolation
    assert entries[4]["details"]["product"] == outcome.product_id
    with platform.store.read() as conn:
        [release] = ledger.query(conn, action="product.release")
        report = ledger.verify(conn, load_public(platform.public_key_path))
    assert release["actor"] == "bank" and release["subject"] == f"product:{outcome.product_id}"
    assert report.entries >= 6


def test_a_refused_job_ledgers_submitted_and_refused_with_rule_and_article(
    platform, service, operator, granted
):
    outcome = service.submit(operator, {"sql": "SELECT age FROM pums"})
    assert outcome.state is JobState.REFUSED
    assert outcome.reason["rule"] == "row_level" and outcome.reason["article"] == "Art. 15"
    entries = _job_entries(platform, outcome.job_id)
    assert [e["action"] for e in entries] == ["job.submitted", "job.refused"]
    assert all((e["actor"], e["role"]) == ("bank", "operator") for e in entries)
    assert entries[1]["details"]["rule"] == "row_level"
    assert entries[1]["article"] == "Art. 15"


# --------------------------------------------------------------------------- manifest


def test_the_manifest_names_dataset_version_hash_and_grant(
    platform, service, provider, pums_csv, operator, granted, pums_dataset
):
    first = service.submit(operator, {"sql": RELEASABLE})
    # A new classification makes version 2; the next job reads and names it.
    changed = dict(
        PUMS_CLASSIFICATION, columns={**PUMS_CLASSIFICATION["columns"], "race": "public"}
    )
    v2 = vault.register(
        platform, provider, "pums", str(pums_csv), Classification.from_dict(changed)
    ).version
    second = service.submit(operator, {"sql": RELEASABLE})
    public = load_public(platform.public_key_path)
    manifests = [
        verify_product(platform.home / "products" / o.product_id, public) for o in (first, second)
    ]
    for manifest, version in zip(manifests, (pums_dataset, v2), strict=True):
        [dataset] = manifest["datasets"]
        assert dataset == {
            "name": "pums",
            "version": version.version,
            "sha256": version.sha256,
            "rows": 1000,
        }
        assert manifest["grants"] == [granted]
        assert manifest["job"]["operator"] == "bank"
        assert manifest["job"]["sql"]
    assert [m["datasets"][0]["version"] for m in manifests] == [1, 2]
    queued = [e for e in _job_entries(platform, second.job_id) if e["action"] == "job.queued"]
    assert queued[0]["details"]["inputs"] == [
        {"dataset": "pums", "version": 2, "sha256": v2.sha256, "grant": granted}
    ]


# --------------------------------------------------------------------------- grants gate


def test_an_expired_grant_is_refused_under_art_13(
    platform, service, authority, operator, pums_dataset
):
    add_grant(platform, authority, "bank", "pums", start="2020-01-01", until="2021-01-01")
    outcome = service.submit(operator, {"sql": RELEASABLE})
    assert outcome.state is JobState.REFUSED
    assert (outcome.reason["rule"], outcome.reason["article"]) == ("grant_expired", "Art. 13")
    entries = _job_entries(platform, outcome.job_id)
    assert entries[-1]["action"] == "job.refused" and entries[-1]["article"] == "Art. 13"


def test_a_suspended_grant_is_refused_under_art_24_until_restored(
    platform, service, authority, operator, granted
):
    set_grant_status(platform, authority, granted, GrantStatus.SUSPENDED, "quality review")
    outcome = service.submit(operator, {"sql": RELEASABLE})
    assert outcome.state is JobState.REFUSED
    assert (outcome.reason["rule"], outcome.reason["article"]) == ("grant_suspended", "Art. 24")
    with platform.store.read() as conn:
        [entry] = ledger.query(conn, action="grant.suspended")
    assert entry["actor"] == "city" and entry["article"] == "Art. 24"
    set_grant_status(platform, authority, granted, GrantStatus.ACTIVE, "rectified")
    assert service.submit(operator, {"sql": RELEASABLE}).state is JobState.RELEASED


def test_a_dataset_without_a_grant_is_refused_not_granted(
    platform, service, provider, pums_csv, pums_classification, operator, granted
):
    vault.register(platform, provider, "private", str(pums_csv), pums_classification)
    outcome = service.submit(operator, {"sql": "SELECT COUNT(*) AS n FROM private"})
    assert outcome.state is JobState.REFUSED
    assert (outcome.reason["rule"], outcome.reason["article"]) == ("not_granted", "Art. 14")


# --------------------------------------------------------------------------- who may do what


def test_another_operator_cannot_see_the_job(platform, service, make_principal, operator, granted):
    outcome = service.submit(operator, {"sql": "SELECT age FROM pums"})
    rival, _ = make_principal("rival", Role.OPERATOR)
    auditor, _ = make_principal("audit", Role.AUDITOR)
    with pytest.raises(NotFound):
        service.outcome(rival, outcome.job_id)
    with platform.store.read() as conn:
        assert list_jobs(conn, rival) == []
        assert [j["id"] for j in list_jobs(conn, operator)] == [outcome.job_id]
        assert job_outcome(conn, auditor, outcome.job_id).state is JobState.REFUSED
    assert service.outcome(operator, outcome.job_id) == outcome


def test_a_consumer_cannot_submit_and_nothing_is_recorded(
    platform, service, make_principal, pums_dataset
):
    consumer, _ = make_principal("citizen", Role.CONSUMER)
    with platform.store.read() as conn:
        before = ledger.count(conn)
    with pytest.raises(PermissionDenied) as caught:
        service.submit(consumer, {"sql": RELEASABLE})
    assert caught.value.article == "Art. 14"
    with platform.store.read() as conn:
        assert ledger.count(conn) == before
        assert ledger.query(conn, action="job.submitted") == []


def test_withheld_output_never_reaches_products(platform, service, operator, authority, granted):
    seen = service.submit(operator, {"sql": ALL_SMALL})
    assert seen.state is JobState.WITHHELD
    assert seen.product_id is None
    # The operator reads only that it is withheld (issue 17); the authority reads why.
    assert seen.report == withheld_report() and seen.reason is None
    outcome = service.outcome(authority, seen.job_id)
    assert outcome.report["verdict"] == "refused"
    assert list((platform.home / "products").iterdir()) == []
    with platform.store.read() as conn:
        assert list_products(conn, operator) == []
        assert ledger.query(conn, action="product.release") == []
    entries = _job_entries(platform, outcome.job_id)
    assert entries[-1]["action"] == "job.withheld"
    assert entries[-1]["actor"] == "bank"
    # The authority's summary says which rule fired, never the hidden counts.
    text = json.dumps(outcome.report["cells"])
    assert "threshold" in text
    assert '"value"' not in text
