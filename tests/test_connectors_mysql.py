"""The MySQL-family connector against a real MariaDB server that the module starts
(tests/mariadb_server.py): types, batches, a query, the error messages (no password, no
value), the allowed hosts of the API, and a table through registration to a released job.
"""

from __future__ import annotations

import datetime as dt
import decimal
from urllib.parse import quote

import pyarrow as pa
import pytest
from mariadb_server import SKIP_REASON, MariaDB, binaries
from source_helpers import read_all, release_counts

from connectors import open_source
from policies.errors import InputError, SourceError
from sandbox.api.sources import check_source

pymysql = pytest.importorskip("pymysql")

pytestmark = [
    pytest.mark.mysql,
    pytest.mark.skipif(binaries() is None, reason=SKIP_REASON),
]

PASSWORD = "Mq-7b1e!z"


@pytest.fixture(scope="module")
def maria(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("maria")).start()
    try:
        con = server.admin()
        with con.cursor() as cur:
            cur.execute("CREATE DATABASE civic CHARACTER SET utf8mb4")
            cur.execute("CREATE USER 'reader'@'%%' IDENTIFIED BY %s", (PASSWORD,))
            cur.execute("GRANT SELECT ON civic.* TO 'reader'@'%'")
            cur.execute("GRANT ALL ON civic.* TO 'root'@'localhost'")
            cur.execute("USE civic")
            cur.execute(
                """CREATE TABLE payments (
                    pid VARCHAR(20) NOT NULL, county VARCHAR(20), month DATE, paid_at DATETIME,
                    stamped TIMESTAMP NULL, amount DECIMAL(12, 2), score DOUBLE, n INT,
                    big BIGINT UNSIGNED, active TINYINT(1), note JSON, raw VARBINARY(8),
                    kind ENUM('a', 'b'), flags BIT(3), took TIME, body TEXT)"""
            )
            cur.execute(
                """INSERT INTO payments
                SELECT CONCAT('P', seq), CONCAT('县', seq % 3), '2024-01-01' + INTERVAL (seq % 28) DAY,
                       '2024-01-01 08:00:00' + INTERVAL seq MINUTE, '2024-01-01 00:00:00',
                       seq * 1.25, seq / 4, seq, seq * 1000000000, seq % 2,
                       JSON_OBJECT('k', seq), X'0102', IF(seq % 2, 'a', 'b'), b'101',
                       '-01:30:00', REPEAT('x', 3)
                FROM seq_1_to_2500"""
            )
            cur.execute("INSERT INTO payments (pid) VALUES ('P-null')")
            cur.execute("CREATE SEQUENCE counter")
            cur.execute("GRANT INSERT ON civic.counter TO 'reader'@'%'")  # nextval may write
            cur.execute("CREATE TABLE zero (d DATE)")
            cur.execute("SET SESSION sql_mode = ''")
            cur.execute("INSERT INTO zero VALUES ('0000-00-00')")
        con.close()
        yield server
    finally:
        server.stop()


def uri(maria, *, password: str = PASSWORD, scheme: str = "mysql", **options) -> str:
    query = "&".join(f"{k}={quote(v)}" for k, v in options.items())
    return f"{scheme}://reader:{quote(password)}@127.0.0.1:{maria.port}/civic?{query}"


def test_table_types_are_mapped_and_batches_bounded(maria):
    source = open_source(uri(maria, table="payments"), batch_rows=1000)
    assert {f.name: f.type for f in source.schema} == {
        "pid": pa.string(),
        "county": pa.string(),
        "month": pa.date32(),
        "paid_at": pa.timestamp("us"),
        "stamped": pa.timestamp("us", tz="UTC"),
        "amount": pa.decimal128(12, 2),
        "score": pa.float64(),
        "n": pa.int64(),
        "big": pa.uint64(),
        "active": pa.int64(),
        "note": pa.string(),
        "raw": pa.binary(),
        "kind": pa.string(),
        "flags": pa.int64(),
        "took": pa.duration("us"),
        "body": pa.string(),
    }
    table, sizes = read_all(source)
    assert sizes == [1000, 1000, 501]
    rows = {r["pid"]: r for r in table.to_pylist()}
    first = rows["P1"]
    assert first["county"] == "县1" and first["month"] == dt.date(2024, 1, 2)
    assert first["paid_at"] == dt.datetime(2024, 1, 1, 8, 1)
    assert first["amount"] == decimal.Decimal("1.25") and first["score"] == 0.25
    assert first["big"] == 1_000_000_000 and first["active"] == 1
    assert first["note"].replace(" ", "") == '{"k":1}' and first["raw"] == b"\x01\x02"
    assert first["kind"] == "a" and first["flags"] == 5
    assert first["took"] == dt.timedelta(hours=-1, minutes=-30) and first["body"] == "xxx"
    assert rows["P-null"]["amount"] is None and rows["P-null"]["month"] is None
    assert source.progress.rows_read == 2501


def test_query_mariadb_scheme_and_redacted_uri(maria):
    query = "SELECT county, COUNT(*) AS n FROM payments WHERE county IS NOT NULL GROUP BY county"
    source = open_source(uri(maria, scheme="mariadb", query=query))
    assert PASSWORD not in source.uri and quote(PASSWORD) not in source.uri
    assert source.uri.startswith("mariadb://reader:***@127.0.0.1:")
    table, _ = read_all(source)
    assert sorted(table.column("n").to_pylist()) == [833, 833, 834]


def test_bad_password_is_refused_without_showing_it(maria):
    wrong = "Wrong-secret-42"
    with pytest.raises(SourceError) as err:
        open_source(uri(maria, password=wrong, table="payments"))
    message = err.value.message
    assert "cannot connect to mysql://reader:***@127.0.0.1" in message
    assert "Access denied for user 'reader'" in message
    assert wrong not in message and PASSWORD not in message
    assert err.value.__cause__ is None


def test_unreachable_host_and_unknown_database(maria):
    with pytest.raises(SourceError) as err:
        open_source(f"mysql://reader:{PASSWORD}@127.0.0.1:1/civic?table=payments")
    assert "cannot connect" in err.value.message and "Can't connect" in err.value.message
    assert PASSWORD not in err.value.message
    with pytest.raises(SourceError) as err:
        open_source(uri(maria, table="payments").replace("/civic?", "/civics?"))
    assert "civics" in err.value.message and PASSWORD not in err.value.message


def test_missing_table_suggests_and_options_are_checked(maria):
    with pytest.raises(SourceError) as err:
        open_source(uri(maria, table="payment"))
    assert "table 'payment' does not exist; did you mean 'payments'?" in err.value.message
    with pytest.raises(SourceError, match="give exactly one of"):
        open_source(uri(maria))
    with pytest.raises(SourceError, match="unknown option 'tabel'"):
        open_source(uri(maria, tabel="payments"))


def test_session_is_read_only_and_errors_hide_values(maria):
    with pytest.raises(SourceError) as err:
        read_all(open_source(uri(maria, query="SELECT NEXTVAL(counter) AS v")))
    assert "READ ONLY transaction" in err.value.message and PASSWORD not in err.value.message
    with pytest.raises(SourceError) as err:
        read_all(open_source(uri(maria, table="zero")))
    assert "column 'd'" in err.value.message and "0000" in err.value.message  # the hint only
    source = open_source(uri(maria, query="SELECT CAST(pid AS DECIMAL(5)) / 0 AS v FROM payments"))
    table, _ = read_all(source)  # MariaDB answers NULL, not an error: nothing to hide
    assert table.column("v").null_count == 2501


def test_the_api_allows_only_listed_hosts_and_options(maria):
    allowed = (f"127.0.0.1:{maria.port}",)
    check_source(uri(maria, table="payments"), (), allowed)
    with pytest.raises(InputError) as err:
        check_source(uri(maria, table="payments"), (), ("127.0.0.1",))
    assert "api.source_hosts" in err.value.message and PASSWORD not in err.value.message
    with pytest.raises(InputError) as err:
        check_source(uri(maria, table="payments", unix_socket="/tmp/x.sock"), (), allowed)
    assert "unix_socket" in err.value.message
    check_source("mysql://u:p@db.example.org/civic?table=t", (), ("db.example.org",))  # 3306


def test_a_table_through_registration_to_a_released_job(maria, platform, provider, make_principal):
    classes = {
        "entity_key": "pid",
        "columns": {"pid": "identifier", "county": "dimension", "amount": "measure"},
    }
    query = "SELECT pid, county, amount FROM payments WHERE county IS NOT NULL ORDER BY pid"
    counts = release_counts(
        platform, provider, make_principal, "payments", uri(maria, query=query), classes
    )
    assert counts == {"县0": 833, "县1": 834, "县2": 833}


def test_a_registered_table_is_refreshed(maria, platform, provider):
    from policies.classes import Classification
    from sandbox.data import vault
    from sandbox.data.refresh import refresh

    con = maria.admin()
    with con.cursor() as cur:
        cur.execute("USE civic")
        cur.execute("CREATE TABLE civic.daily AS SELECT CONCAT('P', seq) AS pid, seq % 3 AS county "
                    "FROM seq_1_to_40")  # fmt: skip
    classes = Classification.from_dict(
        {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension"}}
    )
    vault.register(
        platform, provider, "daily", uri(maria, query="SELECT * FROM daily ORDER BY pid"), classes
    )
    assert refresh(platform, provider, "daily")["changed"] is False
    with con.cursor() as cur:
        cur.execute("INSERT INTO civic.daily VALUES ('P41', 0)")
    pulled = refresh(platform, provider, "daily")
    assert pulled["version"] == 2 and pulled["rows"] == 41
    with con.cursor() as cur:
        cur.execute("DROP TABLE civic.daily")
    con.close()
    with pytest.raises(SourceError) as err:
        refresh(platform, provider, "daily")
    assert "version 2 stays" in err.value.message and PASSWORD not in err.value.message


def test_a_password_never_shows_on_any_path(maria, platform, provider, caplog, tmp_path):
    """A source's password, one holding "#" as real passwords do (the driver takes it
    unencoded), appears nowhere but its kept file: not in a message, the ledger, the
    store, a listing, ``dataset show``, a backup's listing, an inbox or the log."""
    import datetime as dt
    import json
    import logging

    from policies.classes import Classification
    from sandbox.api.sources import uniform_connect_error
    from sandbox.cli.local import LocalBackend
    from sandbox.core import ledger
    from sandbox.data import backup, vault
    from sandbox.data.kept_sources import kept_uri
    from sandbox.data.refresh import list_sources, refresh, run_due, set_schedule
    from sandbox.data.suggestion import suggest_classification
    from sandbox.registry.inbox import inbox_of

    secret = "pw#SECRET-123"
    con = maria.admin()
    with con.cursor() as cur:
        cur.execute("USE civic")
        cur.execute("CREATE USER 'keeper'@'%%' IDENTIFIED BY %s", (secret,))
        cur.execute("CREATE TABLE civic.kept AS SELECT CONCAT('P', seq) AS pid, seq % 3 AS county "
                    "FROM seq_1_to_30")  # fmt: skip
        cur.execute("GRANT SELECT ON civic.* TO 'keeper'@'%'")
    full = f"mysql://keeper:{secret}@127.0.0.1:{maria.port}/civic?query=SELECT * FROM kept"
    caplog.set_level(logging.DEBUG)
    classes = Classification.from_dict(
        {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension"}}
    )
    vault.register(platform, provider, "kept", full, classes)
    assert kept_uri(platform, "kept") == full  # the one place it is kept
    said = [json.dumps(suggest_classification(platform, provider, full, rows=10))]
    assert refresh(platform, provider, "kept")["changed"] is False
    with con.cursor() as cur:
        cur.execute("DROP TABLE civic.kept")
    con.close()
    with pytest.raises(SourceError) as err:
        refresh(platform, provider, "kept")
    said.append(err.value.message)
    set_schedule(platform, provider, "kept", "00:00")
    (failed,) = run_due(platform, dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))
    said.append(json.dumps(failed))
    wrong_host = full.replace(f":{maria.port}/", ":1/")
    with pytest.raises(SourceError) as err:
        open_source(wrong_host)
    said += [err.value.message, uniform_connect_error(err.value, wrong_host).message]
    said.append(json.dumps(list_sources(platform, provider), default=str))
    said.append(json.dumps(inbox_of(platform, provider), default=str))
    backend = LocalBackend(platform, None)
    backend._me = provider
    said.append(json.dumps(backend.show_dataset("kept", None), default=str))
    with platform.store.read() as conn:
        said.append(json.dumps(ledger.query(conn), default=str))
        said.append(repr(vault.get_version(conn, platform, "kept")))
    report = backup.backup(platform, tmp_path / "backup")
    said += [repr(report), json.dumps(backup.check_backup(tmp_path / "backup"), default=str)]
    said.append(caplog.text)
    for text in said:
        assert secret not in text and "SECRET" not in text, text
    assert "keeper:***@" in said[0]
    kept_file = platform.home / "keys" / "sources" / "kept.uri"
    for path in platform.home.rglob("*"):  # the store, the vault, the logs: all but that file
        if path.is_file() and path != kept_file:
            assert b"SECRET" not in path.read_bytes(), path
