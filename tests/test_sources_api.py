"""Providers' sources through the HTTP API: an Excel workbook uploaded with its sheet and
header row, a classification suggested for a source, a source refreshed and scheduled (one
real server per module), and a schedule fired from a server's own job loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import duckdb
import pytest
import yaml
from api_server import ROOT, ApiServer, check_envelope, make_home

from policies.errors import InputError, PermissionDenied, SourceError
from sandbox.client import Client

openpyxl = pytest.importorskip("openpyxl")

CLASSES = "entity_key: pid\ncolumns: {pid: identifier, county: dimension, income: measure}\n"


def _hook(response) -> None:
    check_envelope(response)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    (root / "data").mkdir()
    tokens = make_home(root / "home", f'[api]\nsource_roots = ["{root / "data"}"]\n')
    server = ApiServer(root / "home").start()
    client = Client(server.url, tokens["provider"], hooks=[_hook])
    yield {"client": client, "root": root, "server": server, "tokens": tokens}
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


def test_a_suggestion_for_an_uploaded_workbook_registers_nothing(api):
    root, client = api["root"], api["client"]
    book = _workbook(root / "suggest.xlsx")
    result = client.suggest_upload(book, sheet="人口", header="2")
    assert result.classification["columns"] == {
        "pid": "identifier", "county": "dimension", "income": "measure"
    }  # fmt: skip
    assert result.classification["domains"] == {"county": {"codes": ["东区", "西区"]}}
    assert result.evidence["county"]["distinct"] == 2
    assert yaml.safe_load(result.yaml) == result.classification
    assert [d.name for d in client.list_datasets()] == ["persons"]  # registered above only
    with pytest.raises(SourceError) as err:
        client.suggest_upload(book, sheet="none")
    assert str(root) not in err.value.message and "'suggest.xlsx'" in err.value.message


def test_a_server_side_source_must_be_allowed(api):
    with pytest.raises(InputError) as err:
        api["client"].suggest(str(api["root"] / "persons.xlsx"))
    assert "api.source_roots" in err.value.message
    assert api["client"].suggest(str(_workbook(api["root"] / "data" / "ok.xlsx"))).rows == 61
    with pytest.raises(InputError) as err:
        api["client"].suggest("postgresql://u:secret@db.example.org/x?table=t")
    assert "api.source_hosts" in err.value.message and "secret" not in err.value.message


def test_a_suggestion_reads_no_file_or_host_the_provider_may_not_register(api):
    """Every way of naming a file outside api.source_roots (.., an encoded .., a symlink,
    a forced kind, a relative path) or a host outside api.source_hosts is refused before
    anything is read, and the refusal quotes nothing of the file."""
    root, client = api["root"], api["client"]
    secret = root / "secret.csv"
    secret.write_text("pid,code\nP1,TOPSECRET-7\nP2,TOPSECRET-7\n", encoding="utf-8")
    link = root / "data" / "link.csv"
    link.symlink_to(secret)
    with duckdb.connect(str(root / "outside.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT 'TOPSECRET-7' AS code")
    attempts = [
        f"{root}/data/../secret.csv",
        f"file://{root}/data/%2E%2E/secret.csv",
        f"csv://{root}/data/../secret.csv?text=code",
        str(link),
        f"duckdb://{root}/data/../outside.duckdb?table=t",
        "data/../secret.csv",
        f"{root}/data/../secret.csv?sheet=a",
        "mysql://u:p@127.0.0.1/civic?table=t",
        "postgresql://u:p@127.0.0.1/civic?table=t&host=/tmp",
        f"mysql://u:p@db.example.org/civic?table=t&unix_socket={root}/s.sock",
    ]
    for uri in attempts:
        with pytest.raises(InputError) as err:
            client.suggest(uri)
        message = err.value.message
        assert "api.source_" in message or "absolute path" in message or "option" in message, uri
        assert "TOPSECRET" not in message, uri


def test_the_cli_suggests_through_the_server(api):
    root = api["root"]
    book = _workbook(root / "cli.xlsx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(
        SANDBOX_SERVER=api["server"].url,
        SANDBOX_TOKEN=api["tokens"]["provider"],
        PYTHONPATH=str(ROOT),
        SANDBOX_HOME=str(root / "no-such-home"),
    )
    out = root / "cli.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "dataset", "suggest", f"{book}?sheet=人口&header=2",
         "--out", str(out), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 60
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["entity_key"] == "pid"


def _db(path, rows: int) -> str:
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE IF EXISTS t")
        con.execute(
            "CREATE TABLE t AS SELECT 'P' || i AS pid, 'c' || (i % 2) AS county, i AS income "
            f"FROM range({rows}) r(i) ORDER BY i"
        )
    return f"duckdb://{path}?query=SELECT * FROM t ORDER BY income"


def test_a_source_is_refreshed_and_scheduled_through_the_api(api):
    root, client = api["root"], api["client"]
    db = root / "data" / "bureau.duckdb"
    uri = _db(db, 40)
    client.register_uri("bureau", uri, yaml.safe_load(CLASSES))
    assert client.refresh("bureau").changed is False
    _db(db, 50)
    pulled = client.refresh("bureau")
    assert pulled.version == 2 and pulled.rows == 50
    assert client.schedule_refresh("bureau", "03:00").daily_at == "03:00"
    with pytest.raises(InputError):
        client.schedule_refresh("bureau", "3 am")
    (kept,) = [s for s in client.list_sources() if s.dataset == "bureau"]
    assert kept.daily_at == "03:00" and kept.last_status == "changed"
    with pytest.raises(InputError) as err:
        client.refresh("persons")  # uploaded: nothing to read again
    assert "uploaded" in err.value.message
    other = Client(api["server"].url, api["tokens"]["provider2"])
    with pytest.raises(PermissionDenied) as err:
        other.refresh("bureau")  # another provider's dataset: not even its source is shown
    assert "another provider" in err.value.message and "duckdb" not in err.value.message
    other.close()
    db.unlink()
    with pytest.raises(SourceError) as err:
        client.refresh("bureau")
    assert "version 2 stays" in err.value.message and "does not exist" in err.value.message


def test_another_provider_cannot_tell_a_kept_source_from_an_upload(api):
    """Over the API too, ownership is checked before the source: the same refusal for a
    dataset pulled from a file ("bureau") and one uploaded ("persons")."""
    with Client(api["server"].url, api["tokens"]["provider2"]) as other:
        for call in (other.refresh, lambda name: other.schedule_refresh(name, "04:00")):
            refusals = []
            for name in ("bureau", "persons"):
                with pytest.raises(PermissionDenied) as err:
                    call(name)
                refusals.append(err.value.message.replace(name, "NAME"))
            assert refusals[0] == refusals[1] and "another provider" in refusals[0]
        assert other.list_sources() == []


def test_the_server_pulls_a_scheduled_source_from_its_loop(tmp_path):
    """A schedule at 00:00 is due at any time of the day: the executor's first look pulls it."""
    from sandbox.core.platform import Platform
    from sandbox.core.principals import Role, by_name
    from sandbox.data import vault
    from sandbox.data.refresh import set_schedule
    from sandbox.data.vault import load_classification

    tokens = make_home(tmp_path / "home")
    (tmp_path / "c.yaml").write_text(CLASSES, encoding="utf-8")
    platform = Platform.open(tmp_path / "home")
    try:
        with platform.store.read() as conn:
            provider = by_name(conn, "provider", Role.PROVIDER)
        uri = _db(tmp_path / "b.duckdb", 30)
        vault.register(platform, provider, "bureau", uri, load_classification(tmp_path / "c.yaml"))
        set_schedule(platform, provider, "bureau", "00:00")
        _db(tmp_path / "b.duckdb", 31)
    finally:
        platform.close()
    with ApiServer(tmp_path / "home") as server, Client(server.url, tokens["provider"]) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (kept,) = client.list_sources()
            if kept.last_status:
                break
            time.sleep(0.3)
        assert kept.last_status == "changed", server.log()
        assert client.show_dataset("bureau").version == 2
