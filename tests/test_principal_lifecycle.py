"""A principal's lifecycle (issue 19, item 9): deactivate, reactivate, rotate the token.

Through the real interfaces: ``sandbox principal ...`` as a subprocess on the host (no
token: the host's act; ``--as``: an authority's; ``--server``: an authority's through the
API) and the HTTP routes of a real ``sandbox serve`` on the same home. Each act writes one
ledger entry without the token or its hash; a deactivated principal, and a rotated
token's old value, get 401 ``unauthenticated`` on the very next request, on the API and
on the host. The attacks are refused and leave no entry: a county authority acting on a
city principal or another county's, the last active city authority deactivated, a
principal that is no authority, a deactivated authority. An older store (schema 2) opens
and gains the status column.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_server import ROOT, ApiServer

from sandbox.core.platform import Platform

PRINCIPALS = [
    ("city", "authority", "city"),
    ("city2", "authority", "city"),
    ("county", "authority", "370811"),
    ("county_b", "authority", "370811"),
    ("other_county", "authority", "370812"),
    ("operator", "operator", None),
    ("operator2", "operator", None),
    ("auditor", "auditor", None),
]


class World:
    def __init__(self, home: Path, server: ApiServer):
        self.home = home
        self.server = server
        self.tokens: dict[str, str] = {}

    def cli(self, *args: str, token: str | None = None, server: bool = False):
        """``sandbox`` as a subprocess; ``token`` names a principal (its current token)."""
        command = [sys.executable, "-m", "sandbox", "--home", str(self.home)]
        if server:
            command += ["--server", self.server.url]
        command += list(args)
        if token is not None:
            command += ["--as", self.tokens.get(token, token)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for name in ("SANDBOX_TOKEN", "SANDBOX_TOKEN_FILE", "SANDBOX_SERVER", "SANDBOX_HOME"):
            env.pop(name, None)
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, env=env, cwd=str(ROOT)
        )

    def http(self, method: str, path: str, token: str | None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens.get(token, token)}"} if token else {}
        return httpx.request(method, self.server.url + path, headers=headers, timeout=30, **kwargs)

    def entries(self, action: str) -> list[dict]:
        """The ledger's entries of ``action``, read from the store as the auditor would."""
        with sqlite3.connect(self.home / "store.sqlite") as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT * FROM ledger WHERE action = ? ORDER BY seq", (action,)
            ).fetchall()
        return [dict(r) for r in rows]

    def ledger_text(self) -> str:
        with sqlite3.connect(self.home / "store.sqlite") as db:
            rows = db.execute("SELECT * FROM ledger ORDER BY seq").fetchall()
        return json.dumps(rows)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def unauthenticated(response: httpx.Response) -> bool:
    return response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    home = root / "home"
    Platform.init(home).close()
    server = ApiServer(home)
    w = World(home, server)
    for name, role, jurisdiction in PRINCIPALS:
        args = ["principal", "add", "--name", name, "--role", role, "--json"]
        if jurisdiction:
            args += ["--jurisdiction", jurisdiction]
        w.tokens[name] = json.loads(ok(w.cli(*args)).stdout)["token"]
    server.start()
    yield w
    server.stop()


def test_the_host_deactivates_and_reactivates_and_the_token_is_refused_everywhere(world):
    assert world.http("GET", "/v1/me", "operator").status_code == 200
    done = json.loads(
        ok(
            world.cli("principal", "deactivate", "operator", "--reason", "contract ended", "--json")
        ).stdout
    )
    assert done == {
        "name": "operator",
        "role": "operator",
        "jurisdiction": None,
        "status": "deactivated",
    }
    # at once: the running server, the host's CLI and the CLI through --server
    assert unauthenticated(world.http("GET", "/v1/me", "operator"))
    assert unauthenticated(world.http("GET", "/v1/jobs", "operator"))
    for server in (False, True):
        refused = world.cli("job", "list", token="operator", server=server)
        assert refused.returncode == 1
        assert "error [unauthenticated]" in refused.stderr
    [entry] = world.entries("principal.deactivate")
    assert (entry["actor"], entry["role"], entry["subject"]) == (
        "platform",
        "system",
        "principal:operator",
    )
    assert json.loads(entry["details"])["reason"] == "contract ended"

    again = world.cli("principal", "deactivate", "operator", "--reason", "twice")
    assert again.returncode == 1 and "error [conflict]" in again.stderr
    assert len(world.entries("principal.deactivate")) == 1

    ok(world.cli("principal", "reactivate", "operator", "--reason", "new contract"))
    assert world.http("GET", "/v1/me", "operator").json()["name"] == "operator"
    assert ok(world.cli("job", "list", token="operator"))
    [entry] = world.entries("principal.reactivate")
    assert entry["actor"] == "platform"
    listed = json.loads(ok(world.cli("principal", "list", "--json", token="auditor")).stdout)
    assert {r["name"]: r["status"] for r in listed}["operator"] == "active"


def test_an_authority_deactivates_and_reactivates_over_http_and_the_cli(world):
    before = len(world.entries("principal.deactivate"))
    response = world.http(
        "POST", "/v1/principals/operator2/deactivate", "city", json={"reason": "probe finding"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "deactivated"
    assert unauthenticated(world.http("GET", "/v1/me", "operator2"))
    entry = world.entries("principal.deactivate")[-1]
    assert (entry["actor"], entry["role"]) == ("city", "authority")
    assert len(world.entries("principal.deactivate")) == before + 1

    response = world.http(
        "POST", "/v1/principals/operator2/reactivate", "city", json={"reason": "cleared"}
    )
    assert response.status_code == 200 and response.json()["status"] == "active"
    assert world.http("GET", "/v1/me", "operator2").status_code == 200

    # the same through the CLI: --server with the authority's token, and --as on the host
    for server in (True, False):
        out = world.cli(
            "principal",
            "deactivate",
            "operator2",
            "--reason",
            "cli",
            "--json",
            token="city",
            server=server,
        )
        assert json.loads(ok(out).stdout)["status"] == "deactivated"
        assert unauthenticated(world.http("GET", "/v1/me", "operator2"))
        ok(world.cli("principal", "reactivate", "operator2", "--reason", "cli", token="city"))
        assert world.http("GET", "/v1/me", "operator2").status_code == 200
    assert world.entries("principal.deactivate")[-1]["actor"] == "city"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_rotating_a_token_refuses_the_old_one_at_once(world):
    old = world.tokens["auditor"]
    out = json.loads(ok(world.cli("principal", "rotate-token", "auditor", "--json")).stdout)
    new = out["token"]
    assert new != old and out["name"] == "auditor" and out["status"] == "active"
    assert unauthenticated(world.http("GET", "/v1/me", old))
    refused = world.cli("ledger", "show", token=old)
    assert refused.returncode == 1 and "error [unauthenticated]" in refused.stderr
    assert world.http("GET", "/v1/me", new).json()["name"] == "auditor"
    world.tokens["auditor"] = new

    # text output: the token alone on the first line, as principal add prints it
    text = ok(world.cli("principal", "rotate-token", "auditor")).stdout
    newer = text.splitlines()[0].strip()
    assert newer.startswith("sbx_") and unauthenticated(world.http("GET", "/v1/me", new))
    world.tokens["auditor"] = newer

    # an authority over HTTP, then through the CLI's --server
    response = world.http("POST", "/v1/principals/auditor/rotate-token", "city")
    assert response.status_code == 200, response.text
    via_http = response.json()["token"]
    assert unauthenticated(world.http("GET", "/v1/me", newer))
    remote = world.cli("principal", "rotate-token", "auditor", "--json", token="city", server=True)
    via_cli = json.loads(ok(remote).stdout)["token"]
    assert unauthenticated(world.http("GET", "/v1/me", via_http))
    assert world.http("GET", "/v1/me", via_cli).status_code == 200
    world.tokens["auditor"] = via_cli

    entries = world.entries("principal.rotate_token")
    assert [e["actor"] for e in entries[-4:]] == ["platform", "platform", "city", "city"]
    ledger = world.ledger_text()
    for token in (old, new, newer, via_http, via_cli):
        assert token not in ledger and _digest(token) not in ledger


def test_a_county_authority_acts_only_on_its_own_countys_authorities(world):
    before = world.ledger_text()
    # a city principal (an operator) and another county's authority: refused
    for target in ("operator", "other_county", "city"):
        response = world.http(
            "POST", f"/v1/principals/{target}/deactivate", "county", json={"reason": "x"}
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "outside_jurisdiction"
        response = world.http("POST", f"/v1/principals/{target}/rotate-token", "county")
        assert response.json()["error"]["code"] == "outside_jurisdiction"
    for server in (True, False):
        refused = world.cli("principal", "rotate-token", "operator", token="county", server=server)
        assert refused.returncode == 3 and "error [outside_jurisdiction]" in refused.stderr
    assert world.ledger_text() == before
    assert world.http("GET", "/v1/me", "operator").status_code == 200

    # its own county's authority: allowed
    response = world.http(
        "POST", "/v1/principals/county_b/deactivate", "county", json={"reason": "moved"}
    )
    assert response.status_code == 200, response.text
    assert unauthenticated(world.http("GET", "/v1/me", "county_b"))
    # a deactivated authority acts on nobody, itself included
    response = world.http(
        "POST", "/v1/principals/county_b/reactivate", "county_b", json={"reason": "me"}
    )
    assert unauthenticated(response)
    response = world.http(
        "POST", "/v1/principals/county_b/reactivate", "county", json={"reason": "back"}
    )
    assert response.status_code == 200


def test_nobody_deactivates_the_last_active_city_authority(world):
    response = world.http(
        "POST", "/v1/principals/city2/deactivate", "city", json={"reason": "one is enough"}
    )
    assert response.status_code == 200, response.text
    before = world.ledger_text()
    response = world.http("POST", "/v1/principals/city/deactivate", "city", json={"reason": "x"})
    assert response.status_code == 409
    assert "last active city authority" in response.json()["error"]["message"]
    refused = world.cli("principal", "deactivate", "city", "--reason", "host tries")
    assert refused.returncode == 1 and "last active city authority" in refused.stderr
    assert world.ledger_text() == before
    assert world.http("GET", "/v1/me", "city").status_code == 200
    ok(world.cli("principal", "reactivate", "city2", "--reason", "back"))


def test_only_an_authority_may_act_on_principals(world):
    before = world.ledger_text()
    for role in ("operator", "auditor"):
        for path, body in (
            ("/v1/principals/operator2/deactivate", {"reason": "x"}),
            ("/v1/principals/operator2/reactivate", {"reason": "x"}),
            ("/v1/principals/operator2/rotate-token", None),
        ):
            response = world.http("POST", path, role, json=body)
            assert response.status_code == 403, (role, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        refused = world.cli("principal", "deactivate", "operator2", "--reason", "x", token=role)
        assert refused.returncode == 3 and "error [forbidden]" in refused.stderr
    assert unauthenticated(world.http("POST", "/v1/principals/operator2/rotate-token", None))
    # no token through --server is no host: refused by the server
    anonymous = world.cli("principal", "rotate-token", "operator2", server=True)
    assert anonymous.returncode == 1 and "error [unauthenticated]" in anonymous.stderr
    missing = world.http("POST", "/v1/principals/nobody/deactivate", "city", json={"reason": "x"})
    assert missing.status_code == 404
    empty = world.http("POST", "/v1/principals/operator2/deactivate", "city", json={"reason": " "})
    assert empty.status_code == 400
    assert world.ledger_text() == before
    assert world.http("GET", "/v1/me", "operator2").status_code == 200


def test_an_older_store_gains_the_status_column_by_db_upgrade(tmp_path):
    home = tmp_path / "old"
    Platform.init(home).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SANDBOX_TOKEN", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sandbox", "--home", str(home), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    tokens = {}
    for name, role in (("city", "authority"), ("gone", "operator"), ("kept", "operator")):
        extra = ["--jurisdiction", "city"] if role == "authority" else []
        out = ok(cli("principal", "add", "--name", name, "--role", role, "--json", *extra))
        tokens[name] = json.loads(out.stdout)["token"]
    # make it a schema-2 store: no status column; a principal switched off by hand
    with sqlite3.connect(home / "store.sqlite") as db:
        db.execute("ALTER TABLE principals DROP COLUMN status")
        db.execute("UPDATE principals SET active = 0 WHERE name = 'gone'")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        db.execute("DROP TABLE alembic_version")  # written before the store used Alembic
    with sqlite3.connect(home / "store.sqlite") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(principals)")]
    assert "status" not in columns
    refused = cli("principal", "list", "--json")
    assert refused.returncode != 0 and "sandbox db upgrade" in refused.stderr
    ok(cli("db", "upgrade"))

    listed = json.loads(ok(cli("principal", "list", "--json", "--as", tokens["city"])).stdout)
    assert {r["name"]: r["status"] for r in listed} == {
        "city": "active",
        "gone": "deactivated",
        "kept": "active",
    }
    with sqlite3.connect(home / "store.sqlite") as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == ("3",)
    assert ok(cli("job", "list", "--as", tokens["kept"]))
    assert cli("job", "list", "--as", tokens["gone"]).returncode == 1
    ok(cli("principal", "reactivate", "gone", "--reason", "after the upgrade"))
    assert ok(cli("job", "list", "--as", tokens["gone"]))
    assert ok(cli("ledger", "verify"))


def test_a_job_queued_before_its_operator_was_deactivated_does_not_run(
    platform, pums_dataset, make_principal
):
    """Work authenticated earlier is not a cache that outlives the deactivation: the
    queued job fails with ``unauthenticated`` when its turn comes, and nothing leaves."""
    from sandbox.core.principals import Role, Status, set_status
    from sandbox.data.grants import add_grant
    from sandbox.run.execution import JobService
    from sandbox.run.jobstate import JobState

    operator = make_principal("bank", Role.OPERATOR)[0]
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    add_grant(platform, authority, "bank", "pums", until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        sql = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"
        queued = service.enqueue(operator, {"sql": sql})
        assert queued.state is JobState.QUEUED
        set_status(platform, authority, "bank", Status.DEACTIVATED, "licence withdrawn")
        done = service.run(queued.job_id)
    finally:
        service.close()
    assert done is not None and done.state is JobState.FAILED
    assert done.reason["code"] == "unauthenticated"
    assert done.product_id is None
    assert not any((platform.home / "products").iterdir())
