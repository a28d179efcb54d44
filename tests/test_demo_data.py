"""The synthetic Jining demo data: determinism, valid IDs, fitting classifications, skew."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from connectors.validity import (
    credit_code_valid_sql,
    is_valid_credit_code,
    is_valid_resident_id,
    resident_id_valid_sql,
)
from policies.classes import Classification, ColumnClass
from sandbox.demo.data import COUNTIES, DEMO_TABLES, write_demo_data

PERSONS = 2000


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    start = time.perf_counter()
    paths = write_demo_data(tmp_path_factory.mktemp("demo"), persons=PERSONS, seed=7)
    assert time.perf_counter() - start < 5, "2000 persons must take well under 5 s"
    return paths


@pytest.fixture(scope="module")
def con(demo) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    for name, path in demo.items():
        c.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{path}')")
    return c


def one(con, sql: str):
    return con.execute(sql).fetchall()[0]


def test_writes_every_table(demo):
    assert set(demo) == set(DEMO_TABLES)
    for name, path in demo.items():
        assert path.name == DEMO_TABLES[name].file_name and path.stat().st_size > 0


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    again = write_demo_data(tmp_path / "again", persons=PERSONS, seed=7)
    other = write_demo_data(tmp_path / "other", persons=PERSONS, seed=8)
    for name in DEMO_TABLES:
        assert again[name].read_bytes() == demo[name].read_bytes(), name
        assert other[name].read_bytes() != demo[name].read_bytes(), name


def test_too_few_persons_refused(tmp_path):
    with pytest.raises(ValueError):
        write_demo_data(tmp_path, persons=10)


def test_resident_ids_valid_unique_and_consistent(con):
    n, distinct, valid = one(
        con,
        f"SELECT count(*), count(DISTINCT pid), count(*) FILTER ({resident_id_valid_sql('pid')}) FROM persons",
    )
    assert n == distinct == valid == PERSONS
    rows = con.execute("SELECT pid, sex, birth_date, county FROM persons").fetchall()
    names = {code: name for code, name, _ in COUNTIES}
    for pid, sex, birth, county in rows:
        assert is_valid_resident_id(pid)
        assert names[pid[:6]] == county
        assert pid[6:14] == birth.strftime("%Y%m%d")
        assert sex == ("男" if int(pid[16]) % 2 else "女")


def test_credit_codes_valid_unique(con):
    n, distinct, valid = one(
        con,
        "SELECT count(*), count(DISTINCT credit_code),"
        f" count(*) FILTER ({credit_code_valid_sql('credit_code')}) FROM enterprises",
    )
    assert n == distinct == valid == PERSONS // 20
    codes = [r[0] for r in con.execute("SELECT credit_code FROM enterprises").fetchall()]
    assert all(is_valid_credit_code(c) for c in codes)
    assert {c[2:8] for c in codes} <= {code for code, _, _ in COUNTIES}


def test_references_point_at_existing_subjects(con):
    assert one(
        con, "SELECT count(*) FROM social_insurance WHERE pid NOT IN (SELECT pid FROM persons)"
    ) == (0,)
    assert one(
        con,
        "SELECT count(*) FROM social_insurance WHERE credit_code NOT IN (SELECT credit_code FROM enterprises)",
    ) == (0,)
    assert one(
        con, "SELECT count(*) FROM bus_trips WHERE pid NOT IN (SELECT pid FROM persons)"
    ) == (0,)
    assert one(
        con,
        "SELECT count(*) FROM utility_payments WHERE payer_id NOT IN"
        " (SELECT household_id FROM persons UNION ALL SELECT credit_code FROM enterprises)",
    ) == (0,)
    # a household lives in one county
    assert one(
        con,
        "SELECT max(c) FROM (SELECT count(DISTINCT county) c FROM persons GROUP BY household_id)",
    ) == (1,)


def test_classifications_parse_and_fit_the_files(demo):
    for name, table in DEMO_TABLES.items():
        raw = yaml.safe_load(table.classification_path.read_text(encoding="utf-8"))
        classification = Classification.from_dict(raw)
        assert classification == table.classification()
        with open(demo[name], newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh))
        classification.check_against(header)
        assert classification.class_of(classification.entity_key) is ColumnClass.IDENTIFIER
        # every column holding resident IDs or credit codes declares its format
        for column, fmt in (("pid", "cn_resident_id"), ("credit_code", "cn_credit_code")):
            if column in header:
                assert classification.formats.get(column) == fmt, (name, column)


def test_skew_makes_dominance_matter(con):
    dominated = one(
        con,
        "SELECT count(*) FROM (SELECT county, industry, max(registered_capital) AS top,"
        " sum(registered_capital) AS total, count(*) AS n FROM enterprises GROUP BY ALL)"
        " WHERE n >= 3 AND top > 0.2 * total",
    )[0]
    assert dominated >= 5
    mean, median, zeros = one(
        con, "SELECT avg(income), median(income), count(*) FILTER (income = 0) FROM persons"
    )
    assert mean > 1.2 * median and zeros > PERSONS * 0.05
    top_share = one(
        con,
        "SELECT max(s) / sum(s) FROM (SELECT payer_id, sum(amount) s FROM utility_payments"
        " WHERE payer_kind = 'enterprise' AND utility = 'electricity' GROUP BY payer_id)",
    )[0]
    assert top_share > 0.05
    big, small = one(
        con, "SELECT max(n), min(n) FROM (SELECT county, count(*) n FROM persons GROUP BY county)"
    )
    assert big > 2 * small


def test_monthly_tables_cover_2025(con):
    months = one(
        con,
        "SELECT count(DISTINCT month), min(month), max(month), max(day(month))"
        " FROM utility_payments",
    )
    assert months[0] == 12 and str(months[1]) == "2025-01-01" and str(months[2]) == "2025-12-01"
    assert months[3] == 1
    per_account = one(
        con,
        "SELECT min(n), max(n) FROM (SELECT account_id, count(*) n FROM utility_payments GROUP BY 1)",
    )
    assert per_account == (12, 12)
    assert one(con, "SELECT count(DISTINCT payer_kind) FROM utility_payments") == (2,)
    assert (
        0
        < one(con, "SELECT avg(CASE WHEN in_arrears THEN 1 ELSE 0 END) FROM utility_payments")[0]
        < 0.2
    )
    gaps = one(
        con,
        "SELECT count(*) FILTER (n < 12), max(n) FROM (SELECT pid, count(*) n FROM social_insurance GROUP BY pid)",
    )
    assert gaps[0] > 0 and gaps[1] == 12


def test_bus_trips_about_five_per_person(con):
    trips, riders, cards = one(
        con, "SELECT count(*), count(DISTINCT pid), count(DISTINCT card_id) FROM bus_trips"
    )
    assert 3 * PERSONS < trips < 7 * PERSONS
    assert riders == cards
    assert one(con, "SELECT year(min(trip_date)), year(max(trip_date)) FROM bus_trips") == (
        2025,
        2025,
    )


@pytest.mark.slow
def test_full_size_is_fast_and_ids_stay_unique(tmp_path):
    # At 100k persons many share county, birth date and sex: sequence numbers must differ.
    start = time.perf_counter()
    paths = write_demo_data(tmp_path, persons=100_000, seed=7)
    assert time.perf_counter() - start < 30
    c = duckdb.connect()
    n, distinct = one(
        c, f"SELECT count(*), count(DISTINCT pid) FROM read_csv('{paths['persons']}')"
    )
    assert n == distinct == 100_000
    n, distinct = one(
        c, f"SELECT count(*), count(DISTINCT credit_code) FROM read_csv('{paths['enterprises']}')"
    )
    assert n == distinct == 5_000
