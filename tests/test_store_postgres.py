"""The store on PostgreSQL (``store.url``), as several hosts use it at once.

Each test has a fresh database of the session's embedded server (tests/pg_store.py).
"Two hosts" are two :class:`Store` objects (two engines, two connection pools) on one
database; the locks under test are PostgreSQL's, so they hold between processes and
machines alike (tests/test_hosts_postgres.py runs two server processes).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from policies.errors import ConfigError, IntegrityError, RateLimited
from sandbox.core import keys, ledger
from sandbox.core.ledger import Actor
from sandbox.core.store import Store, jobs, principals

pytestmark = pytest.mark.postgres


@pytest.fixture
def hosts(tmp_path, pg_url):
    """Two stores on one new PostgreSQL database, and the platform key both sign with."""
    first = Store.open(tmp_path / "unused.sqlite", create=True, url=pg_url)
    second = Store.open(tmp_path / "unused.sqlite", url=pg_url)
    keys.create_key(tmp_path / "keys")
    key = keys.load_private(tmp_path / "keys")
    yield first, second, key
    first.dispose()
    second.dispose()


def test_a_new_database_gets_the_schema_and_the_sqlite_file_is_not_made(tmp_path, pg_url):
    store = Store.open(tmp_path / "store.sqlite", create=True, url=pg_url)
    try:
        assert store.is_postgres
        with store.read() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
                "schema_3"
            )
            assert conn.execute(select(func.count()).select_from(principals)).scalar() == 0
    finally:
        store.dispose()
    assert not (tmp_path / "store.sqlite").exists()


def test_a_database_without_a_store_is_refused_naming_sandbox_init(tmp_path, pg_url):
    with pytest.raises(ConfigError, match="store.url.*sandbox init"):
        Store.open(tmp_path / "store.sqlite", url=pg_url)


def test_appends_of_two_hosts_at_once_never_fork_the_ledger(hosts):
    """Eight threads on two stores append 25 entries each, half in the store's writing
    transactions and half in plain transactions (the append takes the write lock): the
    chain has every entry once, in one line, under one signed head."""
    first, second, key = hosts
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(store: Store, n: int, plain: bool) -> None:
        try:
            start.wait()
            for i in range(25):
                if plain:
                    with store.engine.begin() as conn:
                        ledger.append(conn, key, Actor("t", "system"), "test.plain", f"{n}:{i}")
                else:
                    with store.transaction() as conn:
                        ledger.append(conn, key, Actor("t", "system"), "test.write", f"{n}:{i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=((first, second)[n % 2], n, n < 4)) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    with first.read() as conn:
        report = ledger.verify(conn, key.public_key())
        subjects = [e["subject"] for e in ledger.query(conn)]
    assert report.entries == report.head_seq == 200
    assert len(set(subjects)) == 200


def _queued_job(store: Store) -> int:
    with store.transaction() as conn:
        person = conn.execute(
            principals.insert().values(
                name=f"op-{time.monotonic_ns()}",
                role="operator",
                org="o",
                token_sha256=f"{time.monotonic_ns():064d}",
                created_at="2026-12-04",
            )
        ).inserted_primary_key[0]
        return conn.execute(
            jobs.insert().values(
                operator_id=person,
                kind="sql_aggregate",
                request_json="{}",
                status="queued",
                created_at="2026-12-04",
                updated_at="2026-12-04",
            )
        ).inserted_primary_key[0]


def test_a_job_another_host_is_claiming_is_skipped_not_waited_for(hosts):
    """``claim_queued``: FOR UPDATE SKIP LOCKED. While one host's transaction holds a
    job's row, the other's claim of it returns None at once; another queued job is
    still claimed; once the first commits the job as running, nobody claims it again."""
    from sandbox.run.jobstate import claim_queued

    first, second, _key = hosts
    job, other = _queued_job(first), _queued_job(first)
    with first.engine.connect() as holder, holder.begin():
        assert claim_queued(holder, job) is not None
        with second.engine.connect() as rival, rival.begin():
            began = time.monotonic()
            assert claim_queued(rival, job) is None
            assert time.monotonic() - began < 2.0
            assert claim_queued(rival, other) is not None
        holder.execute(jobs.update().where(jobs.c.id == job).values(status="running"))
    with second.engine.connect() as rival, rival.begin():
        assert claim_queued(rival, job) is None


def test_a_writing_transaction_waits_for_another_hosts(hosts):
    """The store's write lock (as SQLite's BEGIN IMMEDIATE): a second host's writing
    transaction begins only once the first's has committed, so it reads what that wrote."""
    first, second, _key = hosts
    order: list[str] = []
    holding = threading.Event()

    def other_host() -> None:
        holding.wait(10)
        with second.transaction() as conn:
            order.append("second began")
            seen = conn.execute(select(func.count()).select_from(principals)).scalar()
            order.append(f"second saw {seen}")

    thread = threading.Thread(target=other_host)
    thread.start()
    with first.transaction() as conn:
        holding.set()
        time.sleep(0.5)
        conn.execute(
            principals.insert().values(
                name="p", role="operator", org="o", token_sha256="0" * 64, created_at="x"
            )
        )
        order.append("first commits")
    thread.join(30)
    assert order == ["first commits", "second began", "second saw 1"]


def test_rate_limits_hold_across_two_hosts(hosts):
    """Two limiters (two hosts) on the store's ``rate_buckets`` draw from one bucket per
    principal: five requests a minute in all, the sixth refused with its wait."""
    from sandbox.api.limits import RateLimiter

    first, second, _key = hosts
    limiters = [RateLimiter(5, None, first.engine), RateLimiter(5, None, second.engine)]
    for i in range(5):
        limiters[i % 2].take(7)
    with pytest.raises(RateLimited, match="api.rate_per_minute") as refused:
        limiters[1].take(7)
    assert int(refused.value.headers["Retry-After"]) >= 1
    limiters[0].take(8)  # another principal's bucket is full
    with pytest.raises(RateLimited):
        limiters[0].take(7)


def test_a_principal_hammering_two_hosts_at_once_gets_one_allowance(hosts):
    """Twelve threads on two hosts (two limiters, two stores) draw for one new principal
    at once, 240 requests in all: the first requests race to make the bucket's row, and
    then every draw waits for the row's lock, so the allowed requests are one minute's
    allowance plus what refilled while they ran, not one allowance per host or thread."""
    from sandbox.api.limits import RateLimiter

    first, second, _key = hosts
    rate = 30
    limiters = [RateLimiter(rate, None, first.engine), RateLimiter(rate, None, second.engine)]
    allowed: list[int] = []
    start = threading.Barrier(12)

    def hammer(limiter: RateLimiter) -> None:
        start.wait()
        for _ in range(20):
            try:
                limiter.take(42)
            except RateLimited:
                continue
            allowed.append(1)

    threads = [threading.Thread(target=hammer, args=(limiters[n % 2],)) for n in range(12)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    refill = (time.monotonic() - began) * rate / 60
    assert rate <= len(allowed) <= rate + refill + 1, (len(allowed), refill)


def test_an_older_postgresql_store_is_refused_then_upgraded(tmp_path, pg_url):
    from sandbox.core.schema import upgrade

    Store.open(tmp_path / "x", create=True, url=pg_url).dispose()
    old = Store.open(tmp_path / "x", url=pg_url)
    with old.engine.begin() as conn:  # a store of schema 2, from before Alembic
        conn.execute(text("ALTER TABLE principals DROP COLUMN status"))
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("UPDATE meta SET value = '2' WHERE key = 'schema_version'"))
    old.dispose()
    with pytest.raises(ConfigError, match="schema version 2.*sandbox db upgrade"):
        Store.open(tmp_path / "x", url=pg_url)
    done = upgrade(tmp_path / "x", pg_url)
    assert (done.before, done.after) == (2, 3)
    store = Store.open(tmp_path / "x", url=pg_url)
    try:
        with store.read() as conn:
            assert conn.execute(select(principals.c.status)).all() == []
    finally:
        store.dispose()


def test_sandbox_backup_refuses_a_postgresql_store_naming_pg_dump(tmp_path, pg_url, monkeypatch):
    from sandbox.core.platform import Platform
    from sandbox.data.backup import backup

    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    platform = Platform.init(tmp_path / "home")
    try:
        with pytest.raises(ConfigError, match="pg_dump.*docs/deploy.md"):
            backup(platform, tmp_path / "backup")
    finally:
        platform.close()
    assert not (tmp_path / "backup").exists()


def test_only_the_jobs_of_a_host_whose_lease_ran_out_are_failed(tmp_path, pg_url, monkeypatch):
    """``recover_gone``: a running job, and one not yet admitted, of a host that stopped
    beating fail with their reason; one of a host that beats, and a queued job, stay as
    they are."""
    import json

    from sandbox.core.platform import Platform
    from sandbox.run import leases
    from sandbox.run.jobstate import recover_gone
    from sandbox.run.tables import host_leases, job_hosts

    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    monkeypatch.setenv("SANDBOX_STORE_HOST_LEASE_S", "5")
    platform = Platform.init(tmp_path / "home")
    try:
        gone, live, queued, unadmitted, local = (_queued_job(platform.store) for _ in range(5))
        leases.beat(platform.store.engine)  # this process: a live host
        with platform.store.transaction() as conn:
            conn.execute(jobs.update().where(jobs.c.id.in_([gone, live])).values(status="running"))
            conn.execute(host_leases.insert().values(host="host-b:1:dead", heartbeat=1.0))
            conn.execute(job_hosts.insert().values(job_id=gone, host="host-b:1:dead"))
            conn.execute(jobs.update().where(jobs.c.id == unadmitted).values(status="submitted"))
            conn.execute(job_hosts.insert().values(job_id=unadmitted, host="host-b:1:dead"))
            # a local command's job: its process never held a lease (not a server host)
            conn.execute(jobs.update().where(jobs.c.id == local).values(status="running"))
            conn.execute(job_hosts.insert().values(job_id=local, host="laptop:9:cli"))
            leases.claimed(conn, live)
        assert recover_gone(platform) == [gone, unadmitted]
        with platform.store.read() as conn:
            rows = {
                r.id: r for r in conn.execute(select(jobs.c.id, jobs.c.status, jobs.c.reason_json))
            }
        assert rows[gone].status == rows[unadmitted].status == "failed"
        reason = json.loads(rows[gone].reason_json)
        assert reason["code"] == "interrupted" and "no heartbeat for 5 s" in reason["message"]
        assert (rows[live].status, rows[queued].status) == ("running", "queued")
        assert rows[local].status == "running"
        assert recover_gone(platform) == []  # failed once
        with platform.store.read() as conn:
            assert ledger.verify(conn, platform.key.public_key()).entries == 3
            last = ledger.query(conn)[-2:]
        assert [(e["action"], e["subject"]) for e in last] == [
            ("job.failed", f"job:{gone}"),
            ("job.failed", f"job:{unadmitted}"),
        ]
    finally:
        platform.close()


def test_a_rolled_back_postgresql_store_is_caught_by_the_hosts_head_copy(
    tmp_path, pg_url, monkeypatch
):
    """The copy of the signed head in this host's ``run/``: the last entry deleted and
    the head signed before it put back verifies in the store alone, but not against the
    copy, which names the rollback."""
    from sandbox.core.ledger import HEAD_COPY, SYSTEM
    from sandbox.core.platform import Platform
    from sandbox.core.store import ledger as ledger_table
    from sandbox.core.store import ledger_head

    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    platform = Platform.init(tmp_path / "home")
    try:
        for i in range(3):
            with platform.store.transaction() as conn:
                platform.record(conn, SYSTEM, "test.entry", f"t:{i}")
        with platform.store.read() as conn:
            older = dict(conn.execute(select(ledger_head)).mappings().one())
        with platform.store.transaction() as conn:
            platform.record(conn, SYSTEM, "test.entry", "t:last")
        assert (tmp_path / "home" / HEAD_COPY).exists()
        with platform.store.engine.begin() as conn:  # someone with the database's password
            conn.execute(ledger_table.delete().where(ledger_table.c.seq == older["seq"] + 1))
            conn.execute(ledger_head.update().values(**older))
        with platform.store.read() as conn:
            with pytest.raises(IntegrityError, match="rolled back"):
                ledger.verify(conn, platform.key.public_key())
    finally:
        platform.close()


def test_sandbox_settings_shows_the_store_url_without_its_password(tmp_path, pg_url, monkeypatch):
    import json

    from click.testing import CliRunner

    from sandbox.cli.app import main
    from sandbox.core.platform import Platform

    with_password = pg_url.replace("postgresql://postgres@", "postgresql://postgres:S3cret-pw@")
    monkeypatch.setenv("SANDBOX_STORE_URL", with_password)  # trusted locally: any password
    Platform.init(tmp_path / "home").close()
    shown = CliRunner().invoke(main, ["--home", str(tmp_path / "home"), "settings", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "S3cret-pw" not in shown.output
    rows = {r["name"]: r for r in json.loads(shown.output)}
    assert rows["store.url"]["value"].startswith("postgresql://postgres:***@")
    assert rows["store.url"]["source"] != "default"


def test_the_ledger_verifies_while_another_host_appends(hosts):
    """A read sees one snapshot (REPEATABLE READ on PostgreSQL, as SQLite's WAL read):
    the chain walked and the head read after it agree while entries commit meanwhile."""
    first, second, key = hosts
    with first.transaction() as conn:
        ledger.append(conn, key, Actor("t", "system"), "test.first", "t:0")
    done = threading.Event()

    def append() -> None:
        for i in range(150):
            with second.transaction() as conn:
                ledger.append(conn, key, Actor("t", "system"), "test.more", f"t:{i}")
        done.set()

    thread = threading.Thread(target=append)
    thread.start()
    checks = 0
    while not done.is_set() or checks == 0:
        with first.read() as conn:
            report = ledger.verify(conn, key.public_key())
        assert report.entries == report.head_seq
        checks += 1
    thread.join(60)
    assert checks > 1


def test_a_live_hosts_running_job_survives_another_hosts_long_write(tmp_path, pg_url, monkeypatch):
    """A live host runs a job while another host holds the write lock for three leases
    (a long migration, a slow write) and this host's own request threads all queue
    behind it (its connection pool taken). Its heartbeat must go on meanwhile: the other
    host's look for gone hosts, queued on the lock as its heartbeat thread's is, finds
    nothing when it runs, and the job is still running afterwards."""
    from sandbox.api.executor import Executor
    from sandbox.core.platform import Platform
    from sandbox.run import leases
    from sandbox.run.execution import JobService

    lease_s = 2.0
    monkeypatch.setenv("SANDBOX_STORE_URL", pg_url)
    monkeypatch.setenv("SANDBOX_STORE_HOST_LEASE_S", str(lease_s))
    platform = Platform.init(tmp_path / "home")
    other = Store.open(tmp_path / "unused.sqlite", url=pg_url)
    executor = Executor(platform, JobService(platform, spare=False))
    try:
        job = _queued_job(platform.store)
        with platform.store.transaction() as conn:  # this host claimed it and runs it
            conn.execute(jobs.update().where(jobs.c.id == job).values(status="running"))
            leases.claimed(conn, job)
        executor._recover_once()  # the lease and its heartbeat; the job loop is busy
        holding = threading.Event()
        gone: list = []

        def long_write() -> None:
            with other.transaction():
                holding.set()
                time.sleep(3 * lease_s)

        def other_host_looks() -> None:  # the other host's heartbeat thread
            with other.transaction() as conn:
                gone.extend(leases.gone_jobs(conn, lease_s))

        def request() -> None:  # one of this host's request threads, queued on the lock
            with platform.store.transaction():
                pass

        writer = threading.Thread(target=long_write)
        writer.start()
        assert holding.wait(10)
        threads = [threading.Thread(target=other_host_looks)]
        threads += [threading.Thread(target=request) for _ in range(20)]
        for thread in threads:
            thread.start()
        writer.join(60)
        for thread in threads:
            thread.join(60)
        assert gone == [], "the other host took a live host for gone"
        with platform.store.read() as conn:
            status = conn.execute(select(jobs.c.status).where(jobs.c.id == job)).scalar()
        assert status == "running", "a live host's job was failed as its host gone"
    finally:
        executor.stop()
        executor.service.close()
        other.dispose()
        platform.close()


def test_entity_numbers_copied_into_postgresql_keep_every_awkward_key(tmp_path, pg_url):
    """The numbering's bulk write on PostgreSQL goes through COPY in CSV: a key holding a
    comma, a quote, a tab, a line break, a backslash, Chinese text, or nothing at all
    comes back exactly, with its number; and the chunks add up (more rows than one COPY)."""
    from sandbox.guard import history
    from sandbox.guard.tables import entity_numbers

    store = Store.open(tmp_path / "unused.sqlite", create=True, url=pg_url)
    awkward = [
        "a,b",
        'say "hi"',
        "tab\there",
        "two\nlines",
        "back\\slash",
        "济宁市",
        "",
        "NULL",
        "\\.",
    ]
    plain = [f"P{n:07d}" for n in range(history.COPY_CHUNK + 5)]
    keys = sorted(awkward + plain)
    try:
        with store.transaction() as conn:
            history.insert_numbers(conn, (("copy-1", k, i) for i, k in enumerate(keys)))
        with store.read() as conn:
            rows = conn.execute(
                select(entity_numbers.c.entity_key, entity_numbers.c.number).where(
                    entity_numbers.c.dataset == "copy-1"
                )
            ).all()
        assert dict(rows) == {k: i for i, k in enumerate(keys)}
        assert all(key is not None for key, _ in rows)  # the empty key is not NULL
    finally:
        store.dispose()
