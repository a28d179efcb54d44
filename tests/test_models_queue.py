"""A model's training is a job of the queue (kind ``model_train``, issue 22): filed,
admitted, pinned to its dataset versions, claimed once, and its end written with the
card; over HTTP ``?wait=false`` leaves it to the server's executor."""

from __future__ import annotations

import json

import httpx
import pyarrow.parquet as pq
import pytest
from api_server import ApiServer
from model_helpers import CLASSIFICATION, DATASET, FEATURES, SOUND, credit_table, make_world

from policies.classes import Classification
from policies.errors import JobFailed, PolicyRefusal
from sandbox.client import Client
from sandbox.core import ledger, principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Status
from sandbox.core.store import jobs
from sandbox.data import vault
from sandbox.models import service, training
from sandbox.run.execution import JobService
from sandbox.run.jobstate import job_outcome, list_jobs


@pytest.fixture
def world(platform, make_principal, tmp_path):
    return make_world(platform, make_principal, tmp_path / "data")


def _job(platform, job_id):
    with platform.store.read() as conn:
        return conn.execute(jobs.select().where(jobs.c.id == job_id)).one()


def _states(platform, job_id):
    with platform.store.read() as conn:
        entries = ledger.query(conn, subject=f"job:{job_id}")
    return [e["action"] for e in entries]


def test_a_training_is_a_job_whose_end_is_written_with_its_card(world):
    platform = world.platform
    out = training.train(platform, world.operator, SOUND)
    row = _job(platform, out["job_id"])
    assert (row.kind, row.status) == ("model_train", "released")
    report = json.loads(row.report_json)
    assert report == {
        "model": SOUND["name"],
        "verdict": "passed",
        "card_sha256": out["card_sha256"],
    }
    assert _states(platform, out["job_id"]) == [
        "job.submitted", "job.queued", "job.running", "job.checking", "job.released",
    ]  # fmt: skip
    assert json.loads(row.inputs_json)[0]["dataset"] == DATASET
    # the operator reads its job as it is: the model's name, verdict and card hash
    with platform.store.read() as conn:
        seen = job_outcome(conn, world.operator, out["job_id"])
        listed = list_jobs(conn, world.operator)
    assert seen.report == report
    assert [(j["id"], j["kind"], j["state"]) for j in listed] == [
        (out["job_id"], "model_train", "released")
    ]
    assert service.show(platform, world.operator, SOUND["name"])["card"] == out["card"]


def test_refusal_and_failure_end_the_job_and_keep_no_model(world):
    platform = world.platform
    with pytest.raises(PolicyRefusal) as refused:
        training.train(platform, world.operator, {**SOUND, "params": {"min_samples_leaf": 3}})
    assert refused.value.rule == "leaf_size"
    bad = {
        **SOUND,
        "name": "bad_label",
        "features": FEATURES.replace("MAX(defaulted)", "MAX(staff)"),
    }
    with pytest.raises(JobFailed) as failed:
        training.train(platform, world.operator, bad)
    assert failed.value.code == "label_values"
    with platform.store.read() as conn:
        rows = conn.execute(jobs.select().order_by(jobs.c.id)).all()
    assert [(r.status, json.loads(r.reason_json).get("rule") or json.loads(r.reason_json)["code"])
            for r in rows] == [("refused", "leaf_size"), ("failed", "label_values")]  # fmt: skip
    assert service.list_models(platform, world.operator) == []


def test_a_queued_training_runs_on_the_versions_it_was_admitted_against(world, tmp_path):
    platform = world.platform
    job_id = training.enqueue(platform, world.operator, SOUND)
    assert _job(platform, job_id).status == "queued"
    # a new version of the dataset arrives while the job waits
    path = tmp_path / "v2.parquet"
    pq.write_table(credit_table(3000, seed=9), path)
    classification = Classification.from_dict(CLASSIFICATION)
    assert (
        vault.register(platform, world.provider, DATASET, str(path), classification).version.version
        == 2
    )
    # the SQL jobs' path does not claim it: it stays queued for its own
    jobs_path = JobService(platform, spare=False)  # no spare worker left behind
    try:
        assert jobs_path.run(job_id) is None
    finally:
        jobs_path.close()
    assert _job(platform, job_id).status == "queued"
    card, error = training.run(platform, job_id)
    assert error is None and card is not None
    assert card["card"]["datasets"] == {DATASET: 1}
    assert training.run(platform, job_id) == (None, None)  # claimed once


def test_a_deactivated_operators_queued_training_fails_and_keeps_nothing(world):
    platform = world.platform
    job_id = training.enqueue(platform, world.operator, SOUND)
    principals.set_status(platform, None, world.operator.name, Status.DEACTIVATED, "licence ended")
    card, error = training.run(platform, job_id)
    assert card is None and error is not None
    row = _job(platform, job_id)
    assert row.status == "failed" and json.loads(row.reason_json)["code"] == error.code
    assert training.run(platform, job_id) == (None, None)
    assert service.list_models(platform, world.auditor) == []


@pytest.mark.slow
def test_over_http_wait_false_queues_the_job_for_the_servers_executor(tmp_path, api_store):
    if api_store is not None:  # the server's executor claims the job from PostgreSQL
        (tmp_path / "home").mkdir(mode=0o700)
        settings = f'[store]\nurl = "{api_store}"\n'
        (tmp_path / "home" / "sandbox.toml").write_text(settings, encoding="utf-8")
    platform = Platform.init(tmp_path / "home")

    def make(name, role, *, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(platform, make, tmp_path / "data")
    platform.close()
    with ApiServer(tmp_path / "home") as server:
        with Client(server.url, world.tokens["bank"]) as api:
            queued = api.queue_model(**SOUND)
            assert (queued.state, queued.model) == ("queued", SOUND["name"])
            ended = api.wait_job(queued.job, timeout=300)
            assert ended.state == "released", ended
            card = api.model(SOUND["name"])["card"]
            assert ended.report["verdict"] == card["verdict"] == "passed"
        headers = {"Authorization": f"Bearer {world.tokens['bank']}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            # a second training under the same name is refused at once, not queued
            again = http.post("/v1/models", params={"wait": "false"}, json=SOUND)
            assert again.status_code == 409, again.text
            listed = http.get("/v1/jobs").json()
            assert [(j["kind"], j["state"]) for j in listed] == [("model_train", "released")]
