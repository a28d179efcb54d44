"""A released product opened by an analyst without help (issue 26, products).

One platform with firms in four Jining counties (Chinese names, one county with three
firms, so its cells are suppressed); two operators, one of them under a grant that
rounds counts (``round_10_5``). Each product is released by the real job path and
opened as an analyst's tools open it: Excel (byte order mark, else the ANSI code
page), Frictionless, pyarrow, a browser (the HTML report) and a Markdown reader.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from policies.errors import IntegrityError
from sandbox.core import ledger, principals
from sandbox.core.keys import load_public
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.data.product_report import md_escape, write_reports
from sandbox.data.product_table import BOM, FLAGS, integer_types, with_flags
from sandbox.data.release import PRODUCT_FILES, verify_product, write_files
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from tests.test_dp import QUERY as DP_QUERY
from tests.test_dp import dp_cast  # noqa: F401  (a fixture)

COUNTIES = ["任城区", "兖州区", "曲阜市", "泗水县"]
FIRMS = {
    "entity_key": "fid",
    "entity_kind": "organisation",
    "columns": {"fid": "identifier", "county": "dimension", "staff": "measure"},
    "domains": {"county": {"codes": COUNTIES}},
}
SQL = "SELECT county, COUNT(*) AS n, SUM(staff) AS staff FROM firms GROUP BY county ORDER BY county"
RULE_WORDS = ("threshold", "dominance", "p_ratio", "p%", "complementary", "differencing", "class")


def _firms() -> list[dict]:
    rows = []
    for i in range(150):  # 50 firms in each of the first three counties
        rows.append({"fid": f"F{i:04d}", "county": COUNTIES[i % 3], "staff": 3 + i % 7})
    for i in range(3):  # three firms in 泗水县: too few to publish
        rows.append({"fid": f"S{i:04d}", "county": COUNTIES[3], "staff": 40 + i})
    return rows


@dataclass
class Product:
    platform: Platform
    product_id: str

    @property
    def folder(self) -> Path:
        return self.platform.home / "products" / self.product_id

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def table(self) -> pa.Table:
        return pq.read_table(self.folder / "output.parquet")


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Product]:
    home = tmp_path_factory.mktemp("product-files")
    platform = Platform.init(home / "home")
    for name, role, place in (
        ("stats", Role.PROVIDER, None),
        ("city", Role.AUTHORITY, "city"),
        ("bank", Role.OPERATOR, None),
        ("shop", Role.OPERATOR, None),
    ):
        with platform.store.transaction() as conn:
            principals.insert(conn, name, role, name, place, ledger.now_utc())
    with platform.store.read() as conn:
        provider, authority = by_name(conn, "stats"), by_name(conn, "city")
        bank, shop = by_name(conn, "bank"), by_name(conn, "shop")
    path = home / "firms.parquet"
    pq.write_table(pa.Table.from_pylist(_firms()), path)
    vault.register(platform, provider, "firms", str(path), Classification.from_dict(FIRMS))
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    add_grant(
        platform, authority, "shop", "firms", until="2099-01-01",
        disclosure={"mitigation": "round_10_5"},
    )  # fmt: skip
    service = JobService(platform, spare=False)
    try:
        plain = service.submit(bank, {"sql": SQL})
        rounded = service.submit(shop, {"sql": SQL})
    finally:
        service.close()
    assert plain.state is rounded.state is JobState.RELEASED, (plain, rounded)
    yield {
        "plain": Product(platform, plain.product_id),
        "rounded": Product(platform, rounded.product_id),
    }
    platform.close()


def excel_text(data: bytes, ansi: str = "gbk") -> str:
    """What Excel makes of a CSV's bytes: UTF-8 when they start with a byte order mark,
    else the desktop's ANSI code page (936, GBK, on a Chinese Windows)."""
    if data.startswith(BOM):
        return data[len(BOM) :].decode("utf-8")
    return data.decode(ansi, errors="replace")


def test_excel_on_a_chinese_desktop_reads_the_county_names_intact(released):
    data = released["plain"].read("output.csv")
    assert data.startswith(BOM)
    rows = list(csv.DictReader(io.StringIO(excel_text(data), newline="")))
    assert {r["county"] for r in rows} == set(COUNTIES)
    # the same bytes without the mark: what Excel showed before (mojibake)
    garbled = {r["county"] for r in csv.DictReader(io.StringIO(excel_text(data[3:])))}
    assert not garbled & set(COUNTIES)


def test_each_measure_has_a_flag_and_suppressed_cells_are_flagged_not_blank(released):
    table = released["plain"].table()
    assert table.column_names == ["county", "n", "n_flag", "staff", "staff_flag"]
    rows = {r["county"]: r for r in table.to_pylist()}
    small = rows["泗水县"]
    assert small["n"] is None and small["staff"] is None
    assert small["n_flag"] == small["staff_flag"] == "suppressed"
    for county in COUNTIES[:3]:
        assert rows[county]["n"] == 50 and rows[county]["n_flag"] is None
        assert rows[county]["staff_flag"] is None
    text = excel_text(released["plain"].read("output.csv"))
    line = next(x for x in text.splitlines() if "泗水县" in x)
    assert line == '"泗水县",,"suppressed",,"suppressed"', line
    # a flag says what, never why: nothing but the three words
    for product in released.values():
        for name in product.table().column_names:
            if name.endswith("_flag"):
                assert set(product.table().column(name).to_pylist()) <= {*FLAGS, None}


def test_rounded_counts_are_flagged_every_one_and_sums_are_not(released):
    rows = released["rounded"].table().to_pylist()
    shown = [r for r in rows if r["county"] != "泗水县"]
    assert all(r["n"] % 5 == 0 and r["n_flag"] == "rounded" for r in shown), shown
    assert all(r["staff_flag"] is None for r in shown)
    report = json.loads(released["rounded"].read("report.json"))
    assert report["counts"]["rounded"] == len(shown)


def test_whole_numbers_are_integers_in_parquet_csv_and_the_package(released):
    product = released["plain"]
    schema = product.table().schema
    assert schema.field("staff").type == pa.int64(), schema  # was decimal128(38, 0)
    assert schema.field("n").type == pa.int64()
    text = excel_text(product.read("output.csv"))
    staff = [r["staff"] for r in csv.DictReader(io.StringIO(text)) if r["staff"]]
    assert staff and all(re.fullmatch(r"\d+", s) for s in staff), staff
    package = json.loads(product.read("datapackage.json"))
    fields = {f["name"]: f["type"] for f in package["resources"][1]["schema"]["fields"]}
    assert fields == {
        "county": "string", "n": "integer", "n_flag": "string",
        "staff": "integer", "staff_flag": "string",
    }  # fmt: skip


def test_a_sum_too_large_for_int64_stays_a_decimal():
    big = pa.array([2**63, 5], type=pa.decimal128(38, 0))
    fits = pa.array([2**62, None], type=pa.decimal128(38, 0))
    table = integer_types(pa.table({"big": big, "fits": fits}))
    assert table.schema.field("big").type == pa.decimal128(38, 0)
    assert table.schema.field("fits").type == pa.int64()
    assert table.column("fits").to_pylist() == [2**62, None]


def test_the_datapackage_validates_with_frictionless_and_describes_every_file(released):
    from frictionless import Package, validate

    for product in released.values():
        report = validate(product.folder / "datapackage.json")
        assert report.valid, report.flatten(["type", "message"])
        package = json.loads(product.read("datapackage.json"))
        manifest = json.loads(product.read("manifest.json"))
        described = {r["path"] for r in package["resources"]}
        assert described == set(manifest["files"]) - {"datapackage.json"}
        # the analyst's tool loads the table from the package, Chinese names and all
        rows = Package(product.folder / "datapackage.json").get_resource("output-csv").read_rows()
        assert {r["county"] for r in rows} == set(COUNTIES)


def test_every_file_is_in_the_signed_manifest_and_a_changed_report_fails(released, tmp_path):
    product = released["plain"]
    public = load_public(product.platform.public_key_path)
    manifest = verify_product(product.folder, public)
    assert set(manifest["files"]) == {*PRODUCT_FILES, "chart.svg"}
    copy = tmp_path / product.product_id
    shutil.copytree(product.folder, copy)
    html = (copy / "report.html").read_text(encoding="utf-8")
    (copy / "report.html").write_text(html.replace("泗水县", "微山县"), encoding="utf-8")
    with pytest.raises(IntegrityError, match="file report.html was changed after release"):
        verify_product(copy, public)


class _Page(HTMLParser):
    """The HTML as a browser parses it: the elements opened, the text, the sources."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.sources += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_report_says_what_was_asked_of_what_and_what_was_held_back(released):
    product = released["plain"]
    page = _Page()
    page.feed(product.read("report.html").decode("utf-8"))
    text = " ".join(" ".join(page.text).split())
    assert "script" not in page.tags
    assert all(s.startswith("data:image/svg+xml;base64,") for s in page.sources), page.sources
    assert "COUNT(*)" in text and "firms" in text  # the question and the dataset
    assert "min_entities" in text and "at least 10 different people or organisations" in text
    assert "2 of 8 numbers are suppressed" in text
    report = json.loads(product.read("report.json"))
    assert {c["row"] for c in report["suppressed_cells"]} == {3}  # the job view's numbering
    assert "report.html and report.md count them from 1" in report["row_numbers"]
    # rows numbered from 1: 泗水县 sorts last of the four
    assert re.search(r"\b4 泗水县 n\b", text), text
    for county in COUNTIES:
        assert county in text


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_report_names_no_rule_for_a_suppressed_cell(released, tmp_path):
    """The suppressed cells are listed by where they are, never why; the rules are
    described from the parameters alone: the same words for a table with nothing
    suppressed under the same parameters."""
    product = released["plain"]
    md = product.read("report.md").decode("utf-8")
    held = _section(md, "What was held back or changed")
    assert "| 4 | 泗水县 | n |" in held and "| 4 | 泗水县 | staff |" in held
    for word in RULE_WORDS:
        assert word not in held.lower(), word
    report = json.loads(product.read("report.json"))
    manifest = json.loads(product.read("manifest.json"))
    clean = pa.table({"county": ["任城区", "兖州区"], "n": [50, 50], "staff": [300, 310]})
    nothing = {**report, "suppressed_cells": [], "counts": {"cells": 4, "suppressed": 0}}
    write_reports(tmp_path, "prod-0", with_flags(clean, manifest, nothing), nothing, manifest,
                  manifest["measures"])  # fmt: skip
    other = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert _section(md, "How the numbers were protected") == _section(
        other, "How the numbers were protected"
    )
    assert "No number was suppressed." in _section(other, "What was held back or changed")


def test_the_chart_is_an_svg_with_a_title_axes_and_the_county_names(released):
    svg = released["plain"].read("chart.svg").decode("utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "n by county" in svg  # the title
    for county in COUNTIES:
        assert county in svg  # text, drawn by the reader's fonts
    assert "suppressed" in svg
    md = released["plain"].read("report.md").decode("utf-8")
    assert "![n by county](chart.svg)" in md


def test_markdown_and_html_escape_what_the_data_and_the_query_hold(tmp_path):
    table = pa.table(
        {
            "county": ["<script>alert(1)</script>", "a|b [x](http://e.example)"],
            "n": pa.array([12, 30], type=pa.int64()),
        }
    )
    manifest = {
        "measures": {"n": "count_star"},
        "job": {"id": 1, "kind": "sql_aggregate", "sql": "SELECT '```' AS x"},
        "datasets": [{"name": "d", "version": 1, "rows": 42, "sha256": "0" * 64}],
    }
    report = {"params": {"min_entities": 10}, "suppressed_cells": [], "counts": {"cells": 2}}
    flagged = with_flags(table, manifest, report)
    written = write_reports(tmp_path, "prod-000009", flagged, report, manifest, {"n": "count_star"})
    assert written == ["report.html", "report.md", "chart.svg"]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "\\<script\\>" in md and "a\\|b \\[x\\](http://e.example)" in md
    assert "````sql\nSELECT '```' AS x\n````" in md  # a fence longer than the query's
    assert md_escape("line one\nline two") == "line one line two"


def test_the_dp_modes_cells_are_flagged_noised_and_the_report_gives_the_interval(
    platform,
    dp_cast,  # noqa: F811
):
    cast, _agreement = dp_cast
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": DP_QUERY})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome
    folder = platform.home / "products" / outcome.product_id
    table = pq.read_table(folder / "output.parquet")
    assert table.column("n_flag").to_pylist() == ["noised", "noised"]
    assert table.column("total_flag").to_pylist() == ["noised", "noised"]
    assert table.schema.metadata and b"dp" in table.schema.metadata  # the noise statement
    page = _Page()
    page.feed((folder / "report.html").read_text(encoding="utf-8"))
    text = " ".join(" ".join(page.text).split())
    half = outcome.report["dp"]["columns"]["n"]["half_width_95"]
    assert "are noised" in text and f"n {half}" in text, text


def test_a_product_written_before_the_lock_is_kept_only_for_the_same_output(released):
    """The release writes the product before the store's write lock, from the output it
    expects; inside the transaction it keeps those files only if the checks there answer
    the same table, report and manifest (the time aside), else it writes them again."""
    platform = released["plain"].platform
    table = pa.table({"county": COUNTIES[:2], "n": pa.array([50, 50], type=pa.int64())})
    report = {"params": {"min_entities": 10}, "suppressed_cells": [], "counts": {"cells": 2}}
    fields = {"measures": {"n": "count_star"}, "verdict": "released", "created_at": "t0"}
    written = write_files(platform, "prod-999999", table, report, fields)
    try:
        assert written.matches(table, dict(report), {**fields, "created_at": "t1"})
        fewer = table.set_column(1, "n", pa.array([50, None], type=pa.int64()))
        assert not written.matches(fewer, report, fields)  # a cell suppressed inside
        held = {**report, "suppressed_cells": [{"row": 1, "column": "n"}]}
        assert not written.matches(table, held, fields)
        assert not written.matches(table, report, {**fields, "verdict": "released_with_x"})
        assert json.loads((written.work / "manifest.json").read_bytes())["created_at"] == "t0"
    finally:
        written.discard()
    assert not written.work.exists()


def test_no_file_carries_a_suppressed_cells_value_rule_or_contributors(released):
    """An operator who reads every file of its product, the reports and the package
    included, learns of the suppressed cells of 泗水县 only where they are: not their
    true values (3 firms, 123 staff), not the rule that held them, not the firms."""
    true_staff = re.compile(r"(?<![\w.,])123(?![\w.,])")
    for product in released.values():
        report = json.loads(product.read("report.json"))
        assert report["suppressed_cells"]
        assert all(set(c) == {"row", "column"} for c in report["suppressed_cells"])
        assert "cells" not in report  # the check's cell by cell verdicts stay inside
        for name in json.loads(product.read("manifest.json"))["files"]:
            text = product.read(name).decode("utf-8", errors="replace")
            if name == "chart.svg":  # its drawing is numbers; its words are in <text>
                text = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", text))
            if name == "output.parquet":
                text = " ".join(map(str, product.table().to_pylist()))
            assert not true_staff.search(text), (name, true_staff.search(text))
            assert not re.search(r"\bS000[0-2]\b", text), name  # the small county's firms
            assert "__" not in text.replace("__init__", ""), name  # no evidence column
        page = _Page()
        page.feed(product.read("report.html").decode("utf-8"))
        held = " ".join(page.text).split("What was held back or changed", 1)[1]
        held = held.split("The table", 1)[0].lower()
        assert "泗水县" in held
        for word in RULE_WORDS:
            assert word not in held, word


def _grid_product(home: Path, rows: list[dict]) -> Product:
    """A product of ``BY_SECTOR`` over ``rows`` (declared sectors) on a platform of its own."""
    from tests.test_declared_grid import BY_SECTOR, CLASSIFICATION

    platform = Platform.init(home)
    for name, role, place in (
        ("stats", Role.PROVIDER, None),
        ("city", Role.AUTHORITY, "city"),
        ("bank", Role.OPERATOR, None),
    ):
        with platform.store.transaction() as conn:
            principals.insert(conn, name, role, name, place, ledger.now_utc())
    with platform.store.read() as conn:
        provider, authority, bank = (by_name(conn, n) for n in ("stats", "city", "bank"))
    path = home.parent / f"{home.name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    classification = Classification.from_dict(CLASSIFICATION)
    vault.register(platform, provider, "firms", str(path), classification)
    add_grant(platform, authority, "bank", "firms", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(bank, {"sql": BY_SECTOR})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome
    return Product(platform, outcome.product_id)


def test_a_group_of_one_and_an_empty_group_give_the_same_files(tmp_path):
    """An operator who wants to know whether a declared sector has anyone compares the
    product with the group empty and with one firm in it: the flags, the table, the
    chart, the package and the reports' sections on the cells read the same."""
    from tests.test_declared_grid import _firms

    lone = [{"fid": "LONE", "county": "north", "sector": "S29", "staff": 900}]
    empty = _grid_product(tmp_path / "empty", _firms(10))
    one = _grid_product(tmp_path / "one", _firms(10, lone))
    try:
        assert empty.table().to_pylist()[-1]["n_flag"] == "suppressed"
        for name in ("output.csv", "output.parquet", "chart.svg"):
            assert empty.read(name) == one.read(name), name
        md = [p.read("report.md").decode("utf-8") for p in (empty, one)]
        for title in ("What was held back or changed", "The table", "Columns", "Chart"):
            assert _section(md[0], title) == _section(md[1], title), title
        package = [json.loads(p.read("datapackage.json"))["resources"] for p in (empty, one)]
        assert package[0] == package[1]
        report = [json.loads(p.read("report.json")) for p in (empty, one)]
        assert report[0]["suppressed_cells"] == report[1]["suppressed_cells"]
        assert report[0]["counts"] == report[1]["counts"]
    finally:
        empty.platform.close()
        one.platform.close()
