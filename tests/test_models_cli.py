"""``sandbox model`` and ``sandbox score`` through a real server on loopback and on the host:
the same commands, one backend each (issue 22)."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from api_server import ApiServer
from click.testing import CliRunner
from model_helpers import BANDS, CONSENT, SOUND, make_world

from sandbox.cli.app import main
from sandbox.client import Client
from sandbox.core import principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform

RUNNER = CliRunner()
NO_ENV = {"SANDBOX_SERVER": None, "SANDBOX_TOKEN": None, "SANDBOX_TOKEN_FILE": None}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("models_cli")
    platform = Platform.init(root / "home")

    def make(name, role, *, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(platform, make, root / "data")
    platform.close()
    (root / "train.yaml").write_text(yaml.safe_dump(SOUND), encoding="utf-8")
    service = {"name": "sme_credit", "model": SOUND["name"], "bands": BANDS}
    (root / "service.yaml").write_text(yaml.safe_dump(service), encoding="utf-8")
    with ApiServer(root / "home") as server:
        yield server, world, root


def remote(server, token, *args):
    return RUNNER.invoke(main, ["--server", server.url, *args, "--as", token], env=NO_ENV)


def host(server, token, *args):
    return RUNNER.invoke(main, ["--home", str(server.home), *args, "--as", token], env=NO_ENV)


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_publish_and_grade_remotely_as_on_the_host(served):
    server, world, root = served
    t = world.tokens
    trained = remote(server, t["bank"], "model", "train", "--file", str(root / "train.yaml"))
    assert trained.exit_code == 0, trained.output
    assert "model credit_tree: PASSED" in trained.stdout and "ok   attack_lira" in trained.stdout
    shown = as_json(remote(server, t["auditor"], "model", "show", "credit_tree", "--json"))
    assert shown == as_json(host(server, t["auditor"], "model", "show", "credit_tree", "--json"))
    assert [m["name"] for m in as_json(remote(server, t["bank"], "model", "list", "--json"))] == [
        "credit_tree"
    ]
    defined = remote(server, t["bank"], "score", "define", "--file", str(root / "service.yaml"))
    assert "defined sme_credit" in defined.stdout, defined.output
    approved = remote(server, t["city"], "score", "approve", "sme_credit")
    assert f"{world.table.num_rows} subjects graded" in approved.stdout, approved.output
    code = world.table.column("credit_code")[0].as_py()
    consent = ["--consent-ref", "LOAN-7", "--purpose", "credit", "--consented-at", "2026-12-01"]
    graded = as_json(
        remote(
            server, t["lender"], "score", "call", "sme_credit", "--key", code, *consent, "--json"
        )
    )
    assert graded["results"][0]["code"] in {"a", "b", "c", "d"}
    who = as_json(remote(server, t["auditor"], "score", "who", "--key", code, "--json"))
    assert [(r["consumer"], r["grade"]) for r in who] == [("lender", graded["results"][0]["code"])]
    assert who == as_json(host(server, t["auditor"], "score", "who", "--key", code, "--json"))
    with Client(server.url, t["lender"]) as api:
        again = api.grade("sme_credit", [{"key": code}], consent=CONSENT)
        assert again["results"][0]["code"] == graded["results"][0]["code"]
        assert [s["name"] for s in api.score_services()] == ["sme_credit"]


def test_refusals_are_one_line_naming_rule_and_article(served):
    server, world, root = served
    t = world.tokens
    code = world.table.column("credit_code")[1].as_py()
    for run in (remote, host):
        refused = run(server, t["lender"], "score", "call", "sme_credit", "--key", code)
        assert refused.exit_code != 0
        assert "consent" in refused.output and "Art. 19" in refused.output
        assert "Traceback" not in refused.output
    # over HTTP too, an item carries the key and the consent only: a feature is 422
    answer = httpx.post(
        f"{server.url}/v1/score/sme_credit",
        json={"items": [{"key": code, "consent": CONSENT, "capital": 1e6}]},
        headers={"Authorization": f"Bearer {t['lender']}"},
    )
    assert answer.status_code == 422 and "capital" in answer.text and "1000000" not in answer.text
    bad = root / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SOUND, "name": "deep", "params": {"max_depth": 40}}))
    refused = remote(server, t["bank"], "model", "train", "--file", str(bad))
    assert refused.exit_code != 0 and "max_depth" in refused.output and "Art. 15" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
