"""Two server hosts on one PostgreSQL store (issue 24): each its own home and ``run/``
folder, the vault, products and keys shared (here: the second home links to the first
home's folders, as hosts mount one shared folder; docs/deploy.md).

Jobs submitted across both hosts each run exactly once (one ``job.running`` entry per
job in the ledger, every job released), the ledger verifies, and one principal's rate
limit holds across both hosts, not once per host; a host killed mid-job leaves the
other serving and the job failed with its reason once its lease runs out.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from api_server import ApiServer, check_envelope, host_grant, make_home, write_persons
from test_api_crash import SLOW_SQL, _big_parquet

from policies.classes import Classification
from sandbox.client import Client
from sandbox.core.platform import Platform
from sandbox.core.principals import authenticate
from sandbox.data import vault

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS = 24
RATE = 120  # api.rate_per_minute on both hosts
SHARED = ("keys", "vault", "products", "held", "numbers", "verify", "psi", "psi-count", "models")
QUERIES = (
    "SELECT county, COUNT(*) AS n FROM persons GROUP BY county",
    "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM persons GROUP BY sex",
)


def _two_homes(tmp_path, pg_url, monkeypatch, extra: str = "", big: bool = False):
    settings = f'[api]\nrate_per_minute = {RATE}\n\n[store]\nurl = "{pg_url}"\n{extra}'
    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)  # for make_home, in this process
    first = tmp_path / "host-a"
    tokens = make_home(first, settings)
    platform = Platform.open(first)
    with platform.store.read() as conn:
        provider = authenticate(conn, tokens["provider"])
    csv, yaml_path = write_persons(tmp_path / "data")
    vault.register(platform, provider, "persons", str(csv), vault.load_classification(yaml_path))
    if big:
        _big_parquet(tmp_path / "big.parquet")
        classes = {"pid": "identifier", "county": "dimension", "sex": "dimension"}
        classification = {"entity_key": "pid", "columns": {**classes, "income": "measure"}}
        vault.register(
            platform,
            provider,
            "big",
            str(tmp_path / "big.parquet"),
            Classification.from_dict(classification),
        )
    platform.close()
    host_grant(first, "operator", "persons")
    if big:
        host_grant(first, "operator", "big")
    monkeypatch.delenv("SANDBOX_STORE_URL")  # the servers read it from their sandbox.toml
    second = tmp_path / "host-b"
    second.mkdir(mode=0o700)
    for name in SHARED:
        (first / name).mkdir(mode=0o700, exist_ok=True)
        (second / name).symlink_to(first / name)
    (second / "sandbox.toml").write_text(settings, encoding="utf-8")
    return first, second, tokens


def test_two_hosts_run_each_job_once_share_the_ledger_and_the_rate(tmp_path, pg_url, monkeypatch):
    first, second, tokens = _two_homes(tmp_path, pg_url, monkeypatch)
    hosts = [ApiServer(first), ApiServer(second)]
    try:
        for host in hosts:
            host.start(timeout=90)
        operators = [Client(h.url, tokens["operator"], hooks=[check_envelope]) for h in hosts]
        submitted = [
            operators[i % 2].submit_job(QUERIES[i % len(QUERIES)]).job for i in range(JOBS)
        ]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            states = {j.id: j.state for j in operators[0].list_jobs()}
            if all(states.get(j) in ("released", "withheld", "failed") for j in submitted):
                break
            time.sleep(2)
        assert all(states[j] == "released" for j in submitted), (states, hosts[0].log())

        auditor = Client(hosts[1].url, tokens["auditor"], hooks=[check_envelope])
        running = Counter(
            e.subject for e in auditor.ledger(action="job.running") if e.subject.startswith("job:")
        )
        assert running == Counter({f"job:{j}": 1 for j in submitted})
        report = auditor.verify_ledger()
        assert report.entries == report.head_seq > JOBS * 4

        # One bucket for the consumer across both hosts: a minute's allowance (plus what
        # refills meanwhile), not one allowance per host.
        allowed, refused = Counter(), Counter()
        began = time.monotonic()
        with httpx.Client(timeout=30) as http:
            for i in range(RATE + 80):
                host = hosts[i % 2]
                answer = http.get(
                    host.url + "/v1/me", headers={"Authorization": f"Bearer {tokens['consumer']}"}
                )
                assert answer.status_code in (200, 429), answer.text
                (allowed if answer.status_code == 200 else refused)[i % 2] += 1
        refill = (time.monotonic() - began) * RATE / 60
        assert RATE <= sum(allowed.values()) <= RATE + refill + 1, (allowed, refill)
        assert refused[0] > 0 and refused[1] > 0
    finally:
        for host in hosts:
            host.stop()


def _runner_of(pg_url: str, job: int, hosts: list[ApiServer]) -> int:
    """Which of ``hosts`` claimed ``job``: the process named on it (``job_hosts``)."""
    from sqlalchemy import create_engine, select

    from sandbox.run.tables import job_hosts

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            host = conn.execute(select(job_hosts.c.host).where(job_hosts.c.job_id == job)).scalar()
    finally:
        engine.dispose()
    pids = [h.proc.pid if h.proc else None for h in hosts]
    return pids.index(int(host.split(":")[1]))


def test_a_host_killed_mid_job_leaves_the_other_serving_and_the_job_failed(
    tmp_path, pg_url, monkeypatch
):
    """kill -9 of the host running a job: the other host, which left the job alone while
    its host's lease was alive, fails it as interrupted once the lease runs out,
    releases nothing of it, and runs new work."""
    extra = "host_lease_s = 3\n\n[job]\nthreads = 1\nspare_worker = false\n"
    first, second, tokens = _two_homes(tmp_path, pg_url, monkeypatch, extra, big=True)
    hosts = [ApiServer(first), ApiServer(second)]
    try:
        for host in hosts:
            host.start(timeout=90)
        clients = [Client(h.url, tokens["operator"], hooks=[check_envelope]) for h in hosts]
        job = clients[0].submit_job(SLOW_SQL).job
        deadline = time.monotonic() + 60
        while clients[0].job(job).state == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert clients[0].job(job).state == "running", hosts[0].log()
        runner = _runner_of(pg_url, job, hosts)
        survivor = hosts[1 - runner]
        on_survivor = clients[1 - runner]
        hosts[runner].kill()
        deadline = time.monotonic() + 60
        while on_survivor.job(job).state == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        after = on_survivor.job(job)
        assert after.state == "failed", survivor.log()
        assert after.reason["code"] == "interrupted" and "heartbeat" in after.reason["message"]
        assert after.product is None
        small = on_survivor.submit_job(QUERIES[0])
        assert on_survivor.wait_job(small.job, timeout=120).state == "released"
        auditor = Client(survivor.url, tokens["auditor"], hooks=[check_envelope])
        actions = [e.action for e in auditor.ledger(subject=f"job:{job}")]
        assert actions[-1] == "job.failed" and "job.released" not in actions
        report = auditor.verify_ledger()
        assert report.entries == report.head_seq
    finally:
        for host in hosts:
            host.stop()
