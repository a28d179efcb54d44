"""Work on Ray equals work in local processes: PSI set-up shards, HE group-sum shares,
and whole SQL jobs dispatched as Ray tasks (every admitted golden case); an unreachable
cluster, a port that is not Ray and a lost Ray worker become platform errors.

One local Ray cluster (2 CPUs) serves the module and is shut down at its end.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import private_set_intersection.python as psi_lib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from jobs.he_aggregate import Scheme
from policies.errors import ConfigError, JobFailed, SandboxError
from sandbox.client import he as client_he
from sandbox.core.store import jobs
from sandbox.he import evaluate as he
from sandbox.psi.setup import SetupSpec, build_bundle
from sandbox.run.engines import ray_pool
from sandbox.run.jobstate import JobState
from tests.psi_helpers import firm_code
from tests.ray_helpers import crash, negate
from tests.test_job_golden import CASES, GoldenPlatform

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

ADMITTED = [c for c in CASES if c.outcome != "refused"]


@pytest.fixture(scope="module")
def cluster():
    ray_pool.connect(ray_pool.LOCAL)
    yield ray_pool.LOCAL
    ray_pool.shutdown()


def test_psi_setup_on_ray_equals_local_processes(cluster, tmp_path):
    items = [firm_code(i) for i in range(400)]
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"code": items}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("s", 1, "code", None, 0, "raw", 1e-9, 1000)
    serial, _ = build_bundle(key, spec, path, 1)
    local, _ = build_bundle(key, spec, path, 2)
    on_ray, meta = build_bundle(key, spec, path, 2, cluster)
    assert serial == local == on_ray and meta["items"] == 400


def _decrypt(ctx, answer: bytes) -> list[int]:
    import tenseal.sealapi as sa

    seal = ctx.seal_context().data
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "answer.bin"
        target.write_bytes(answer)
        ct = sa.Ciphertext()
        ct.load(seal, str(target))
    plain = sa.Plaintext()
    sa.Decryptor(seal, ctx.secret_key().data).decrypt(ct, plain)
    return sa.BatchEncoder(seal).decode_int64(plain)


def test_he_group_sums_on_ray_equal_local_processes(cluster, tmp_path):
    ctx = client_he.make_context("bfv")
    rng = np.random.default_rng(5)
    values = rng.integers(0, 100, 300).tolist()
    labels = rng.integers(0, 3, 300).astype(np.int32)
    labels[::50] = -1  # unmatched entries count in no group
    ciphertexts = client_he.encrypt_values(ctx, values, Scheme.BFV)
    public = client_he.public_context(ctx)
    answers = []
    for name, address in (("local", ""), ("ray", cluster)):
        work = tmp_path / name
        work.mkdir()
        answer, _ = he.evaluate(
            work, public, ciphertexts, labels, 3, Scheme.BFV, 2, 60.0, 4096, address
        )
        answers.append(_decrypt(ctx, answer)[:3])
    expected = [sum(v for v, g in zip(values, labels, strict=True) if g == k) for k in range(3)]
    assert answers[0] == answers[1] == expected


# --- whole SQL jobs dispatched as Ray tasks (ray.dispatch_jobs) ------------------------


def _golden(home: Path, address: str | None = None) -> GoldenPlatform:
    """A golden platform; with ``address``, SQL job workers are dispatched to Ray there."""
    ray = f'[ray]\naddress = "{address}"\ndispatch_jobs = true\n' if address else ""
    return GoldenPlatform(home, ray)


@pytest.fixture(scope="module")
def goldens(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-jobs")
    local = _golden(root / "local")
    on_ray = _golden(root / "ray", cluster)
    assert on_ray.platform.settings.ray.dispatch_jobs is True
    yield local, on_ray
    local.close()
    on_ray.close()


def _summary(outcome) -> tuple:
    """What the check decided of a job: state, reason code, verdict, counts, cells."""
    report = outcome.report or {}
    # Rows carry no order without ORDER BY (DuckDB runs on two threads): cells are
    # compared as a multiset, and released rows below as sorted rows.
    cells = sorted(
        (c["column"], c["verdict"], tuple(c.get("rules", ()))) for c in report.get("cells", [])
    )
    reason = (outcome.reason or {}).get("code")
    return outcome.state, reason, report.get("verdict"), report.get("counts"), cells


@pytest.mark.parametrize("case", ADMITTED, ids=[f"L{c.line}-{c.name}" for c in ADMITTED])
def test_sql_job_dispatched_to_ray_equals_local_worker(goldens, case):
    local, on_ray = goldens
    here = local.service.submit(local.operator(case), {"sql": case.sql})
    there = on_ray.service.submit(on_ray.operator(case), {"sql": case.sql})
    # The authority's view: the whole check report (the operator's names no rules).
    here = local.service.outcome(local.authority, here.job_id)
    there = on_ray.service.outcome(on_ray.authority, there.job_id)
    assert _summary(there) == _summary(here)
    if here.product_id:
        mine, theirs = _rows(local, here.product_id), _rows(on_ray, there.product_id)
        assert len(theirs) == len(mine)
        for a, b in zip(theirs, mine, strict=True):  # floating sums: the last bits may differ
            assert [n for n, _ in a] == [n for n, _ in b]
            for (_, x), (_, y) in zip(a, b, strict=True):
                assert x == pytest.approx(y, rel=1e-12) if isinstance(x, float) else x == y
    runtime, local_runtime = _runtime(on_ray, there.job_id), _runtime(local, here.job_id)
    assert runtime.get("dispatch") == "ray", runtime
    if case.outcome == "failed":  # the worker's refusal came back through Ray unchanged
        assert there.reason["code"] == case.rules[0], there.reason
        return
    assert runtime.get("node"), runtime
    # The task started the same isolated worker, with the same layers, as the host does.
    assert runtime["layers"] == local_runtime["layers"], (runtime, local_runtime)
    assert {"seccomp", "scrubbed_env", "duckdb_external_access_off"} <= set(runtime["layers"])


def _rows(golden: GoldenPlatform, product_id: str) -> list[tuple]:
    table = pq.read_table(golden.platform.home / "products" / product_id / "output.parquet")
    return sorted((tuple(row.items()) for row in table.to_pylist()), key=repr)


def _runtime(golden: GoldenPlatform, job_id: int) -> dict:
    with golden.platform.store.read() as conn:
        row = conn.execute(select(jobs.c.runtime_json).where(jobs.c.id == job_id)).first()
    return json.loads(row.runtime_json or "{}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_ray_cluster_fails_the_job_quickly_and_releases_nothing(goldens, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    platform = _golden(tmp_path / "home", address)
    try:
        case = next(c for c in ADMITTED if c.outcome == "released")
        started = time.monotonic()
        outcome = platform.service.submit(platform.operator(case), {"sql": case.sql})
        assert time.monotonic() - started < 30
        assert outcome.state is JobState.FAILED, outcome
        assert outcome.reason["code"] == "engine_unavailable", outcome.reason
        assert "ray.address" in outcome.reason["message"]
        assert address in outcome.reason["message"]
        assert outcome.product_id is None
        assert not list((platform.platform.home / "products").glob("*"))
    finally:
        platform.close()
    # The module's own cluster was left alone by the failed join.
    assert ray_pool.ray_map(negate, [(3,)], ray_pool.LOCAL, what="a check") == [-3]


def test_a_port_that_is_not_ray_is_refused_within_the_connect_timeout(cluster):
    with socket.socket() as listener:  # accepts connections, never speaks Ray
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(SandboxError) as caught:
            ray_pool.connect(address, timeout_s=3.0)
    assert time.monotonic() - started < 15
    assert caught.value.code == "engine_unavailable"
    assert "no answer within 3 s" in caught.value.message


def test_a_lost_ray_worker_fails_the_work_as_engine_lost(cluster):
    with pytest.raises(JobFailed) as caught:
        ray_pool.ray_map(crash, [(1,)], cluster, what="the test work")
    assert caught.value.code == "engine_lost", caught.value
    assert "the test work failed" in caught.value.message


def test_dispatching_jobs_without_a_ray_cluster_is_a_configuration_error(tmp_path):
    from sandbox.core.settings import Settings

    with pytest.raises(ConfigError) as caught:
        Settings.load(tmp_path, {"SANDBOX_RAY_DISPATCH_JOBS": "true"})
    assert "ray.address" in str(caught.value)
    assert "SANDBOX_RAY_DISPATCH_JOBS" in str(caught.value)
