"""``sandbox backup`` and ``sandbox restore``: a consistent copy, restored into an empty home,
verifies its ledger, its products and its snapshots, and runs the next job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_server import ROOT, make_home, write_persons

from policies.errors import ConfigError, IntegrityError
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import authenticate
from sandbox.data import vault
from sandbox.data.backup import backup, check_backup, restore, verify_home
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService

SQL = "SELECT county, COUNT(*) AS n FROM persons GROUP BY county"


@pytest.fixture
def home(template, tmp_path) -> tuple[Path, dict]:
    """A copy of the template home, for one test to change."""
    source, tokens = template
    shutil.copytree(source, tmp_path / "home")
    return tmp_path / "home", tokens


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """A home with a dataset, a grant and one released product."""
    tmp_path = tmp_path_factory.mktemp("backup")
    home = tmp_path / "home"
    tokens = make_home(home, "[job]\nspare_worker = false\n")
    csv, yaml_path = write_persons(tmp_path / "src", rows=400)
    platform = Platform.open(home)
    service = JobService(platform, spare=False)
    try:
        with platform.store.read() as conn:
            provider = authenticate(conn, tokens["provider"])
            authority = authenticate(conn, tokens["authority"])
            operator = authenticate(conn, tokens["operator"])
        vault.register(
            platform, provider, "persons", str(csv), vault.load_classification(yaml_path)
        )
        add_grant(platform, authority, "operator", "persons", until="2099-12-31")
        assert service.submit(operator, {"sql": SQL}).state.value == "released"
    finally:
        service.close()
        platform.close()
    return home, tokens


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SANDBOX_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "--home", str(home), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_backup_and_restore_through_the_cli(home, tmp_path):
    source, tokens = home
    done = _cli(source, "backup", str(tmp_path / "bk"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["datasets"] == 1 and report["products"] == 1 and report["ledger_entries"] > 5
    target = tmp_path / "restored"
    done = _cli(target, "restore", str(tmp_path / "bk"), "--json")
    assert done.returncode == 0, done.stderr
    restored = json.loads(done.stdout)
    assert restored["snapshots"] == 1 and restored["products"] == 1
    assert restored["ledger_entries"] == report["ledger_entries"]
    assert (target / "keys" / "platform.key").stat().st_mode & 0o777 == 0o600
    platform = Platform.open(target)
    service = JobService(platform, spare=False)
    try:
        check = verify_home(platform)
        assert check.ledger_entries == report["ledger_entries"] + 1  # plus platform.restore
        with platform.store.read() as conn:
            assert ledger.query(conn, action="platform.restore")
            operator = authenticate(conn, tokens["operator"])  # the principals came along
        assert service.submit(operator, {"sql": SQL}).state.value == "released"
    finally:
        service.close()
        platform.close()


def test_a_backup_taken_while_the_platform_writes_is_consistent(home, tmp_path):
    source, _ = home
    platform = Platform.open(source)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            with platform.store.transaction() as conn:
                platform.record(conn, ledger.SYSTEM, "test.tick", "platform", {}, "Art. 7")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # A snapshot placed after the store copy: its version is not in the copy.
        stray = source / "vault" / "ff" / ("f" * 64 + ".parquet")
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"not yet recorded")
        report = backup(platform, tmp_path / "bk")
    finally:
        stop.set()
        thread.join()
        platform.close()
    assert not (tmp_path / "bk" / "vault" / "ff").exists()
    check = restore(tmp_path / "bk", tmp_path / "restored")
    assert check.ledger_entries == report.ledger_entries


def test_restore_refuses_a_home_that_is_not_empty(home, tmp_path):
    source, _ = home
    with _opened(source) as platform:
        backup(platform, tmp_path / "bk")
    with pytest.raises(ConfigError, match="not empty"):
        restore(tmp_path / "bk", source)
    with _opened(source) as platform, pytest.raises(ConfigError, match="not empty"):
        backup(platform, tmp_path / "bk")


def test_a_damaged_backup_is_refused_and_nothing_is_restored(home, tmp_path):
    source, _ = home
    with _opened(source) as platform:
        backup(platform, tmp_path / "bk")
    check_backup(tmp_path / "bk")
    [snapshot] = (tmp_path / "bk" / "vault").rglob("*.parquet")
    snapshot.write_bytes(snapshot.read_bytes()[:-10] + b"0123456789")
    target = tmp_path / "restored"
    with pytest.raises(IntegrityError, match="changed after the backup"):
        restore(tmp_path / "bk", target)
    assert not target.exists()


def test_a_product_damaged_in_the_home_is_found_when_backing_up(home, tmp_path):
    source, _ = home
    [csv] = (source / "products").rglob("output.csv")
    csv.write_text(csv.read_text() + "370801,999\n")
    with _opened(source) as platform, pytest.raises(IntegrityError, match="changed after release"):
        backup(platform, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bk")] == []


@contextmanager
def _opened(home: Path) -> Iterator[Platform]:
    platform = Platform.open(home)
    try:
        yield platform
    finally:
        platform.close()
