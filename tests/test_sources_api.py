"""Providers' sources through the HTTP API: an Excel workbook uploaded with its sheet and
header row, and a classification suggested for a source (one real server per module)."""

from __future__ import annotations

import pytest
from api_server import ApiServer, check_envelope, make_home

from policies.errors import InputError, SourceError
from sandbox.client import Client

openpyxl = pytest.importorskip("openpyxl")

CLASSES = "entity_key: pid\ncolumns: {pid: identifier, county: dimension, income: measure}\n"


def _hook(response) -> None:
    check_envelope(response)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    tokens = make_home(root / "home")
    server = ApiServer(root / "home").start()
    client = Client(server.url, tokens["provider"], hooks=[_hook])
    yield {"client": client, "root": root, "server": server}
    client.close()
    server.stop()


def _workbook(path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "人口"
    sheet.append(["2024 年人口"])
    sheet.append(["pid", "county", "income"])
    for i in range(60):
        sheet.append([f"P{i:04d}", ["东区", "西区"][i % 2], str(1000 + i)])
    sheet.merge_cells("A1:C1")
    book.create_sheet("notes")
    book.save(path)
    return path


def test_a_workbook_is_uploaded_with_its_sheet_and_header_row(api):
    root, client = api["root"], api["client"]
    book = _workbook(root / "persons.xlsx")
    (root / "persons.yaml").write_text(CLASSES, encoding="utf-8")
    reg = client.register_upload("persons", book, root / "persons.yaml", sheet="人口", header="2")
    assert reg.version == 1 and reg.rows == 60
    with pytest.raises(SourceError) as err:
        client.register_upload("other", book, root / "persons.yaml", sheet="人囗")
    assert "no sheet" in err.value.message and str(root) not in err.value.message
    assert "uploaded file 'persons.xlsx'" in err.value.message
    csv = root / "x.csv"
    csv.write_text("pid\n1\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        client.register_upload("other", csv, root / "persons.yaml", sheet="人口")
    assert "workbook uploads" in err.value.message
