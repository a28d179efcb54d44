"""The CLI with --server: the same commands through the HTTP API of a real server.

A real ``sandbox serve`` on 127.0.0.1 (tests/api_server.py); the CLI runs as a
subprocess exactly as a user runs it, with SANDBOX_SERVER pointing at it and no
access to the platform's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_server import ApiServer, make_home, write_persons

from tests.conftest import HOLDS_OFF

REPO = Path(__file__).resolve().parents[1]
SQL = "SELECT county, sex, COUNT(*) AS n, SUM(income) AS total FROM persons GROUP BY county, sex"


def cli(
    server: ApiServer,
    token: str | None,
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(HOLDS_OFF)  # the review holds of table mode: see tests/conftest.py
    env.update(
        SANDBOX_SERVER=server.url,
        PYTHONPATH=str(REPO),
        SANDBOX_HOME=str(cwd or REPO) + "/no-such-home",
    )
    if token:
        env["SANDBOX_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def host(home: Path, token: str, *args: str) -> subprocess.CompletedProcess:
    """A command on the platform's host itself (no server): the host-only ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(HOLDS_OFF, PYTHONPATH=str(REPO), SANDBOX_HOME=str(home), SANDBOX_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    tokens = make_home(root / "home")
    csv, yaml_path = write_persons(root / "data")
    with ApiServer(root / "home") as server:
        yield server, tokens, csv, yaml_path, root


def test_the_flow_through_the_server(served):
    server, tokens, csv, yaml_path, root = served
    done = cli(
        server,
        tokens["provider"],
        "dataset",
        "register",
        "persons",
        "--source",
        str(csv),
        "--classification",
        str(yaml_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    # A direct grant is the host's act only (never through the server); the flow's
    # agreement-based grants are in tests/test_cli_remote_workflow.py.
    refused = cli(server, tokens["authority"], "grant", "add", "--operator", "operator",
                  "--dataset", "persons", "--until", "2099-01-01")  # fmt: skip
    assert refused.returncode != 0 and "host only" in refused.stderr
    done = host(root / "home", tokens["authority"], "grant", "add", "--operator", "operator",
                "--dataset", "persons", "--until", "2099-01-01")  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = cli(server, tokens["operator"], "job", "submit", "--sql", "-", "--json", stdin=SQL)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "released" and job["product"]
    shown = cli(server, tokens["operator"], "job", "show", str(job["job"]))
    assert f"job {job['job']}: released" in shown.stdout
    listed = cli(server, tokens["operator"], "product", "list", "--json")
    assert [p["id"] for p in json.loads(listed.stdout)] == [job["product"]]
    got = cli(
        server, tokens["operator"], "product", "get", job["product"], "--out", str(root / "out")
    )
    assert got.returncode == 0, got.stderr
    folder = root / "out" / job["product"]
    assert {"manifest.json", "manifest.sig", "output.csv"} <= {p.name for p in folder.iterdir()}
    # The downloaded copy verifies against the platform's public key.
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--home",
            str(root / "home"),
            "product",
            "verify",
            str(folder),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert verified.returncode == 0, verified.stderr
    entries = cli(
        server, tokens["auditor"], "ledger", "show", "--subject", f"job:{job['job']}", "--json"
    )
    assert [e["action"] for e in json.loads(entries.stdout)][0] == "job.submitted"
    assert "ledger verified" in cli(server, tokens["auditor"], "ledger", "verify").stdout


def test_a_refusal_through_the_server_names_rule_and_article(served):
    server, tokens, *_ = served
    done = cli(
        server,
        tokens["operator"],
        "job",
        "submit",
        "--sql",
        "-",
        stdin="SELECT pid, income FROM persons",
    )
    assert done.returncode == 3
    assert "refused" in done.stdout and "Art. 15" in done.stdout


def test_errors_come_back_as_one_line(served):
    server, tokens, *_ = served
    done = cli(server, None, "job", "list")
    assert done.returncode != 0
    assert done.stderr.startswith("error [unauthenticated]:")
    assert "Traceback" not in done.stderr


def test_host_only_commands_say_so(served):
    server, tokens, *_ = served
    done = cli(server, tokens["authority"], "principal", "list")
    assert done.returncode == 2
    assert "runs on the platform's host only" in done.stderr
