"""Bad input and server-side sources (issue 19, items 6 and 8), tried through the real server.

Item 6, input that used to get a 500 or a job left half-way:

* SQL nested 50 deep or with 200 NOTs ran the parser out of stack (``RecursionError``,
  500): now the job is refused by rule ``nesting``, and a query nested within the
  limit still runs;
* a NUL byte in a source URI (``ValueError``, 500): now ``bad_source`` naming it;
* a full disk: an upload and a submission were 500 (and every request of a principal
  whose rate-limit bucket was new), and a job whose release met the full disk stayed
  ``checking`` until a restart: now ``disk_full`` (507), reads still answer, and the
  job fails with ``disk_full`` once the store takes writes again;
* a CSV with two columns of one name, a quote never closed (it swallowed every later
  line into one value) or a header and no rows was registered: now refused, naming the
  column or line and the file as it was uploaded, and nothing of it is kept.

Item 8, server-side sources: a ``postgresql://`` source may only name a host of
``api.source_hosts`` (none by default), libpq options that name another server or a
file are refused, every failure to connect gets one message (a closed port and a port
that answers but refuses SSL look alike), upload errors never name the server's paths,
and the password redaction leaves the rest of a message as it was.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import httpx
import pytest
from api_server import ApiServer, check_envelope, free_port, make_home, write_persons

from connectors import open_source
from connectors.base import redact_uri
from policies.errors import SourceError
from sandbox.core.platform import Platform
from sandbox.core.principals import authenticate
from sandbox.data import vault
from sandbox.data.backup import verify_home
from sandbox.data.grants import add_grant

SQL = "SELECT county, COUNT(*) AS n FROM persons GROUP BY county"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(response: httpx.Response, status: int, code: str) -> dict:
    """The response is the error envelope with this status and code, and no traceback."""
    check_envelope(response)
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


class _Listener:
    """A TCP port on 127.0.0.1 that counts connections and answers every one with ``reply``
    (``b"N"`` is a PostgreSQL server's "no SSL" to a client's SSL request)."""

    def __init__(self, reply: bytes = b"N"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                try:
                    conn.settimeout(2)
                    conn.recv(1024)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server whose home has ``persons`` granted to the operator, one source folder and
    two allowed database hosts: a closed port and a port that refuses SSL."""
    root = tmp_path_factory.mktemp("bad-input")
    allowed = root / "allowed"
    allowed.mkdir()
    closed = free_port()
    no_ssl = _Listener()
    stranger = _Listener()  # a port the platform must never connect to
    home = root / "home"
    tokens = make_home(
        home,
        "[job]\nspare_worker = false\n[api]\n"
        f'source_roots = ["{allowed}"]\n'
        f'source_hosts = ["127.0.0.1:{closed}", "127.0.0.1:{no_ssl.port}"]\n',
    )
    csv, yaml_path = write_persons(root / "src", rows=400)
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = authenticate(conn, tokens["provider"])
            authority = authenticate(conn, tokens["authority"])
        vault.register(
            platform, provider, "persons", str(csv), vault.load_classification(yaml_path)
        )
        add_grant(platform, authority, "operator", "persons", until="2099-12-31")
    finally:
        platform.close()
    server = ApiServer(home).start()
    yield {
        "server": server,
        "tokens": tokens,
        "home": home,
        "root": root,
        "allowed": allowed,
        "yaml": yaml_path,
        "closed": closed,
        "no_ssl": no_ssl,
        "stranger": stranger,
    }
    server.stop()
    no_ssl.close()
    stranger.close()


def _submit(served, sql: str) -> httpx.Response:
    return httpx.post(
        served["server"].url + "/v1/jobs",
        json={"sql": sql},
        headers=_bearer(served["tokens"]["operator"]),
        timeout=60,
    )


def _wait(served, job_id: int, token: str | None = None) -> dict:
    response = httpx.get(
        served["server"].url + f"/v1/jobs/{job_id}",
        params={"wait": 30},
        headers=_bearer(token or served["tokens"]["operator"]),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _upload(served, name: str, filename: str, content: bytes) -> httpx.Response:
    return httpx.post(
        served["server"].url + "/v1/datasets/upload",
        headers=_bearer(served["tokens"]["provider"]),
        data={"name": name},
        files={
            "file": (filename, content, "text/csv"),
            "classification": ("c.yaml", served["yaml"].read_bytes(), "application/yaml"),
        },
        timeout=60,
    )


def _register_uri(served, name: str, uri: str) -> httpx.Response:
    classification = {
        "entity_key": "pid",
        "columns": {"pid": "identifier", "county": "dimension", "sex": "dimension",
                    "income": "measure"},
    }  # fmt: skip
    return httpx.post(
        served["server"].url + "/v1/datasets",
        headers=_bearer(served["tokens"]["provider"]),
        json={"name": name, "uri": uri, "classification": classification},
        timeout=60,
    )


def _datasets(served) -> list[str]:
    response = httpx.get(
        served["server"].url + "/v1/datasets", headers=_bearer(served["tokens"]["provider"])
    )
    return [d["dataset"] if "dataset" in d else d["name"] for d in response.json()]


# --- 6. deep SQL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        "(" * 50 + "sex = 'F'" + ")" * 50,
        "NOT " * 200 + "sex = 'F'",
        "CASE WHEN " * 30 + "sex = 'F'" + " THEN 1 END = 1" * 30,
        "- " * 300 + "1 = -1",
    ],
    ids=["50-brackets", "200-nots", "30-cases", "300-minus"],
)
def test_deeply_nested_sql_is_refused_by_the_nesting_rule(served, where):
    response = _submit(served, f"SELECT county, COUNT(*) AS n FROM persons WHERE {where} "
                               "GROUP BY county")  # fmt: skip
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "refused", job
    reason = job["reason"]
    assert reason["rule"] == "nesting" and reason["code"] == "refused", reason
    assert "nested deeper than the 24 levels" in reason["message"], reason
    assert reason["article"] == "Art. 15"
    # The server is still whole: the next job runs.
    assert _wait(served, _submit(served, SQL).json()["job"])["state"] == "released"


def test_sql_nested_within_the_limit_still_runs(served):
    where = "(" * 20 + "sex = 'F'" + ")" * 20 + " AND " + "NOT " * 20 + "county = '370801'"
    response = _submit(served, f"SELECT county, COUNT(*) AS n FROM persons WHERE {where} "
                               "GROUP BY county")  # fmt: skip
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "queued", response.json()
    assert _wait(served, response.json()["job"])["state"] == "released"


# --- 6. a NUL byte in a source URI --------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    ["{allowed}/a\x00b.csv", "file://{allowed}/a%00b.csv", "csv://{allowed}/x.csv\x00.txt",
     "postgresql://u@127.0.0.1:{closed}/db\x00?table=t"],
    ids=["raw", "encoded", "after-extension", "database"],
)  # fmt: skip
def test_a_nul_byte_in_a_source_uri_is_bad_source(served, uri):
    uri = uri.format(allowed=served["allowed"], closed=served["closed"])
    error = _error(_register_uri(served, "nul", uri), 400, "bad_source")
    assert "NUL" in error["message"], error
    assert "nul" not in _datasets(served)


def test_a_nul_byte_is_refused_by_the_connectors_too():
    with pytest.raises(SourceError, match="control character"):
        open_source("/tmp/a\x00b.csv")
    with pytest.raises(SourceError, match="encoded NUL"):
        open_source("file:///tmp/a%00b.csv")


# --- 6. CSV files that used to be registered ----------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"pid,county,pid,income\nP1,370801,P2,5\n",
         "column 'pid' appears twice in the header line (columns 1 and 3)"),
        (b'pid,county,sex,income\nP1,370801,F,5\nP2,370802,M,"6\nP3,370803,F,7\n',
         "line 3: a quoted field is opened with '\"' and never closed"),
        (b"pid,county,sex,income\n", "the file has a header line but no data rows"),
        (b"pid,,sex,income\nP1,370801,F,5\n", "column 2 has no name in the header line"),
        ("pid,county,sex,income\nP1,济宁,F,5\n".encode("gbk"),
         "column 'county' is not valid UTF-8; an upload must be UTF-8: convert the file"),
    ],
    ids=["duplicate-column", "unbalanced-quote", "header-only", "unnamed-column", "gbk"],
)  # fmt: skip
def test_a_bad_csv_upload_is_refused_naming_the_file_and_the_rule(served, content, expected):
    response = _upload(served, "badcsv", "my data.csv", content)
    error = _error(response, 400, "bad_source")
    assert expected in error["message"], error
    # The file as the provider named it; never a path of the server.
    assert error["message"].startswith("the uploaded file 'my data.csv'"), error
    assert str(served["home"]) not in response.text and "/tmp" not in response.text
    assert "upload.csv" not in response.text and "csv://" not in response.text
    assert "badcsv" not in _datasets(served)
    leftovers = [p for p in (served["home"] / "tmp").iterdir() if p.is_dir()]
    assert leftovers == [], leftovers


def test_the_same_csv_files_are_refused_from_a_source_folder(served):
    bad = served["allowed"] / "dup.csv"
    bad.write_bytes(b"pid,county,pid,income\nP1,370801,P2,5\n")
    error = _error(_register_uri(served, "dup", str(bad)), 400, "bad_source")
    assert error["message"] == (
        f"{bad}: column 'pid' appears twice in the header line (columns 1 and 3); "
        "give every column its own name"
    )


def test_a_quoted_field_over_several_lines_is_still_read(tmp_path):
    good = tmp_path / "multi.csv"
    good.write_bytes(b'pid,note\nP1,"two\nlines"\nP2,"say ""hi"""\n')
    with open_source(str(good)) as source:
        rows = [r for b in source.batches() for r in b.to_pylist()]
    assert rows == [{"pid": "P1", "note": "two\nlines"}, {"pid": "P2", "note": 'say "hi"'}]


# --- 8. server-side database sources ------------------------------------------------------


def test_a_database_host_not_listed_is_refused_before_any_connection(served):
    stranger = served["stranger"]
    for host in (f"127.0.0.1:{stranger.port}", "localhost", "10.0.0.1:5432"):
        error = _error(
            _register_uri(served, "pg", f"postgresql://u:pw@{host}/db?table=t"), 400, "bad_input"
        )
        assert "api.source_hosts" in error["message"], error
        assert "pw" not in error["message"]
    assert stranger.accepted == 0


@pytest.mark.parametrize(
    "options",
    ["host=10.0.0.1", "hostaddr=10.0.0.1", "port=22", "service=x", "sslrootcert=/etc/shadow",
     "passfile=/etc/shadow", "sslkey=/root/key"],
)  # fmt: skip
def test_libpq_options_naming_another_server_or_a_file_are_refused(served, options):
    uri = f"postgresql://u@127.0.0.1:{served['closed']}/db?table=t&{options}"
    error = _error(_register_uri(served, "pg", uri), 400, "bad_input")
    assert f"option '{options.split('=')[0]}' is not accepted through the API" in error["message"]


def test_a_closed_port_and_a_port_without_ssl_get_one_message(served):
    messages = []
    for port, mode in ((served["closed"], "require"), (served["no_ssl"].port, "require"),
                       (served["no_ssl"].port, "disable")):  # fmt: skip
        uri = f"postgresql://reader:pw@127.0.0.1:{port}/civic?table=t&sslmode={mode}"
        error = _error(_register_uri(served, "pg", uri), 400, "bad_source")
        messages.append(error["message"].replace(str(port), "PORT").replace(mode, "MODE"))
    assert served["no_ssl"].accepted >= 2  # the attempts did reach the listening port
    assert len(set(messages)) == 1, messages
    message = messages[0]
    assert message.startswith("cannot connect to postgresql://reader:***@127.0.0.1:PORT/civic")
    for telling in ("refused", "SSL was required", "does not support SSL", "server closed",
                    "timeout", "pw@"):  # fmt: skip
        assert telling not in message, message


def test_the_host_cli_still_names_the_reason_without_mangling_it(served):
    """The connector's own message (the host's command line) keeps libpq's reason whole,
    even when the password is a short word that occurs in it."""
    with pytest.raises(SourceError) as caught:
        open_source(f"postgresql://reader:on@127.0.0.1:{served['closed']}/civic?table=t")
    message = caught.value.message
    assert "Connection refused" in message, message
    assert "reader:***@" in message and "c***" not in message.lower(), message


def test_redaction_leaves_the_rest_of_the_uri_as_written():
    uri = "postgresql://db/x?query=SELECT%20a%2Bb%20FROM%20t&password=s3cret&sslmode=require"
    assert redact_uri(uri) == (
        "postgresql://db/x?query=SELECT%20a%2Bb%20FROM%20t&password=***&sslmode=require"
    )


# --- 6. a full disk ------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A platform home on an 8 MiB tmpfs whose server fills it when a release begins."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    home = mount / "home"
    tokens = make_home(home, "[job]\nspare_worker = false\n")
    csv, yaml_path = write_persons(tmp_path / "src", rows=400)
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = authenticate(conn, tokens["provider"])
            authority = authenticate(conn, tokens["authority"])
        vault.register(
            platform, provider, "persons", str(csv), vault.load_classification(yaml_path)
        )
        add_grant(platform, authority, "operator", "persons", until="2099-12-31")
    finally:
        platform.close()
    filler = mount / "filler"
    server = ApiServer(
        home,
        env={"SANDBOX_TEST_FAULTS": f"fill:{filler}@release.write"},
        log=tmp_path / "server.log",
    ).start()
    try:
        yield {"server": server, "tokens": tokens, "home": home, "filler": filler,
               "csv": csv, "yaml": yaml_path}  # fmt: skip
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_disk_full_and_leaves_no_job_half_way(full_disk):
    server, tokens, filler = full_disk["server"], full_disk["tokens"], full_disk["filler"]
    operator, provider = _bearer(tokens["operator"]), _bearer(tokens["provider"])
    response = httpx.post(server.url + "/v1/jobs", json={"sql": SQL}, headers=operator)
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]
    deadline = time.monotonic() + 60
    while not filler.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert filler.exists(), server.log()
    time.sleep(1.0)  # the release meets the full disk, then the job's failure does too

    # While the disk is full: reads answer, writes are disk_full (507), never 500.
    state = httpx.get(server.url + f"/v1/jobs/{job_id}", headers=operator)
    assert state.status_code == 200, state.text
    submit = httpx.post(server.url + "/v1/jobs", json={"sql": SQL}, headers=operator)
    error = _error(submit, 507, "disk_full")
    assert "disk is full" in error["message"] and "free space" in error["message"], error
    files = {
        "file": ("more.csv", full_disk["csv"].read_bytes(), "text/csv"),
        "classification": ("c.yaml", full_disk["yaml"].read_bytes(), "application/yaml"),
    }
    upload = httpx.post(
        server.url + "/v1/datasets/upload", headers=provider, data={"name": "more"}, files=files
    )
    _error(upload, 507, "disk_full")
    # The provider's first request made its rate-limit bucket file: that write failing
    # must not turn its requests into errors.
    listed = httpx.get(server.url + "/v1/datasets", headers=provider)
    assert listed.status_code == 200, listed.text

    # Space again: the job ends failed with disk_full, without a restart.
    filler.unlink()
    deadline = time.monotonic() + 30
    job = {}
    while time.monotonic() < deadline:
        job = httpx.get(server.url + f"/v1/jobs/{job_id}", headers=operator).json()
        if job["state"] not in ("running", "checking"):
            break
        time.sleep(0.2)
    assert job["state"] == "failed", job
    assert job["reason"]["code"] == "disk_full", job
    assert job["product"] is None
    # The platform serves the next request, and nothing half-written was kept.
    upload = httpx.post(
        server.url + "/v1/datasets/upload", headers=provider, data={"name": "more"}, files=files
    )
    assert upload.status_code == 201, upload.text
    server.stop()
    home = full_disk["home"]
    assert list((home / "products").iterdir()) == []
    platform = Platform.open(home)
    try:
        verify_home(platform)
    finally:
        platform.close()
    assert [p for p in (home / "tmp").iterdir() if p.is_dir()] == []
