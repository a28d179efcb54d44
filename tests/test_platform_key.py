"""The platform's public key off the host (issue 26): ``GET /v1/keys/platform`` and
``sandbox product verify --key FILE|URL``.

A real server on 127.0.0.1 releases one product; the product is downloaded through
the API and verified by the CLI as a consumer would, in a folder with no platform home
(before, that failed with "platform.pub not found").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_server import ApiServer, free_port, host_grant, make_home, write_persons
from cryptography.hazmat.primitives import serialization

from sandbox.client import Client

REPO = Path(__file__).resolve().parents[1]
SQL = "SELECT county, sex, COUNT(*) AS n, SUM(income) AS total FROM persons GROUP BY county, sex"


def released_product(root: Path, server: ApiServer, tokens: dict[str, str]) -> str:
    """Register the persons, grant them to the operator, run one job; the product id."""
    csv, yaml_path = write_persons(root / "data")
    with Client(server.url, tokens["provider"]) as provider:
        provider.register_upload("persons", csv, yaml_path)
    host_grant(root / "home", "operator", "persons")
    with Client(server.url, tokens["operator"]) as operator:
        job = operator.wait_job(operator.submit_job(SQL).job)
    assert job.state == "released", job
    assert job.product
    return job.product


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("platform-key")
    tokens = make_home(root / "home")
    with ApiServer(root / "home") as server:
        product = released_product(root, server, tokens)
        with Client(server.url, tokens["operator"]) as operator:
            zipped = operator.download_zip(product, root / "download")
        shutil.unpack_archive(zipped, root / "download")
        yield server, root, root / "download" / product


def verify(*args: str, cwd: Path, before: bool = False) -> subprocess.CompletedProcess:
    """``sandbox product verify`` as a consumer runs it: no home, no token, no server
    (``before``: the first two arguments are the main group's, e.g. ``--server URL``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(PYTHONPATH=str(REPO), SANDBOX_HOME=str(cwd / "no-home"))
    head, tail = (list(args[:2]), list(args[2:])) if before else ([], list(args))
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *head, "product", "verify", *tail],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_anyone_reads_the_platform_key_and_its_fingerprint(served):
    server, root, _folder = served
    answer = httpx.get(server.url + "/v1/keys/platform")  # no token
    assert answer.status_code == 200, answer.text
    body = answer.json()
    on_disk = (root / "home" / "keys" / "platform.pub").read_text()
    assert body["pem"] == on_disk and body["algorithm"] == "Ed25519"
    der = serialization.load_pem_public_key(on_disk.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert body["fingerprint"] == "sha256:" + hashlib.sha256(der).hexdigest()
    assert "/v1/keys/platform" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_a_product_verifies_off_the_host_with_the_key_from_the_server(served, tmp_path):
    server, _root, folder = served
    key = httpx.get(server.url + "/v1/keys/platform").json()
    done = verify(str(folder), "--key", server.url + "/v1/keys/platform", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "file hashes verified" in done.stdout and key["fingerprint"] in done.stdout
    pinned = verify(
        str(folder), "--key", server.url + "/v1/keys/platform",
        "--fingerprint", key["fingerprint"], "--json", cwd=tmp_path,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout)["key_fingerprint"] == key["fingerprint"]
    pem = tmp_path / "platform.pub"
    pem.write_text(key["pem"])
    assert verify(str(folder), "--key", str(pem), cwd=tmp_path).returncode == 0


def test_with_server_the_key_comes_from_the_server(served, tmp_path):
    server, _root, folder = served
    done = verify("--server", server.url, str(folder), cwd=tmp_path, before=True)
    assert done.returncode == 0, done.stderr
    key = httpx.get(server.url + "/v1/keys/platform").json()
    assert key["fingerprint"] in done.stdout


def test_without_a_key_off_the_host_the_error_says_how_to_give_one(served, tmp_path):
    _server, _root, folder = served
    done = verify(str(folder), cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert "--key FILE or --key https://HOST/v1/keys/platform" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_tampered_report_or_a_wrong_fingerprint_fails(served, tmp_path):
    server, _root, folder = served
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    report = copy / "report.md"
    report.write_text(report.read_text(encoding="utf-8").replace("suppressed", "published"))
    done = verify(str(copy), "--key", server.url + "/v1/keys/platform", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "file report.md was changed after release" in done.stderr
    wrong = verify(
        str(folder), "--key", server.url + "/v1/keys/platform",
        "--fingerprint", "sha256:" + "0" * 64, cwd=tmp_path,
    )  # fmt: skip
    assert wrong.returncode == 1 and "--fingerprint" in wrong.stderr, wrong.stderr


def test_an_address_that_serves_no_key_is_named_in_the_error(served, tmp_path):
    server, _root, folder = served
    no_pem = verify(str(folder), "--key", server.url + "/healthz", cwd=tmp_path)
    assert no_pem.returncode == 2 and "no 'pem' field" in no_pem.stderr, no_pem.stderr
    missing = verify(str(folder), "--key", server.url + "/v1/keys/nothing", cwd=tmp_path)
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr, missing.stderr
    closed = f"http://127.0.0.1:{free_port()}/v1/keys/platform"
    down = verify(str(folder), "--key", closed, cwd=tmp_path)
    assert down.returncode == 2 and "does not answer" in down.stderr, down.stderr
    for done in (no_pem, missing, down):
        assert "Traceback" not in done.stderr


def test_the_key_route_gives_the_public_key_and_nothing_else(served):
    """Asked with no token, a wrong token, or an auditor's: the same three fields, a
    public key only (no private key, no path of the host)."""
    server, root, _folder = served
    plain = httpx.get(server.url + "/v1/keys/platform")
    wrong = httpx.get(server.url + "/v1/keys/platform", headers={"Authorization": "Bearer x"})
    assert plain.status_code == wrong.status_code == 200 and plain.json() == wrong.json()
    body = plain.json()
    assert set(body) == {"algorithm", "pem", "fingerprint"}
    key = serialization.load_pem_public_key(body["pem"].encode())
    assert body["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in plain.text and str(root) not in plain.text
    assert key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    private = [p for p in (root / "home" / "keys").iterdir() if p.suffix != ".pub"]
    assert private  # the platform's signing key, which must not be served
    for path in private:
        assert path.read_bytes().strip() not in plain.content
