"""Connectors against real files and real DuckDB database files in tmp_path."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from connectors import Source, open_source, redact_uri
from connectors.files import CSV_BLOCK_BYTES
from policies.errors import InputError, SourceError


def read_all(source: Source) -> tuple[pa.Table, list[int]]:
    with source:
        batches = list(source.batches())
    sizes = [b.num_rows for b in batches]
    for b in batches:
        assert b.schema == source.schema
    return pa.Table.from_batches(batches, schema=source.schema), sizes


def people_table(n: int) -> pa.Table:
    return pa.table(
        {
            "pid": pa.array([f"P{i:07d}" for i in range(n)]),
            "county": pa.array([f"county {i % 7}" for i in range(n)]),
            "income": pa.array([float(i % 1000) * 1.5 for i in range(n)]),
            "age": pa.array([20 + i % 60 for i in range(n)], pa.int64()),
        }
    )


# --- CSV ------------------------------------------------------------------------------------


def test_csv_reads_types_rows_and_progress(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("pid,county,income,age\nP1,east,10.5,30\nP2,west,,41\nP3,,7,52\n")
    source = open_source(str(path))
    assert source.uri == str(path)
    assert source.schema.names == ["pid", "county", "income", "age"]
    assert source.schema.field("income").type == pa.float64()
    assert source.schema.field("age").type == pa.int64()
    table, sizes = read_all(source)
    assert sizes == [3]
    assert table.column("pid").to_pylist() == ["P1", "P2", "P3"]
    assert table.column("income").to_pylist() == [10.5, None, 7.0]
    # An empty text field is NULL, as an empty number is.
    assert table.column("county").to_pylist() == ["east", "west", None]
    assert source.progress.total_bytes == path.stat().st_size
    assert source.progress.bytes_read == path.stat().st_size
    assert source.progress.rows_read == 3
    assert source.progress.fraction == 1.0


def test_csv_batches_are_bounded(tmp_path):
    path = tmp_path / "big.csv"
    pacsv.write_csv(people_table(300_000), path)
    assert path.stat().st_size > 4 * CSV_BLOCK_BYTES  # several reader blocks
    table, sizes = read_all(open_source(str(path), batch_rows=65536))
    assert sum(sizes) == 300_000
    assert len(sizes) >= 5
    assert max(sizes) <= 65536
    assert sizes[:-1] == [65536] * (len(sizes) - 1)
    assert table.column("pid")[299_999].as_py() == "P0299999"
    assert table.column("age").to_pylist()[:3] == [20, 21, 22]


def test_csv_bad_line_names_its_number_and_counts(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c,d,e,f\n1,2,3,4,5,6\n1,2,3,4,5,6\n1,2,3,4,5,6,SECRET7\n")
    with pytest.raises(SourceError) as err:
        read_all(open_source(str(path)))
    assert "line 4: expected 6 columns, got 7" in err.value.message
    assert str(path) in err.value.message
    assert "SECRET7" not in str(err.value)


def test_csv_bad_line_in_a_later_block(tmp_path):
    path = tmp_path / "late_bad.csv"
    rows = ["x,y"] + [f"{i},{i}" for i in range(200_000)] + ["1,2,3"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(SourceError, match=r"line 200002: expected 2 columns, got 3"):
        read_all(open_source(str(path)))


def test_csv_type_change_after_first_block_names_column_and_line(tmp_path):
    path = tmp_path / "drift.csv"
    n = 150_000
    lines = ["pid,code,amount"] + [f"P{i},{i},{i * 2}" for i in range(n)] + ["Pz,1234512X,5"]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 2 * CSV_BLOCK_BYTES
    source = open_source(str(path))
    assert source.schema.field("code").type == pa.int64()
    with pytest.raises(SourceError) as err:
        read_all(source)
    message = err.value.message
    assert f"line {n + 2}" in message
    assert "column 'code'" in message
    assert "?text=code" in message
    assert "1234512X" not in message
    # The way out the message suggests works.
    table, _ = read_all(open_source(f"csv://{path}?text=code"))
    assert table.schema.field("code").type == pa.string()
    assert table.column("code")[n].as_py() == "1234512X"
    assert table.schema.field("amount").type == pa.int64()


def test_csv_text_option_naming_a_missing_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("pid,code\n1,2\n")
    with pytest.raises(SourceError, match="column 'cod'.*did you mean 'code'"):
        open_source(f"csv://{path}?text=cod")


def test_csv_encoding_gbk(tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes("姓名,区县\n张三,任城区\n李四,兖州区\n".encode("gbk"))
    with pytest.raises(SourceError, match="not valid UTF-8.*encoding=gbk"):
        read_all(open_source(str(path)))
    table, _ = read_all(open_source(f"csv://{path}?encoding=gbk"))
    assert table.column("区县").to_pylist() == ["任城区", "兖州区"]
    # An ASCII header over GBK data: pyarrow would infer a binary column.
    data_only = tmp_path / "gbk_data.csv"
    data_only.write_bytes(b"name,county\n" + "张三,任城区\n".encode("gbk"))
    with pytest.raises(SourceError, match="column 'name' is not valid UTF-8.*encoding=gbk"):
        read_all(open_source(str(data_only)))


def test_forced_kind_and_file_url(tmp_path):
    path = tmp_path / "export data.txt"
    path.write_text("a,b\n1,x\n")
    table, _ = read_all(open_source(f"csv://{path}"))
    assert table.to_pylist() == [{"a": 1, "b": "x"}]
    csv_path = tmp_path / "export data.csv"
    csv_path.write_text("a,b\n2,y\n")
    url = "file://" + str(csv_path).replace(" ", "%20")
    table, _ = read_all(open_source(url))
    assert table.to_pylist() == [{"a": 2, "b": "y"}]
    with pytest.raises(SourceError, match="extension '.txt'.*csv://"):
        open_source(str(path))


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "people.csv"
    with pytest.raises(SourceError) as err:
        open_source(str(path))
    assert err.value.message == f"{path}: does not exist"
    assert isinstance(err.value, InputError)
    assert err.value.code == "bad_source"


def test_unknown_scheme_lists_known_ones_and_suggests():
    with pytest.raises(SourceError) as err:
        open_source("s3://bucket/people.csv")
    assert "unknown source scheme 's3://'" in err.value.message
    assert "postgresql://" in err.value.message and "duckdb://" in err.value.message
    with pytest.raises(SourceError, match="did you mean 'duckdb'"):
        open_source("duckbd:///x.duckdb?table=t")


def test_unknown_option_suggests(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    with pytest.raises(SourceError, match="unknown option 'encodng'.*did you mean 'encoding'"):
        open_source(f"csv://{path}?encodng=gbk")


def test_batches_can_be_read_once(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    source = open_source(str(path))
    list(source.batches())
    with pytest.raises(SourceError, match="already read"):
        list(source.batches())


# --- Parquet --------------------------------------------------------------------------------


def test_parquet_streams_bounded_batches(tmp_path):
    path = tmp_path / "people.parquet"
    expected = people_table(2500)
    pq.write_table(expected, path, row_group_size=1000)
    source = open_source(str(path), batch_rows=700)
    assert source.schema == expected.schema
    table, sizes = read_all(source)
    assert max(sizes) <= 700 and sum(sizes) == 2500
    assert table.equals(expected)
    assert source.progress.bytes_read == source.progress.total_bytes


def test_parquet_that_is_not_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet")
    with pytest.raises(SourceError, match="fake.parquet: not a readable Parquet file"):
        open_source(str(path))


def test_shared_pums_csv_reads(data_dir):
    path = str(data_dir / "pums_1000_pid.csv")
    table, _ = read_all(open_source(path, batch_rows=300))
    assert table.num_rows == 1000
    assert table.column_names == ["age", "sex", "educ", "race", "income", "married", "pid"]


# --- JSON lines -----------------------------------------------------------------------------


def write_jsonl(path, records, extra_lines=()):
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


@pytest.mark.parametrize("name", ["p.jsonl", "p.ndjson", "p.json"])
def test_jsonl_reads_in_bounded_batches(tmp_path, name):
    path = tmp_path / name
    records = [{"pid": f"P{i}", "county": "任城区", "income": i * 1.5} for i in range(1000)]
    write_jsonl(path, records)
    source = open_source(str(path), batch_rows=300)
    assert source.schema.names == ["pid", "county", "income"]
    table, sizes = read_all(source)
    assert sizes == [300, 300, 300, 100]
    assert table.to_pylist() == records
    assert source.progress.bytes_read == path.stat().st_size


def test_jsonl_forced_kind_and_blank_lines(tmp_path):
    path = tmp_path / "dump.txt"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}')  # blank line, no final newline
    table, _ = read_all(open_source(f"jsonl://{path}", batch_rows=2))
    assert table.column("a").to_pylist() == [1, 2, 3]


def test_jsonl_type_change_names_line_and_field(tmp_path):
    path = tmp_path / "drift.jsonl"
    records = [{"pid": f"P{i}", "amount": i} for i in range(250)]
    write_jsonl(path, records, ['{"pid": "P250", "amount": "SECRET"}'])
    with pytest.raises(SourceError) as err:
        read_all(open_source(str(path), batch_rows=100))
    assert "line 251: field 'amount' changed from number to string" in err.value.message
    assert "SECRET" not in err.value.message


def test_jsonl_bad_line_and_new_field_and_array(tmp_path):
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"a": 1}] * 150, ['{"a": 2'])
    with pytest.raises(SourceError, match="bad.jsonl: line 151: not a JSON object"):
        read_all(open_source(str(bad), batch_rows=100))

    extra = tmp_path / "extra.jsonl"
    write_jsonl(extra, [{"a": 1}] * 120 + [{"a": 1, "b": 2}])
    with pytest.raises(SourceError, match="line 121: field 'b' does not appear in the first 100"):
        read_all(open_source(str(extra), batch_rows=100))

    array = tmp_path / "array.json"
    array.write_text('[{"a": 1}, {"a": 2}]')
    with pytest.raises(SourceError, match="JSON array is not supported"):
        open_source(str(array))


# --- DuckDB files ---------------------------------------------------------------------------


@pytest.fixture
def duckdb_file(tmp_path):
    path = tmp_path / "provider.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE people AS SELECT 'P' || range AS pid, range % 5 AS county, "
        "range * 2.5 AS income FROM range(1000)"
    )
    con.execute("CREATE SCHEMA social")
    con.execute(
        "CREATE TABLE social.payments AS SELECT range % 10 AS pid, 100 AS amount FROM range(30)"
    )
    con.close()
    return path


def test_duckdb_table_streams_bounded_batches(duckdb_file):
    source = open_source(f"duckdb://{duckdb_file}?table=people", batch_rows=256)
    assert source.schema.names == ["pid", "county", "income"]
    table, sizes = read_all(source)
    assert sum(sizes) == 1000 and max(sizes) <= 256
    assert table.column("pid")[999].as_py() == "P999"


def test_duckdb_schema_table_and_query(duckdb_file):
    table, _ = read_all(open_source(f"duckdb://{duckdb_file}?table=social.payments"))
    assert table.num_rows == 30
    query = "SELECT county, count(*) AS n FROM people GROUP BY county ORDER BY county"
    table, _ = read_all(open_source(f"duckdb://{duckdb_file}?query={query.replace(' ', '%20')}"))
    assert table.column("n").to_pylist() == [200] * 5


def test_duckdb_missing_table_suggests(duckdb_file):
    with pytest.raises(SourceError) as err:
        open_source(f"duckdb://{duckdb_file}?table=peple")
    assert "table 'peple' does not exist" in err.value.message
    assert "did you mean 'people'" in err.value.message


def test_duckdb_missing_file_and_bad_options(tmp_path, duckdb_file):
    missing = tmp_path / "none.duckdb"
    with pytest.raises(SourceError, match=f"{missing}: DuckDB database file does not exist"):
        open_source(f"duckdb://{missing}?table=t")
    with pytest.raises(SourceError, match="exactly one of"):
        open_source(f"duckdb://{duckdb_file}")
    with pytest.raises(SourceError, match="unknown option 'tabel'.*did you mean 'table'"):
        open_source(f"duckdb://{duckdb_file}?tabel=people")


def test_duckdb_is_read_only_and_closed_to_other_files(tmp_path, duckdb_file):
    other = tmp_path / "other.csv"
    other.write_text("a\n1\n")
    with pytest.raises(SourceError, match="the query cannot run"):
        open_source(f"duckdb://{duckdb_file}?query=CREATE%20TABLE%20x%20AS%20SELECT%201")
    with pytest.raises(SourceError, match="the query cannot run"):
        open_source(f"duckdb://{duckdb_file}?query=SELECT%20*%20FROM%20read_csv('{other}')")
    # The file is unchanged and the connection released: a writer can open it.
    con = duckdb.connect(str(duckdb_file))
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    con.close()
    assert tables == {"people", "payments"}


# --- URIs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/x?table=a.b", "postgresql://app:***@db:5432/x?table=a.b"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        ("postgresql://db/x?user=app&password=s3cret", "postgresql://db/x?user=app&password=***"),
        ("postgresql://app:p@ss@db/x", "postgresql://app:***@db/x"),
        ("duckdb:///data/x.duckdb?table=t", "duckdb:///data/x.duckdb?table=t"),
        ("/data/a:b.csv", "/data/a:b.csv"),
        # a password holding "#", "?" or "/" unencoded (the drivers take "#" so) hides whole
        ("mysql://app:pw#SECRET-123@db/x?table=t", "mysql://app:***@db/x?table=t"),
        ("postgresql://app:pw?SECRET-123@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:pw/SECRET-123@db/x", "postgresql://app:***@db/x"),
        (
            "postgresql://db/x?password=pw#SECRET-123&table=t",
            "postgresql://db/x?password=***&table=t",
        ),
        # a port, a path and an "@" in the query are no password
        ("postgresql://db:5432/x?query=a%40b@c", "postgresql://db:5432/x?query=a%40b@c"),
        ("postgresql://app:s3cret@db/x?query=a@b", "postgresql://app:***@db/x?query=a@b"),
        ("csv:///data/a:b@c.csv", "csv:///data/a:b@c.csv"),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown
