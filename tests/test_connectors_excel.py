"""Excel workbooks as sources: each test writes its workbook with openpyxl, reads it back
through ``open_source`` (python-calamine) and checks the values or the refusal's cell."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from source_helpers import release_counts

from connectors import open_source
from connectors.excel import cell_name
from policies.errors import SourceError

openpyxl = pytest.importorskip("openpyxl")


def workbook(path, rows, *, title="Sheet1", merges=(), extra_sheets=(), formats=None):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(list(row))
    for cells in merges:
        sheet.merge_cells(cells)
    for cell, fmt in (formats or {}).items():
        sheet[cell].number_format = fmt
    for name, more in extra_sheets:
        other = book.create_sheet(name)
        for row in more:
            other.append(list(row))
    book.save(path)
    return str(path)


def read(uri, batch_rows=1000):
    with open_source(uri, batch_rows=batch_rows) as source:
        batches = list(source.batches())
        return pa.Table.from_batches(batches, schema=source.schema), [b.num_rows for b in batches]


def refusal(uri) -> str:
    with pytest.raises(SourceError) as err:
        read(uri)
    return err.value.message


def test_cell_names():
    assert [cell_name(0, 0), cell_name(6, 1), cell_name(0, 25), cell_name(9, 26)] == [
        "A1", "B7", "Z1", "AA10"
    ]  # fmt: skip


def test_types_come_from_every_cell_and_batches_are_bounded(tmp_path):
    rows = [("pid", "county", "income", "born", "active", "at")]
    for i in range(25):
        rows.append((f"{i:04d}", f"c{i % 3}", i * 1.5, dt.date(1980, 1, 1 + i), i % 2 == 0,
                     dt.datetime(2024, 5, 1, 8, i)))  # fmt: skip
    path = workbook(tmp_path / "people.xlsx", rows)
    table, sizes = read(path, batch_rows=10)
    assert sizes == [10, 10, 5]
    assert {f.name: f.type for f in table.schema} == {
        "pid": pa.string(),
        "county": pa.string(),
        "income": pa.float64(),
        "born": pa.date32(),
        "active": pa.bool_(),
        "at": pa.timestamp("us"),
    }
    first = table.to_pylist()[1]
    assert first == {
        "pid": "0001", "county": "c1", "income": 1.5, "born": dt.date(1980, 1, 2),
        "active": False, "at": dt.datetime(2024, 5, 1, 8, 1),
    }  # fmt: skip


def test_times_durations_and_a_mix_of_kinds(tmp_path):
    rows = [("at", "took", "mixed"), (dt.time(8, 30), dt.timedelta(hours=30), True),
            (dt.time(9, 0), dt.timedelta(minutes=5), 3)]  # fmt: skip
    path = workbook(tmp_path / "t.xlsx", rows, formats={"B2": "[h]:mm", "B3": "[h]:mm"})
    table, _ = read(f"excel://{path}?text=mixed")
    assert table.column("at").to_pylist() == [dt.time(8, 30), dt.time(9, 0)]
    assert table.column("took").to_pylist() == [dt.timedelta(hours=30), dt.timedelta(minutes=5)]
    assert table.column("mixed").to_pylist() == ["TRUE", "3"]
    assert "cell C3 holds a number" in refusal(path)


def test_sheet_option_and_a_missing_sheet_suggests(tmp_path):
    path = workbook(
        tmp_path / "b.xlsx", [("x",), (1,)], extra_sheets=[("人口", [("age",), (30,), (40,)])]
    )
    table, _ = read(f"excel://{path}?sheet=人口")
    assert table.column("age").to_pylist() == [30, 40]
    assert table.schema.field("age").type == pa.int64()  # whole numbers are integers
    table, _ = read(f"{path}?sheet=人口")  # a plain path takes the options too
    assert table.num_rows == 2
    assert "no sheet 'Sheet2'; did you mean 'Sheet1'?" in refusal(f"excel://{path}?sheet=Sheet2")
    assert "known: Sheet1, 人口" in refusal(f"excel://{path}?sheet=x")


def test_header_row_skips_a_title_and_merged_header_cells_name_their_columns(tmp_path):
    rows = [
        ("2024年 收入统计",),
        ("pid", "收入", None, "county"),
        ("a", 1, 2, "x"),
        ("b", 3, 4, "y"),
    ]
    path = workbook(tmp_path / "h.xlsx", rows, merges=["A1:D1", "B2:C2"])
    table, _ = read(f"excel://{path}?header=2")
    assert table.schema.names == ["pid", "收入", "收入_2", "county"]
    assert table.column("收入_2").to_pylist() == [2, 4]
    # Two header rows: a group title merged over its sub-titles.
    rows = [("pid", "收入", None), (None, "2023", "2024"), ("a", 1, 2)]
    path = workbook(tmp_path / "h2.xlsx", rows, merges=["B1:C1", "A1:A2"])
    table, _ = read(f"excel://{path}?header=1-2")
    assert table.schema.names == ["pid", "收入_2023", "收入_2024"]


def test_merged_data_cells_fill_their_range(tmp_path):
    rows = [("county", "town", "n"), ("东区", "t1", 1), (None, "t2", 2), (None, "t3", 3)]
    path = workbook(tmp_path / "m.xlsx", rows, merges=["A2:A4"])
    table, _ = read(path)
    assert table.column("county").to_pylist() == ["东区"] * 3


def test_empty_trailing_rows_are_dropped_and_an_inner_empty_row_is_refused(tmp_path):
    rows = [("a", "b"), (1, 2), (3, 4), (None, None), (None, None)]
    path = workbook(tmp_path / "t.xlsx", rows, formats={"A5": "0.00"})
    table, _ = read(path)
    assert table.num_rows == 2
    rows = [("a", "b"), (1, 2), (None, None), ("合计", 2)]
    path = workbook(tmp_path / "inner.xlsx", rows)
    message = refusal(path)
    assert "row 3 is empty and rows with values follow it" in message
    assert "?last_row=2" in message
    table, _ = read(f"excel://{path}?last_row=2")
    assert table.column("a").to_pylist() == [1]


def test_numbers_stored_as_text_are_numbers_and_codes_stay_text(tmp_path):
    rows = [("amount", "code", "all_text", "pid"), (12, "007", "5", "370802199001011234"),
            ("13", "010", "6", "370802199001011235"), (" 1,250.5 ", "011", "7", "1")]  # fmt: skip
    table, _ = read(workbook(tmp_path / "n.xlsx", rows))
    assert table.column("amount").to_pylist() == [12.0, 13.0, 1250.5]
    assert table.column("code").to_pylist() == ["007", "010", "011"]
    assert table.column("all_text").to_pylist() == [5, 6, 7]
    assert table.column("pid").to_pylist()[0] == "370802199001011234"


def test_a_word_in_a_column_of_numbers_names_its_cell_never_its_value(tmp_path):
    rows = [("pid", "amount"), ("a", 1), ("b", 2), ("c", "SECRET-unknown")]
    path = workbook(tmp_path / "w.xlsx", rows)
    message = refusal(path)
    assert "cell B4" in message and "?text=amount" in message
    assert "SECRET" not in message
    table, _ = read(f"excel://{path}?text=amount")
    assert table.column("amount").to_pylist() == ["1", "2", "SECRET-unknown"]


def test_date_serials_are_refused_by_cell_or_read_with_the_dates_option(tmp_path):
    rows = [("born",), (dt.date(1990, 1, 2),), (45000,), (45000.5,)]
    path = workbook(tmp_path / "d.xlsx", rows, formats={"A3": "General", "A4": "General"})
    message = refusal(path)
    assert "cell A3" in message and "?dates=born" in message
    table, _ = read(f"excel://{path}?dates=born")
    assert table.column("born").to_pylist() == [
        dt.datetime(1990, 1, 2), dt.datetime(2023, 3, 15), dt.datetime(2023, 3, 15, 12)
    ]  # fmt: skip
    rows = [("born",), (45000,), (45001,)]
    table, _ = read(f"excel://{workbook(tmp_path / 'd2.xlsx', rows)}?dates=born")
    assert table.column("born").to_pylist() == [dt.date(2023, 3, 15), dt.date(2023, 3, 16)]
    assert "cell A2" in refusal(f"excel://{workbook(tmp_path / 'd3.xlsx', [('b',), (5,)])}?dates=b")


def test_an_identity_number_typed_as_a_number_is_refused(tmp_path):
    rows = [("pid",), ("370802199001011234",), (370802199001011234,)]
    message = refusal(workbook(tmp_path / "id.xlsx", rows))
    assert "cell A3" in message and "15 significant digits" in message
    assert "3708021990" not in message


def test_header_problems_name_the_cell(tmp_path):
    message = refusal(workbook(tmp_path / "e.xlsx", [("a", None), (1, 2)]))
    assert "cell B1" in message and "empty" in message
    message = refusal(workbook(tmp_path / "dup.xlsx", [("a", "a"), (1, 2)]))
    assert "cells A1 and B1" in message
    message = refusal(workbook(tmp_path / "none.xlsx", [("a", "b")]))
    assert "no data rows" in message
    path = workbook(tmp_path / "o.xlsx", [("a",), (1,)])
    assert "option text names column 'b'" in refusal(f"excel://{path}?text=b")
    assert "option header" in refusal(f"excel://{path}?header=x")
    assert "unknown option 'shet'" in refusal(f"excel://{path}?shet=a")


def test_not_a_workbook_and_missing_file(tmp_path):
    bad = tmp_path / "fake.xlsx"
    bad.write_text("pid,county\n")
    assert "not a readable workbook" in refusal(str(bad))
    assert "does not exist" in refusal(str(tmp_path / "gone.xlsx"))


def test_a_workbook_through_registration_to_a_released_job(
    platform, provider, make_principal, tmp_path
):
    rows = [("人口 2024",), ("pid", "county", "income")]
    rows += [(f"P{i:04d}", ["东区", "西区", "南区"][i % 3], str(100 + i)) for i in range(300)]
    rows += [(None, None, None)] * 3
    path = workbook(tmp_path / "persons.xlsx", rows, title="人口", merges=["A1:C1"])
    classes = {
        "entity_key": "pid",
        "columns": {"pid": "identifier", "county": "dimension", "income": "measure"},
    }
    counts = release_counts(
        platform, provider, make_principal, "persons", f"excel://{path}?sheet=人口&header=2",
        classes,
    )  # fmt: skip
    assert counts == {"东区": 100, "西区": 100, "南区": 100}


def test_no_refusal_quotes_a_data_cell_whatever_the_options(tmp_path):
    """A provider (or a refresh of a changed workbook) meets every refusal a data cell can
    cause; each names the cell and the column, never what the cell holds."""
    secret = "SECRET-陈某某"
    cases = [
        ([("pid", "born"), ("a", dt.date(1990, 1, 2)), ("b", secret)], ""),  # a word among dates
        ([("pid", "n"), ("a", 1), ("b", 2), ("c", secret)], ""),  # a word among numbers
        ([("pid", "n"), ("a", True), ("b", secret), ("c", False)], ""),  # a word among booleans
        ([("pid", "born"), ("a", 45000), ("b", secret)], "?dates=born"),  # option dates
        ([("pid", "born"), ("a", 45000), ("b", 12)], "?dates=born"),  # a serial out of range
        ([("pid", "n"), ("a", 1), (None, None), (secret, 3)], ""),  # a row after an empty one
        ([("pid", "n"), (secret, secret), ("b", 2)], "?header=2"),  # a data row as the header
        ([("pid", "n"), ("a", 1), ("b", 2), (secret, 3)], "?header=4"),  # no rows under it
        ([("pid", "n"), ("a", 1), ("b", 2), (secret, 3)], "?text=nn"),  # a column not there
        ([("pid", "n"), ("a", 1), ("b", 2), (secret, 3)], "?last_row=1"),  # last row too high
    ]
    for i, (rows, options) in enumerate(cases):
        path = workbook(tmp_path / f"w{i}.xlsx", rows)
        message = refusal(f"excel://{path}{options}")
        assert "SECRET" not in message and "陈某某" not in message, (i, message)
