"""Three findings of the outside security probe (issue 19), each tried through the real interface.

1. A suspended agreement stops every read of its products: the API's product routes
   (list, manifest, one file, the zip) and ``sandbox --server URL product get`` refuse
   as the host's ``sandbox product get`` does, with the same code, rule and article.
2. A PSI chunk sent to a session that is not the caller's (or does not exist) is
   refused before its body is read: the same ``not_found`` whatever the body holds.
3. The ledger cannot be emptied or rolled back to an older signed head unnoticed:
   ``sandbox ledger verify`` fails on 0 entries, and against the copy of the last
   signed head the platform keeps outside the store (``run/ledger-head.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import private_set_intersection.python as psi_lib
import pytest

from policies.errors import IntegrityError, PolicyRefusal
from sandbox.core import keys, ledger
from sandbox.core.ledger import Actor
from sandbox.core.platform import STORE_NAME, Platform
from sandbox.core.principals import Role, by_name
from sandbox.data.backup import backup, restore, verify_home
from sandbox.data.grants import add_grant, grants_of
from sandbox.data.products import fetch_product
from sandbox.psi.terms import set_terms
from sandbox.registry.base import BEIJING
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import agreements
from tests.api_server import ROOT, ApiServer, check_envelope, make_home
from tests.conftest import HOLDS_OFF
from tests.psi_helpers import firm_code, register_firms
from tests.workflow_helpers import granted, make_cast

RELEASABLE = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex"
HEAD_COPY = Path("run") / "ledger-head.json"


def sandbox_cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """``python -m sandbox ARGS`` as a user runs it (no SANDBOX_* settings inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(HOLDS_OFF)  # the review holds of table mode: see tests/conftest.py
    env["PYTHONPATH"] = str(ROOT)
    if token:
        env["SANDBOX_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )


# --- 1. downloads after suspension ----------------------------------------------------------


@pytest.fixture
def suspended(platform, make_principal, provider, pums_dataset):
    """An operator's released product under an agreement, a real server on the home."""
    cast = make_cast(platform, make_principal, provider)
    agreement_id, _grant = granted(cast)
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": RELEASABLE})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome.reason
    with ApiServer(platform.home) as server:
        yield cast, agreement_id, outcome.product_id, server


def product_routes(product_id: str) -> dict[str, str]:
    return {
        "manifest": f"/v1/products/{product_id}",
        "file": f"/v1/products/{product_id}/files/output.csv",
        "signature": f"/v1/products/{product_id}/files/manifest.sig",
        "zip": f"/v1/products/{product_id}/zip",
    }


def downloads_by(platform: Platform, name: str) -> int:
    with platform.store.read() as conn:
        return len(ledger.query(conn, action="product.download", actor=name))


def test_a_suspended_agreement_stops_every_product_read_on_the_api_and_the_host(
    suspended, tmp_path
):
    cast, agreement_id, product_id, server = suspended
    token = cast.tokens["operator"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
        for route in product_routes(product_id).values():  # in force: all served
            assert api.get(route).status_code == 200, route
        assert [p["id"] for p in api.get("/v1/products").json()] == [product_id]

        agreements.suspend(cast.platform, cast.city, agreement_id, "inspection")
        before = downloads_by(cast.platform, "operator")
        with pytest.raises(PolicyRefusal) as host:
            fetch_product(cast.platform, cast.operator, product_id, tmp_path / "host")
        assert (host.value.rule, host.value.article) == ("agreement_suspended", "Art. 24")
        for what, route in product_routes(product_id).items():
            answer = api.get(route)
            assert answer.status_code == 403, (what, answer.text)
            check_envelope(answer)
            error = answer.json()["error"]
            assert (error["code"], error["rule"], error["article"]) == (
                host.value.code,
                host.value.rule,
                host.value.article,
            ), what
            assert error["message"] == host.value.message
        # The list shows only what may be downloaded now; the host's list agrees.
        assert api.get("/v1/products").json() == []
    assert downloads_by(cast.platform, "operator") == before  # nothing was handed out

    listed = sandbox_cli("--home", str(server.home), "product", "list", "--json", token=token)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    get = ("product", "get", product_id, "--out")
    remote = sandbox_cli("--server", server.url, *get, str(tmp_path / "r"), token=token)
    local = sandbox_cli("--home", str(server.home), *get, str(tmp_path / "h"), token=token)
    assert (remote.returncode, local.returncode) == (3, 3), (remote.stderr, local.stderr)
    shown = f"error [refused]: {host.value} (rule {host.value.rule})\n"  # names the rule
    assert remote.stderr == local.stderr == shown
    assert f"agreement {agreement_id} is suspended" in remote.stderr
    assert "Art. 24" in remote.stderr
    assert not (tmp_path / "r" / product_id).exists() and not (tmp_path / "h").exists()

    # The authority still reads it (supervision, Art. 5); restoring the agreement
    # gives the operator its product back.
    authority = {"Authorization": f"Bearer {cast.tokens['city']}"}
    zipped = httpx.get(server.url + product_routes(product_id)["zip"], headers=authority)
    assert zipped.status_code == 200
    agreements.restore(cast.platform, cast.city, agreement_id, "inspection closed")
    again = sandbox_cli("--server", server.url, *get, str(tmp_path / "r"), token=token)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "r" / product_id / "output.csv").exists()


# --- 2. PSI chunks: the owner is checked before the body is read ----------------------------

PSI_TOML = "[psi]\nbuild_processes = 2\nchunk_items = 300\n"


@pytest.fixture(scope="module")
def psi_served(tmp_path_factory):
    """operator and operator2 each with a PSI grant and terms on firms.code."""
    tmp = tmp_path_factory.mktemp("psi-owner")
    home = tmp / "home"
    tokens = make_home(home, PSI_TOML)
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = by_name(conn, "provider")
            authority = by_name(conn, "authority")
        register_firms(platform, provider, tmp / "data", [firm_code(i) for i in range(600)])
        for operator in ("operator", "operator2"):
            grant = add_grant(
                platform,
                authority,
                operator,
                "firms",
                until=(datetime.now(UTC) + timedelta(days=9)).isoformat(),
                job_kinds=("psi_match",),
            )
            set_terms(
                platform,
                authority,
                dataset="firms",
                column="code",
                grant_id=grant,
                min_items=100,
            )
    finally:
        platform.close()
    with ApiServer(home) as server:
        yield server, tokens


def test_a_chunk_for_another_operators_session_is_refused_before_its_body_is_read(psi_served):
    server, tokens = psi_served
    owner = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=60
    )
    other = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {tokens['operator2']}"}, timeout=60
    )
    with owner, other:
        opened = owner.post(
            "/v1/psi/sessions",
            json={"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": 200},
        )
        assert opened.status_code == 201, opened.text
        session = opened.json()["session"]
        psi_client = psi_lib.client.CreateWithNewKey(False)
        bodies = {
            "malformed": b"\xff\x00 not a PSI request " * 64,
            "oversized": psi_client.CreateRequest(
                [f"Z{i}" for i in range(301)]  # over psi.chunk_items
            ).SerializeToString(),
            "empty": b"",
            "big": os.urandom(1_000_000),  # just under api.max_body_mb
        }
        answers = {}
        for what, body in bodies.items():
            for sid in (session, session + 1000):  # someone else's, and one that does not exist
                answer = other.post(
                    f"/v1/psi/sessions/{sid}/chunks",
                    content=body,
                    headers={"Content-Type": "application/octet-stream"},
                )
                check_envelope(answer)
                error = answer.json()["error"]
                answers[what, sid] = (answer.status_code, error["code"], error["article"])
                assert error["message"] == f"no PSI session {sid} of yours", (what, error)
        assert set(answers.values()) == {(404, "not_found", None)}, answers

        # The owner's own malformed chunk is still named for what it is.
        mine = owner.post(f"/v1/psi/sessions/{session}/chunks", content=bodies["malformed"])
        assert mine.status_code == 400 and mine.json()["error"]["code"] == "bad_input"

    platform = Platform.open(server.home)
    try:
        with platform.store.read() as conn:
            assert ledger.query(conn, action="psi.chunk", actor="operator2") == []
            assert ledger.query(conn, subject=f"psi:{session}", action="psi.chunk") == []
    finally:
        platform.close()


# --- 3. an emptied or rolled-back ledger ----------------------------------------------------

ALICE = Actor("alice", "operator", 7)


def append(platform: Platform, n: int, what: str = "job.submit") -> None:
    for i in range(n):
        with platform.store.transaction() as conn:
            platform.record(conn, ALICE, what, f"job:{i}", {"i": i}, "Art. 18")


def tamper(home: Path, *statements: tuple[str, tuple]) -> None:
    """SQL on the store file behind the platform's back, as an insider with file access."""
    con = sqlite3.connect(home / STORE_NAME)
    try:
        for sql, params in statements:
            con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def store_head(home: Path) -> tuple:
    con = sqlite3.connect(home / STORE_NAME)
    try:
        return con.execute(
            "SELECT seq, hash, signature, ts FROM ledger_head WHERE id = 1"
        ).fetchone()
    finally:
        con.close()


def verify(platform: Platform) -> ledger.VerifyReport:
    public = keys.load_public(platform.public_key_path)
    with platform.store.read() as conn:
        return ledger.verify(conn, public)


def cli_verify(home: Path) -> subprocess.CompletedProcess:
    return sandbox_cli("--home", str(home), "ledger", "verify")


def test_an_emptied_ledger_does_not_verify(platform):
    append(platform, 4)
    home = platform.home
    tamper(home, ("DELETE FROM ledger", ()), ("DELETE FROM ledger_head", ()))
    done = cli_verify(home)
    assert done.returncode == 1, done.stdout
    assert "verified" not in done.stdout
    assert done.stderr.startswith("error [integrity]: "), done.stderr
    assert "no entries" in done.stderr and "Art. 7" in done.stderr
    assert "rolled back" in done.stderr and "entry 5" in done.stderr  # the copy names the head
    # Without the copy too, 0 entries still fails: init writes the first one.
    (home / HEAD_COPY).unlink()
    with pytest.raises(IntegrityError, match=r"no entries.*platform\.init") as err:
        verify(platform)
    assert err.value.code == "integrity" and err.value.article == "Art. 7"


def test_a_replayed_older_signed_head_does_not_verify(platform):
    append(platform, 2)
    older = store_head(platform.home)  # entry 3, signed by the platform
    append(platform, 3)
    assert verify(platform).entries == 6
    tamper(
        platform.home,
        ("DELETE FROM ledger WHERE seq > ?", (older[0],)),
        ("UPDATE ledger_head SET seq = ?, hash = ?, signature = ?, ts = ? WHERE id = 1", older),
    )
    with pytest.raises(IntegrityError) as err:
        verify(platform)
    assert err.value.code == "integrity" and err.value.article == "Art. 7"
    assert "rolled back" in err.value.message
    assert "entry 3" in err.value.message and "entry 6" in err.value.message
    done = cli_verify(platform.home)
    assert done.returncode == 1 and "rolled back" in done.stderr, (done.stdout, done.stderr)


def test_a_whole_older_copy_of_the_store_does_not_verify(platform, tmp_path):
    append(platform, 2)
    platform.close()
    shutil.copy2(platform.home / STORE_NAME, tmp_path / "older.sqlite")
    reopened = Platform.open(platform.home)
    try:
        append(reopened, 3)
    finally:
        reopened.close()
    for suffix in ("-wal", "-shm"):
        (platform.home / f"{STORE_NAME}{suffix}").unlink(missing_ok=True)
    shutil.copy2(tmp_path / "older.sqlite", platform.home / STORE_NAME)
    done = cli_verify(platform.home)
    assert done.returncode == 1, done.stdout
    assert "rolled back" in done.stderr and "entry 3" in done.stderr and "entry 6" in done.stderr


def test_the_same_seq_with_another_hash_is_a_rollback(platform):
    """A head the platform never signed at that position (the chain was rebuilt from a copy)."""
    append(platform, 2)
    copy = json.loads((platform.home / HEAD_COPY).read_text())
    assert copy["seq"] == 3
    copy["hash"] = "ab" * 32
    copy["signature"] = keys.sign(platform.key, f"sandbox-ledger-head:3:{copy['hash']}".encode())
    (platform.home / HEAD_COPY).write_text(json.dumps(copy))
    with pytest.raises(IntegrityError, match=r"rolled back.*entry 3"):
        verify(platform)


def test_the_head_copy_follows_many_writers_and_a_home_verifies(platform):
    """Threads of this process and two other processes append at once."""
    threads = [threading.Thread(target=append, args=(platform, 15)) for _ in range(3)]
    script = (
        "import sys; from sandbox.core.platform import Platform; from sandbox.core.ledger import SYSTEM\n"
        "p = Platform.open(sys.argv[1])\n"
        "for i in range(15):\n"
        "    with p.store.transaction() as c:\n"
        "        p.record(c, SYSTEM, 'test.tick', 'platform', {'i': i})\n"
        "p.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(platform.home)], env=env)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.wait(120) for p in procs] == [0, 0]
    report = verify(platform)
    assert report.entries == 1 + 45 + 30
    copy_path = platform.home / HEAD_COPY
    copy = json.loads(copy_path.read_text())
    assert (copy["seq"], copy["hash"]) == (report.head_seq, report.head_hash)
    assert copy_path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in copy_path.parent.iterdir() if ".tmp" in p.name] == []
    done = cli_verify(platform.home)
    assert done.returncode == 0 and f"{report.entries} entries" in done.stdout, done.stderr


def test_a_failed_transaction_does_not_move_the_head_copy(platform):
    append(platform, 2)
    before = (platform.home / HEAD_COPY).read_text()
    with pytest.raises(RuntimeError), platform.store.transaction() as conn:
        platform.record(conn, ALICE, "job.submit", "job:9")
        raise RuntimeError("crash after the ledger entry")
    assert (platform.home / HEAD_COPY).read_text() == before
    append(platform, 1)
    assert verify(platform).entries == 4


def test_a_restored_home_verifies_and_carries_the_head_copy(platform, tmp_path):
    append(platform, 5)
    report = backup(platform, tmp_path / "bk")
    append(platform, 3)  # the home moves on after the backup; the backup does not
    target = tmp_path / "restored"
    check = restore(tmp_path / "bk", target)
    assert check.ledger_entries == report.ledger_entries
    restored = Platform.open(target)
    try:
        home_check = verify_home(restored)
        assert home_check.ledger_entries == report.ledger_entries + 1  # platform.restore
        copy = json.loads((target / HEAD_COPY).read_text())
        assert copy["seq"] == home_check.ledger_entries
    finally:
        restored.close()
    assert cli_verify(target).returncode == 0
    assert cli_verify(platform.home).returncode == 0


def test_verify_while_the_platform_writes_sees_no_rollback(platform):
    """A verification that runs while entries commit never mistakes them for a rollback."""
    append(platform, 2)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            append(platform, 1)

    thread = threading.Thread(target=writer)
    thread.start()
    reports = []
    try:
        while len(reports) < 500 and (len(reports) < 20 or reports[-1].entries < 40):
            reports.append(verify(platform))
    finally:
        stop.set()
        thread.join()
    assert reports[-1].entries > reports[0].entries >= 3  # verified while it grew
    assert verify(platform).entries == json.loads((platform.home / HEAD_COPY).read_text())["seq"]


def test_a_group_commit_unit_undone_by_its_savepoint_does_not_move_the_copy(platform):
    """The verification service's group committer: one unit fails after its entry."""
    from sandbox.verification.commit import GroupCommitter

    def ok(conn):
        return platform.record(conn, ALICE, "verify.call", "product:p", {}, "Art. 19")

    def fails(conn):
        platform.record(conn, ALICE, "verify.call", "product:p", {"bad": True}, "Art. 19")
        raise RuntimeError("refused after the entry")

    committer = GroupCommitter(platform.store.engine, interval_s=0.2)
    try:
        futures = [committer.submit(ok), committer.submit(fails)]
        assert futures[0].result(30) == 2
        with pytest.raises(RuntimeError):
            futures[1].result(30)
    finally:
        committer.close()
    assert committer.batches == 1
    copy = json.loads((platform.home / HEAD_COPY).read_text())
    report = verify(platform)
    assert (copy["seq"], copy["hash"]) == (report.head_seq, report.head_hash) == (2, copy["hash"])
    append(platform, 1)
    assert verify(platform).entries == 3


def test_a_grant_until_a_bare_date_covers_the_whole_of_that_day(
    platform, make_principal, pums_dataset
):
    """``--until 2026-12-04`` reads as 'through the 4th' in Beijing, where the regulation's
    days fall: the term ends at the next midnight of Asia/Shanghai (16:00 UTC)."""
    authority, _ = make_principal("city", Role.AUTHORITY, jurisdiction="city")
    operator, _ = make_principal("bank", Role.OPERATOR)
    today = datetime.now(BEIJING).date()
    add_grant(platform, authority, "bank", "pums", until=today.isoformat())
    add_grant(platform, authority, "bank", "pums", until=f"{today.isoformat()}T23:59:00+00:00")
    with platform.store.read() as conn:
        whole_day, exact = grants_of(conn, operator.id)
    beijing_midnight = datetime(today.year, today.month, today.day, tzinfo=BEIJING)
    assert whole_day.valid_until == beijing_midnight + timedelta(days=1)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    assert whole_day.valid_until > datetime.now(UTC)  # usable for the rest of today
    assert exact.valid_until == midnight + timedelta(
        hours=23, minutes=59
    )  # a time is taken as given


@pytest.mark.parametrize("wide_grant_unusable_by", ["suspension", "job_kind", "term"])
def test_a_job_reads_only_the_columns_of_the_grant_it_runs_under(
    platform, make_principal, pums_dataset, wide_grant_unusable_by
):
    """An operator holding a wide grant it may not use now (suspended, for another job
    kind, out of its term) and a narrow usable one is admitted against the narrow one:
    the wide grant's columns never reach a job that runs under the narrow grant."""
    from policies.access import GrantStatus
    from sandbox.data.grants import set_grant_status

    authority, _ = make_principal("city", Role.AUTHORITY, jurisdiction="city")
    operator, _ = make_principal("bank", Role.OPERATOR)
    wide = {"until": "2099-12-31"}
    if wide_grant_unusable_by == "job_kind":
        wide["job_kinds"] = ("psi_match",)
    if wide_grant_unusable_by == "term":
        wide.update(start="2098-01-01", until="2099-12-31")
    wide_id = add_grant(platform, authority, "bank", "pums", **wide)
    if wide_grant_unusable_by == "suspension":
        set_grant_status(platform, authority, wide_id, GrantStatus.SUSPENDED, "incident")
    add_grant(platform, authority, "bank", "pums", until="2098-12-31", columns=["sex", "age"])
    service = JobService(platform, spare=False)
    try:
        narrow = service.submit(
            operator, {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
        )
        assert narrow.state is JobState.RELEASED
        outcome = service.submit(operator, {"sql": RELEASABLE})  # SUM(income): not granted
        assert outcome.state is JobState.REFUSED
        assert "income" in json.dumps(outcome.reason)
    finally:
        service.close()
