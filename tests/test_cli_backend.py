"""One backend per command: the CLI is written once, for the host and for --server.

- no module of ``sandbox/cli/`` but :mod:`sandbox.cli.common` reads ``.server`` (the
  choice between host and server is :meth:`Context.backend`'s alone), read with ``ast``;
- both backends answer every call of :class:`sandbox.cli.backend.Backend`, with its
  parameters;
- the verify commands, host-only until the backend, print the same through a real
  ``sandbox serve`` as on the host, refusals included; ``verify unblock`` (no route)
  says it runs on the host only.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml
from api_server import ApiServer
from click.testing import CliRunner
from verify_helpers import CONSENT, IDENTITY, SOCIAL_INSURANCE, make_world

from sandbox.cli.app import main
from sandbox.cli.backend import Backend
from sandbox.cli.local import LocalBackend
from sandbox.cli.remote import RemoteBackend
from sandbox.core import principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform

CLI = Path(__file__).resolve().parents[1] / "sandbox" / "cli"


def server_reads(source: str, filename: str) -> list[str]:
    """Where ``source`` reads ``.server`` of anything but ``self`` (Context's own)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr == "server":
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{filename}:{node.lineno}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr"}
            and any(isinstance(a, ast.Constant) and a.value == "server" for a in node.args)
        ):
            found.append(f"{filename}:{node.lineno}")
    return found


def test_the_check_finds_a_branch_on_the_server():
    snippet = "def f(obj):\n    if obj.server:\n        pass\n    return getattr(obj, 'server')\n"
    assert server_reads(snippet, "x.py") == ["x.py:2", "x.py:4"]
    assert server_reads("x = ctx.obj.server and 1\n", "y.py") == ["y.py:1"]


def test_no_command_branches_on_the_server():
    found = []
    for path in sorted(CLI.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        found += server_reads(text, path.name)
        if path.name != "common.py":
            found += [f"{path.name}: self.server"] * text.count("self.server")
    assert found == [], "only Context.backend (and Context.platform) may look at --server"


def test_both_backends_answer_every_call_with_its_parameters():
    calls = sorted(Backend.__abstractmethods__)
    assert len(calls) > 40
    for cls in (LocalBackend, RemoteBackend):
        assert not getattr(cls, "__abstractmethods__", None), cls
        for name in calls:
            want = [
                (p.name, p.kind)
                for p in inspect.signature(getattr(Backend, name)).parameters.values()
            ]
            got = [
                (p.name, p.kind) for p in inspect.signature(getattr(cls, name)).parameters.values()
            ]
            assert got == want, f"{cls.__name__}.{name}"


# --- the verify commands through a server ---------------------------------------------------

RUNNER = CliRunner()
NO_ENV = {"SANDBOX_SERVER": None, "SANDBOX_TOKEN": None, "SANDBOX_TOKEN_FILE": None}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_backend")
    platform = Platform.init(tmp / "home")

    def make(name, role, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(platform, make, tmp / "data", persons=200)
    platform.close()
    with ApiServer(tmp / "home", workers=1) as server:
        yield server, world, tmp


def remote(served, who: str, *args: str):
    server, world, _ = served
    return RUNNER.invoke(
        main, ["--server", server.url, *args, "--as", world.tokens[who]], env=NO_ENV
    )


def host(served, who: str, *args: str):
    server, world, _ = served
    return RUNNER.invoke(
        main, ["--home", str(server.home), *args, "--as", world.tokens[who]], env=NO_ENV
    )


def same(served, who: str, *args: str) -> str:
    here, there = host(served, who, *args), remote(served, who, *args)
    assert here.exit_code == 0, here.output
    assert (there.exit_code, there.stdout, there.stderr) == (0, here.stdout, "")
    return here.stdout


def test_verify_commands_through_the_server(served):
    _, world, tmp = served
    for definition in (IDENTITY, SOCIAL_INSURANCE):
        path = tmp / f"{definition['name']}.yaml"
        path.write_text(yaml.safe_dump(definition), encoding="utf-8")
        made = remote(served, "operator", "verify", "define", "--file", str(path), "--json")
        assert made.exit_code == 0, made.output
        assert json.loads(made.stdout)["state"] == "defined"
    refused = ("verify", "approve", "identity")
    here, there = host(served, "operator", *refused), remote(served, "operator", *refused)
    assert here.exit_code == 3 and here.stderr.startswith("error ["), here.output
    assert (there.exit_code, there.stdout, there.stderr) == (3, "", here.stderr)
    approved = remote(served, "city", "verify", "approve", "identity")
    assert approved.exit_code == 0 and approved.stdout.startswith("published identity: ")
    rejected = remote(served, "city", "verify", "reject", "si_paid_6_of_12", "--reason", "later")
    assert (rejected.exit_code, rejected.stdout) == (0, "rejected si_paid_6_of_12\n")

    for as_json in ([], ["--json"]):
        same(served, "consumer", "verify", "list", *as_json)
        same(served, "city", "verify", "list", *as_json)

    persons = world.tables["persons"].to_pydict()
    subject = ["--key", f"pid={persons['pid'][3]}", "--key", f"name={persons['name'][3]}"]
    consent = [
        "--consent-ref",
        CONSENT["reference"],
        "--purpose",
        CONSENT["purpose"],
        "--consented-at",
        CONSENT["given_at"],
    ]
    call = ("verify", "call", "identity", *subject, *consent)
    here, there = host(served, "consumer", *call), remote(served, "consumer", *call)
    assert (here.exit_code, there.exit_code) == (0, 0), here.output + there.output
    request = re.compile(r"\(request [^,]+,")
    assert request.sub("(request R,", there.stdout) == request.sub("(request R,", here.stdout)
    assert here.stdout.startswith("match\n"), here.stdout
    # without the subject's consent the call is refused on both sides, in the same words
    bare = ("verify", "call", "identity", *subject)
    here, there = host(served, "consumer", *bare), remote(served, "consumer", *bare)
    assert here.exit_code == 3 and "consent" in here.stderr, here.output
    assert (there.exit_code, there.stdout, there.stderr) == (3, "", here.stderr)

    for as_json in ([], ["--json"]):
        same(served, "auditor", "verify", "stats", "identity", *as_json)
        same(
            served,
            "auditor",
            "verify",
            "who",
            "--key",
            f"pid={persons['pid'][3]}",
            "--product",
            "identity",
            *as_json,
        )


def test_verify_unblock_runs_on_the_host_only(served):
    done = remote(served, "city", "verify", "unblock", "consumer", "--reason", "r")
    assert done.exit_code == 2
    assert "runs on the platform's host only" in done.stderr, done.output
