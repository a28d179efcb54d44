"""Faults: the server killed mid-registration and mid-release, the disk full mid-ingestion
and mid-release. After each: no half dataset, no half product, no product without its
manifest, the ledger verifies, and the platform answers the next request.

The kills are real SIGKILLs at named points (``SANDBOX_TEST_FAULTS=kill@<point>``,
read by :mod:`sandbox.core.storage` only in the process that gets it). The full
disk during ingestion is a real 2 MiB tmpfs holding the platform home
(needs root); the full disk during release is ``ENOSPC`` injected at the
storage seam (``enospc@release.write``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from api_server import ROOT, ApiServer, check_envelope, make_home, write_persons

from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import authenticate
from sandbox.core.store import dataset_versions, datasets, products
from sandbox.data import vault
from sandbox.data.backup import verify_home
from sandbox.data.grants import add_grant
from sandbox.run import isolation
from sandbox.run.execution import JobService

SETTINGS = "[job]\nspare_worker = false\n"
NEXT_SQL = "SELECT county, COUNT(*) AS n FROM persons GROUP BY county"


def _home_with_persons(tmp_path: Path, *, grant: bool = True) -> tuple[Path, dict, Path, Path]:
    home = tmp_path / "home"
    tokens = make_home(home, SETTINGS)
    csv, yaml_path = write_persons(tmp_path / "src")
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = authenticate(conn, tokens["provider"])
            authority = authenticate(conn, tokens["authority"])
        vault.register(
            platform, provider, "persons", str(csv), vault.load_classification(yaml_path)
        )
        if grant:
            add_grant(platform, authority, "operator", "persons", until="2099-12-31")
    finally:
        platform.close()
    return home, tokens, csv, yaml_path


def _assert_whole(home: Path) -> None:
    """Nothing half: every file is recorded, every record has its file, all verify."""
    platform = Platform.open(home)
    try:
        verify_home(platform)  # the ledger, every product (manifest + signature), every snapshot
        with platform.store.read() as conn:
            snaps = {r for r in conn.execute(dataset_versions.select()).mappings()}
            known_products = {r.id for r in conn.execute(products.select())}
        on_disk = {p.relative_to(home).as_posix() for p in (home / "vault").rglob("*.parquet")}
        assert on_disk == {s["path"] for s in snaps}, "a snapshot no version records"
        folders = {p.name for p in (home / "products").iterdir()}
        assert folders == known_products, "a product folder the store does not record"
        assert list((home / "tmp").glob("*.placing")) == []
    finally:
        platform.close()


def _dataset_names(home: Path) -> list[str]:
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            return [r.name for r in conn.execute(datasets.select())]
    finally:
        platform.close()


def _client(server: ApiServer, token: str):
    from sandbox.client import Client

    return Client(server.url, token, hooks=[check_envelope])


def _wait_dead(server: ApiServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while server.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.proc.returncode == -9, server.log()
    server.kill()  # collects the dead server and any worker it left


@pytest.mark.slow
def test_sigkill_of_the_server_during_a_registration(tmp_path):
    home, tokens, csv, yaml_path = _home_with_persons(tmp_path)
    server = ApiServer(home, env={"SANDBOX_TEST_FAULTS": "kill@vault.placed"}).start()
    try:
        provider = _client(server, tokens["provider"])
        extra = tmp_path / "extra.csv"
        extra.write_text(csv.read_text().replace("P0", "Q0"))
        with pytest.raises(Exception):  # noqa: B017  (the connection dies with the server)
            provider.register_upload("extra", extra, yaml_path)
        _wait_dead(server)
        # The snapshot was renamed into the vault; its commit never came.
        assert len(list((home / "vault").rglob("*.parquet"))) == 2
        server.env = {}
        server.start()
        _assert_whole(home)
        assert _dataset_names(home) == ["persons"]
        provider = _client(server, tokens["provider"])
        again = provider.register_upload("extra", extra, yaml_path)
        assert again.version == 1 and again.changed
        auditor = _client(server, tokens["auditor"])
        assert auditor.verify_ledger().entries > 0
    finally:
        server.stop()
    _assert_whole(home)


@pytest.mark.slow
def test_sigkill_of_the_server_during_a_release(tmp_path):
    home, tokens, _, _ = _home_with_persons(tmp_path)
    server = ApiServer(home, env={"SANDBOX_TEST_FAULTS": "kill@release.placed"}).start()
    try:
        op = _client(server, tokens["operator"])
        job = op.submit_job(NEXT_SQL)
        _wait_dead(server)
        assert (home / "products" / f"prod-{job.job:06d}").exists(), "killed after the rename"
        server.env = {}
        server.start()
        _assert_whole(home)
        op = _client(server, tokens["operator"])
        after = op.job(job.job)
        assert after.state == "failed" and after.reason["code"] == "interrupted", after
        assert after.product is None and op.list_products() == []
        nxt = op.submit_job(NEXT_SQL)
        assert op.wait_job(nxt.job, timeout=60).state == "released"
        auditor = _client(server, tokens["auditor"])
        actions = [e.action for e in auditor.ledger(subject=f"job:{job.job}")]
        assert "job.released" not in actions and actions[-1] == "job.failed"
    finally:
        server.stop()
    _assert_whole(home)


def test_a_kill_between_rename_and_commit_leaves_nothing_after_reopen(tmp_path):
    """The same crash without a server: the CLI registering, killed at the same point."""
    home, tokens, csv, yaml_path = _home_with_persons(tmp_path, grant=False)
    other = tmp_path / "other.csv"
    other.write_text(csv.read_text().replace("P0", "R0"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SANDBOX_TEST_FAULTS": "kill@vault.placed",
        "SANDBOX_TOKEN": tokens["provider"],
    }
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "--home", str(home), "dataset", "register", "other",
         "--source", str(other), "--classification", str(yaml_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr
    assert len(list((home / "tmp").glob("*.placing"))) == 1
    _assert_whole(home)  # opening the platform settles the dead process's intent
    assert _dataset_names(home) == ["persons"]


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_ingestion(small_disk, tmp_path):
    home = small_disk / "home"
    tokens = make_home(home, SETTINGS)
    rng = np.random.default_rng(3)
    rows = 100_000
    big = tmp_path / "big.csv"  # about 6 MB of incompressible text: more than the disk holds
    pacsv.write_csv(
        pa.table(
            {
                "pid": [f"P{i:07d}" for i in range(rows)],
                "county": (rng.integers(0, 4, rows) + 370801).astype(str),
                "note": [os.urandom(32).hex() for _ in range(rows)],
            }
        ),
        big,
    )
    classes = vault.Classification.from_dict(
        {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension",
                                         "note": "identifier"}}
    )  # fmt: skip
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = authenticate(conn, tokens["provider"])
        with pytest.raises(vault.SandboxError) as caught:
            vault.register(platform, provider, "big", str(big), classes)
        assert caught.value.code == "disk_full", caught.value
        assert "disk is full" in caught.value.message and "free space" in caught.value.message
        assert list((home / "tmp").iterdir()) == [], "the half-written snapshot is gone"
        assert list((home / "vault").rglob("*.parquet")) == []
        # The platform keeps serving: a small dataset still fits.
        csv, yaml_path = write_persons(tmp_path / "small", rows=200)
        result = vault.register(
            platform, provider, "persons", str(csv), vault.load_classification(yaml_path)
        )
        assert result.version.version == 1
        with platform.store.read() as conn:
            ledger.verify(conn, platform.key.public_key())
    finally:
        platform.close()
    _assert_whole(home)
    assert _dataset_names(home) == ["persons"]


def test_a_full_disk_during_release(tmp_path):
    home, tokens, _, _ = _home_with_persons(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SANDBOX_TEST_FAULTS": "enospc@release.write",
        "SANDBOX_TOKEN": tokens["operator"],
    }
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "--home", str(home), "job", "submit", "--sql", "-",
         "--json"],
        input=NEXT_SQL, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["state"] == "failed", outcome
    reason = outcome["reason"]
    assert reason["code"] == "disk_full" and "disk is full" in reason["message"], reason
    assert list((home / "products").iterdir()) == []
    _assert_whole(home)
    platform = Platform.open(home)
    service = JobService(platform, spare=False)
    try:
        with platform.store.read() as conn:
            operator = authenticate(conn, tokens["operator"])
        outcome = service.submit(operator, {"sql": NEXT_SQL})
        assert outcome.state.value == "released"
        with platform.store.read() as conn:
            [entry] = ledger.query(conn, subject=f"job:{outcome.job_id}", action="job.checking")
    finally:
        service.close()
        platform.close()
    _assert_whole(home)
    # The job's ledger entry names the isolation layers that were in force.
    layers = set(entry["details"]["isolation"])
    assert {"rlimit_as", "duckdb_external_access_off", "scrubbed_env"} <= layers, layers
    if os.geteuid() == 0 and isolation.landlock_abi() >= 6:
        assert {"netns", "seccomp", "landlock_fs", "landlock_scope"} <= layers, layers
