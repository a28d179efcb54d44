"""SIGKILL of the server during a job: after the restart the job is failed with its
reason, nothing of it was released, the ledger verifies, and the queue runs on.

The job is made slow by its data: 3 million generated rows and a COUNT(DISTINCT)
on one DuckDB thread (several seconds), so the kill lands while it is
``running``. The dataset is registered in-process (the crash, not the upload,
is under test).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from api_server import ApiServer, check_envelope, make_home, write_persons

from policies.classes import Classification
from sandbox.client import Client
from sandbox.core.platform import Platform
from sandbox.core.principals import authenticate
from sandbox.data import vault
from sandbox.data.grants import add_grant

ROWS = 3_000_000
SLOW_SQL = (
    "SELECT county, sex, COUNT(DISTINCT pid) AS n, SUM(income) AS s, AVG(income) AS a "
    "FROM big GROUP BY county, sex"
)


def _big_parquet(path):
    idx = np.arange(ROWS)
    table = pa.table(
        {
            "pid": pa.array(np.char.add("P", idx.astype("U8"))),
            "county": pa.array((idx % 11 + 370801).astype(str)),
            "sex": pa.array(np.where(idx % 2 == 0, "F", "M")),
            "income": pa.array(np.random.default_rng(1).integers(0, 100_000, ROWS)),
        }
    )
    pq.write_table(table, path)


@pytest.mark.slow
def test_sigkill_during_a_job_fails_it_and_releases_nothing(tmp_path):
    home = tmp_path / "home"
    tokens = make_home(home, "[job]\nthreads = 1\nspare_worker = false\n")
    _big_parquet(tmp_path / "big.parquet")
    platform = Platform.open(home)
    with platform.store.read() as conn:
        provider = authenticate(conn, tokens["provider"])
        authority = authenticate(conn, tokens["authority"])
    classes = {"pid": "identifier", "county": "dimension", "sex": "dimension", "income": "measure"}
    vault.register(
        platform,
        provider,
        "big",
        str(tmp_path / "big.parquet"),
        Classification.from_dict({"entity_key": "pid", "columns": classes}),
    )
    csv, yaml_path = write_persons(tmp_path / "small")
    vault.register(platform, provider, "persons", str(csv), vault.load_classification(yaml_path))
    for name in ("big", "persons"):
        add_grant(platform, authority, "operator", name, until="2099-12-31")
    platform.close()

    server = ApiServer(home).start()
    try:
        op = Client(server.url, tokens["operator"], hooks=[check_envelope])
        job = op.submit_job(SLOW_SQL)
        deadline = time.monotonic() + 30
        while op.job(job.job).state == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert op.job(job.job).state == "running", server.log()
        time.sleep(0.5)
        server.kill()
        op.close()

        server.start()
        op = Client(server.url, tokens["operator"], hooks=[check_envelope])
        after = op.job(job.job)
        assert after.state == "failed"
        assert after.reason["code"] == "interrupted" and after.reason["article"] == "Art. 8"
        assert after.product is None
        assert op.list_products() == []
        assert not (home / "products" / f"prod-{job.job:06d}").exists()
        auditor = Client(server.url, tokens["auditor"], hooks=[check_envelope])
        actions = [e.action for e in auditor.ledger(subject=f"job:{job.job}")]
        assert actions[-1] == "job.failed" and "job.released" not in actions
        assert auditor.verify_ledger().entries == auditor.verify_ledger().head_seq
        # The restarted server's executor runs new work.
        small = op.submit_job("SELECT county, COUNT(*) AS n FROM persons GROUP BY county")
        assert op.wait_job(small.job, timeout=60).state == "released"
        assert auditor.verify_ledger().entries > 0
    finally:
        server.stop()
