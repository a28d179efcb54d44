"""The workflow's commands with --server: the same text and JSON as on the host.

A real ``sandbox serve`` on 127.0.0.1 (tests/api_server.py). The whole flow of
Art. 10 to 24 runs as a user runs it: the CLI as a subprocess with
SANDBOX_SERVER and no platform home. The other commands run in-process
(click's runner with ``--server``; the same code, the same HTTP, less start-up
time), and every read and every refusal is compared with the host's answer to
the same command on the same home: byte for byte, stdout, stderr and exit code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_server import ApiServer, make_home, write_persons
from click.testing import CliRunner

from policies.errors import PayloadTooLarge
from sandbox.cli.app import main
from sandbox.client import Client
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, insert
from tests.conftest import HOLDS_OFF

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC)
DEADLINE = (NOW + timedelta(days=30)).date().isoformat()
SQL = "SELECT county, sex, COUNT(*) AS n, SUM(income) AS total FROM persons GROUP BY county, sex"
TERMS = [
    "--from",
    (NOW - timedelta(days=1)).date().isoformat(),
    "--until",
    (NOW + timedelta(days=365)).date().isoformat(),
    "--rights-duties",
    "aggregates only",
    "--security-requirements",
    "no raw rows leave",
    "--exit-conditions",
    "on breach",
    "--breach-liability",
    "termination",
    "--disposal",
    "delete",
]


def cli(server: ApiServer, token: str | None, *args: str, stdin: str | None = None):
    """``python -m sandbox ARGS`` with SANDBOX_SERVER, as a user on another machine runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(HOLDS_OFF)  # the review holds of table mode: see tests/conftest.py
    env.update(SANDBOX_SERVER=server.url, PYTHONPATH=str(REPO), SANDBOX_HOME="/nonexistent")
    if token:
        env["SANDBOX_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


RUNNER = CliRunner()
NO_ENV = {
    "SANDBOX_SERVER": None,
    "SANDBOX_TOKEN": None,
    "SANDBOX_TOKEN_FILE": None,
    "SANDBOX_HOME": None,
}


def remote(server: ApiServer, token: str, *args: str):
    """The CLI in-process, through the server."""
    return RUNNER.invoke(main, ["--server", server.url, *args, "--as", token], env=NO_ENV)


def host(server: ApiServer, token: str, *args: str):
    """The same command on the platform's host, on the home the server serves."""
    return RUNNER.invoke(main, ["--home", str(server.home), *args, "--as", token], env=NO_ENV)


def rjson(server: ApiServer, token: str, *args: str):
    result = remote(server, token, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-workflow")
    tokens = make_home(root / "home")
    platform = Platform.open(root / "home")
    with platform.store.transaction() as conn:
        _, tokens["reviewer2"] = insert(conn, "reviewer2", Role.REVIEWER, "Uni B", None, now_utc())
        _, tokens["county"] = insert(
            conn, "county", Role.AUTHORITY, "Rencheng", "370811", now_utc()
        )
    platform.close()
    csv, yaml_path = write_persons(root / "data")
    with ApiServer(root / "home") as server:
        with Client(server.url, tokens["provider"]) as api:
            api.register_upload("persons", csv, yaml_path)
        yield server, tokens, root


@pytest.fixture(scope="module")
def world(served):
    """operator2 under an agreement whose outputs wait for two checkers, built through the API."""
    server, tokens, _ = served
    c = {name: Client(server.url, token) for name, token in tokens.items()}
    notice = c["authority"].publish_notice(
        title="Income by county",
        domain="finance",
        scenario="regional income",
        datasets=["persons"],
        conditions="licensed firm",
        deadline=DEADLINE,
    )
    application = c["operator2"].apply(
        notice,
        scenario="income by county",
        datasets={"persons": None},
        security_measures="ISO 27001",
        security_officer="Li Na",
        incident_plan="call the authority",
    )
    c["authority"].appoint_reviewers(application, ["reviewer", "reviewer2"])
    c["reviewer"].score(application, capability=80, scenario=80, security=80)
    c["reviewer2"].score(application, capability=70, scenario=70, security=70)
    agreement = c["authority"].sign_agreement(
        application,
        valid_from=TERMS[1],
        valid_until=TERMS[3],
        rights_duties="aggregates only",
        security_requirements="no raw rows",
        exit_conditions="on breach",
        breach_liability="termination",
        disposal="delete",
        review_required=True,
    )
    request = c["operator2"].request_data(agreement, "persons", purpose="income by county")
    c["provider"].approve_request(request)
    for client in c.values():
        client.close()
    return {"notice": notice, "application": application, "agreement": agreement}


def test_the_whole_flow_remotely(served):
    """notice -> application -> two reviews -> agreement -> data request -> approval -> job ->
    feedback -> failed evaluation (the next job refused, Art. 24) -> rectify -> job released."""
    server, t, _ = served
    notice = ok(
        cli(
            server,
            t["authority"],
            "notice",
            "publish",
            "--title",
            "Income",
            "--domain",
            "finance",
            "--scenario",
            "lending",
            "--dataset",
            "persons",
            "--deadline",
            DEADLINE,
            "--aggregate",
            "min",
            "--json",
        )
    )
    assert notice["pass_rule"]["aggregate"] == "min" and notice["datasets"] == ["persons"]
    app = ok(
        cli(
            server,
            t["operator"],
            "apply",
            "--notice",
            str(notice["id"]),
            "--scenario",
            "income by county",
            "--dataset",
            "persons:county,sex,income,pid",
            "--security-measures",
            "ISO 27001",
            "--security-officer",
            "Wang Li",
            "--incident-plan",
            "stop jobs, call the authority",
            "--json",
        )
    )["application"]
    aid = str(app)
    appointed = ok(
        cli(
            server,
            t["authority"],
            "review",
            "appoint",
            aid,
            "--reviewer",
            "reviewer",
            "--reviewer",
            "reviewer2",
            "--json",
        )
    )
    assert len(appointed["reviews"]) == 2
    scores = ["--capability", "80", "--scenario", "70", "--security", "90"]
    first = cli(server, t["reviewer"], "review", "score", aid, *scores)
    assert first.stdout.strip() == f"scored; application {aid} is under_review", first.stderr
    second = ok(cli(server, t["reviewer2"], "review", "score", aid, *scores, "--json"))
    assert second == {"application": app, "status": "passed"}
    signed = cli(
        server,
        t["authority"],
        "agreement",
        "sign",
        aid,
        *TERMS,
        "--checker",
        "reviewer",
        "--checker",
        "reviewer2",
    )
    assert signed.returncode == 0, signed.stderr
    agreement = signed.stdout.split()[1]
    assert signed.stdout.startswith(f"agreement {agreement} signed; active from")
    req = ok(
        cli(
            server,
            t["operator"],
            "request",
            "data",
            "--agreement",
            agreement,
            "--dataset",
            "persons",
            "--purpose",
            "income by county",
            "--json",
        )
    )["request"]
    grant = ok(cli(server, t["provider"], "request", "approve", str(req), "--json"))["grant"]
    job = ok(cli(server, t["operator"], "job", "submit", "--sql", "-", "--json", stdin=SQL))
    assert job["state"] == "released" and job["product"]
    given = cli(server, t["operator"], "product", "deliver", job["product"], "--to", "consumer")
    assert given.returncode == 0 and "delivered to consumer" in given.stdout, given.stderr
    points = ("--quality", "4", "--use", "4", "--effect", "3")
    fed = cli(server, t["consumer"], "feedback", job["product"], *points)
    assert fed.returncode == 0 and f"on {job['product']} recorded" in fed.stdout, fed.stderr
    failed = cli(
        server,
        t["authority"],
        "evaluate",
        "--agreement",
        agreement,
        "--result",
        "fail",
        "--notes",
        "late usage reports",
        "--deadline",
        DEADLINE,
    )
    assert "failed: agreement suspended until rectified" in failed.stdout, failed.stderr
    refused = cli(server, t["operator"], "job", "submit", "--sql", "-", "--json", stdin=SQL)
    assert refused.returncode == 3
    reason = json.loads(refused.stdout)["reason"]
    assert (reason["rule"], reason["article"]) == ("agreement_suspended", "Art. 24")
    notified = rjson(server, t["operator"], "inbox")["items"]  # in-process: saves a start-up
    assert notified[0]["kind"] == "evaluation_failed"  # newest first
    assert "agreement_suspended" not in {n["kind"] for n in notified}  # one notice, not two
    rectified = cli(
        server, t["authority"], "rectify", "--agreement", agreement, "--notes", "reports filed"
    )
    assert rectified.stdout.strip() == f"agreement {agreement} rectified and restored"
    again = ok(cli(server, t["operator"], "job", "submit", "--sql", "-", "--json", stdin=SQL))
    assert again["state"] == "released" and again["product"] != job["product"]
    with Client(server.url, t["auditor"]) as api:
        shown = api.agreement(int(agreement))
        assert shown["status"] == "active" and shown["grants"] == [grant]
        assert api.verify_ledger().entries > 0


def test_a_refusal_is_one_line_naming_rule_and_article(served, world):
    server, t, _ = served
    done = cli(
        server,
        t["operator"],
        "apply",
        "--notice",
        str(world["notice"]),
        "--scenario",
        "s",
        "--dataset",
        "persons",
        "--security-measures",
        "m",
        "--incident-plan",
        "p",
    )
    assert done.returncode == 3
    assert done.stderr.startswith("error [refused]: an application must name")
    assert done.stderr.rstrip().endswith("(Art. 20) (rule security_officer_required)")
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_a_wrong_role_is_one_line_naming_the_article(served):
    server, t, _ = served
    done = cli(server, t["operator"], "inspect", "--operator", "operator2", "--finding", "x")
    assert done.returncode == 3
    assert done.stderr.startswith("error [forbidden]: ") and "(Art. 22)" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


# --- the same answer on the host and through the server ---------------------------------------


READS = [
    ("authority", "notice", "show", "{notice}"),
    ("consumer", "notice", "show", "{notice}"),
    ("operator2", "application", "show", "{application}"),
    ("reviewer", "application", "show", "{application}"),
    ("authority", "application", "show", "{application}"),
    ("auditor", "review", "show", "{application}"),
    ("operator2", "agreement", "show", "{agreement}"),
    ("provider", "dataset", "show", "persons"),
    ("authority", "inbox"),
    ("operator2", "inbox", "--limit", "2"),
    ("provider", "provider", "uses"),
    ("provider", "agreement", "show", "{agreement}"),  # it signed for persons (Art. 13)
    ("consumer", "notice", "list", "--open"),
    ("operator2", "agreement", "list"),
    ("provider", "request", "list", "--limit", "1"),
    ("reviewer", "review", "list"),
    ("auditor", "evaluation", "list"),
    ("authority", "incident", "list", "--limit", "1"),
    ("consumer", "product", "catalogue"),
    ("authority", "security", "plans"),
]

REFUSALS = [
    ("operator", "provider", "uses"),  # a provider's supervision of its data (Art. 5)
    # another provider signs for persons; the provider signs twice (its approval signed)
    (
        "provider2",
        "provider",
        "sign",
        "--agreement",
        "{agreement}",
        "--dataset",
        "persons",
        "--terms",
        "mine now",
    ),
    (
        "provider",
        "provider",
        "sign",
        "--agreement",
        "{agreement}",
        "--dataset",
        "persons",
        "--terms",
        "again",
    ),
    ("consumer", "agreement", "list"),
    ("reviewer", "incident", "list"),
    ("operator", "review", "list"),
    ("operator", "security", "plans"),
    (
        "consumer",
        "incident",
        "report",
        "--product",
        "prod-999999",
        "--kind",
        "leak",
        "--description",
        "x",
    ),  # fmt: skip
    ("operator", "incident", "report", "--kind", "leak", "--description", "x"),  # no --operator
    (
        "provider2",
        "provider",
        "suspend",
        "--agreement",
        "{agreement}",
        "--dataset",
        "persons",
        "--reason",
        "not mine",
    ),  # fmt: skip
    ("operator", "application", "show", "{application}"),  # another operator's: not found
    ("consumer", "application", "show", "{application}"),
    ("operator", "review", "show", "{application}"),
    ("provider2", "dataset", "show", "persons"),
    ("authority", "agreement", "expire", "{agreement}"),  # still in its term
    ("authority", "agreement", "terminate", "{agreement}", "--reason", "x"),
    ("authority", "rectify", "--agreement", "{agreement}", "--notes", "x"),
    (
        "reviewer",
        "review",
        "score",
        "{application}",
        "--capability",
        "101",
        "--scenario",
        "1",
        "--security",
        "1",
    ),
    ("consumer", "feedback", "prod-000001", "--quality", "9", "--use", "1", "--effect", "1"),
    (
        "authority",
        "notice",
        "publish",
        "--title",
        "t",
        "--domain",
        "d",
        "--scenario",
        "s",
        "--dataset",
        "persons",
        "--deadline",
        DEADLINE,
        "--pass-score",
        "150",
    ),
    (
        "operator2",
        "apply",
        "--notice",
        "{notice}",
        "--scenario",
        "s",
        "--dataset",
        "persons",
        "--security-measures",
        "m",
        "--security-officer",
        "Li",
    ),
    ("authority", "inspect", "--operator", "operator2", "--finding", "f", "--task", "t"),
    ("provider", "quality", "answer", "999", "--text", "fixed"),
    ("operator2", "report", "usage", "--operator", "operator2", "--period", "2026-13"),
    ("operator2", "report", "usage", "--operator", "operator", "--period", "2026"),
    ("operator", "output", "vote", "1", "--decision", "approve", "--reason", "r"),
    ("operator", "request", "approve", "1"),
    ("auditor", "agreement", "restore", "{agreement}", "--reason", "r"),
    ("operator2", "agreement", "schedule", "{agreement}", "--drill-every", "year"),
    ("authority", "agreement", "schedule", "{agreement}"),  # names no schedule
]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("case", READS, ids=lambda c: " ".join(c[1:3]) + f" as {c[0]}")
def test_reads_print_the_same_as_on_the_host(served, world, case, as_json):
    server, t, _ = served
    who, *args = case
    args = [a.format(**world) for a in args] + (["--json"] if as_json else [])
    here, there = host(server, t[who], *args), remote(server, t[who], *args)
    assert here.exit_code == 0, here.output
    assert (there.exit_code, there.stdout, there.stderr) == (0, here.stdout, "")


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: " ".join(c[1:3]) + f" as {c[0]}")
def test_refusals_print_the_same_as_on_the_host(served, world, case, tmp_path):
    server, t, _ = served
    who, *args = case
    args = [a.format(**world) for a in args]
    here, there = host(server, t[who], *args), remote(server, t[who], *args)
    assert here.exit_code in (1, 2, 3) and here.stderr.startswith("error ["), here.output
    assert (there.exit_code, there.stdout, there.stderr) == (here.exit_code, "", here.stderr)


# --- the rest of the commands through the server -------------------------------------------


def test_held_output_quality_usage_and_supervision_remotely(served, world, tmp_path):
    server, t, _ = served
    agreement = str(world["agreement"])
    sql = tmp_path / "q.sql"
    sql.write_text(SQL)
    submitted = remote(server, t["operator2"], "job", "submit", "--sql", str(sql), "--json")
    assert submitted.exit_code == 4, submitted.output  # withheld: its own exit status
    job = json.loads(submitted.stdout)
    assert job["state"] == "withheld" and job["product"] is None
    assert not job["report"]["summary"].startswith("Released"), job["report"]["summary"]
    assert job["report"]["summary"].startswith("Withheld for review: nothing is released")
    jid = str(job["job"])
    appointed = rjson(
        server,
        t["authority"],
        "output",
        "appoint",
        "--job",
        jid,
        "--checker",
        "reviewer",
        "--checker",
        "reviewer2",
    )
    assert len(appointed["appointments"]) == 2
    opened = remote(server, t["operator2"], "output", "review", jid)
    assert opened.stdout.strip() == f"job {jid}: pending (0 of 2 votes in)", opened.output
    vote = ["output", "vote", jid, "--decision", "approve", "--reason", "no small cells"]
    assert rjson(server, t["reviewer"], *vote)["status"] == "pending"
    with Client(server.url, t["reviewer2"]) as api:  # the held output, typed, as checkers see it
        (listed,) = [h for h in api.held_outputs() if h.job == int(jid)]
        assert listed.appointed and not listed.voted and listed.votes_in == 1
        held = api.held_output(int(jid))
        assert held.job == int(jid) and held.columns and held.review.status == "pending"
        assert "operator" not in held.to_dict()  # never its author
    approved = remote(server, t["reviewer2"], *vote)
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith(f"job {jid}: approved, product prod-")

    ticket = rjson(
        server, t["operator2"], "quality", "report", "--dataset", "persons", "--text", "blanks"
    )
    assert ticket["status"] == "open"
    answered = remote(
        server,
        t["provider"],
        "quality",
        "answer",
        str(ticket["ticket"]),
        "--text",
        "fixed",
        "--version",
        "1",
    )
    assert answered.stdout.strip() == f"quality ticket {ticket['ticket']} answered"

    quarter = f"{NOW.year}-Q{(NOW.month - 1) // 3 + 1}"
    out = tmp_path / "usage"
    usage = rjson(
        server,
        t["operator2"],
        "report",
        "usage",
        "--operator",
        "operator2",
        "--period",
        quarter,
        "--out",
        str(out),
    )
    assert usage["totals"]["jobs"] == 1 and usage["totals"]["withheld"] == 1
    assert usage["files"] == {n: str(out / n) for n in ("usage.json", "usage.csv", "usage.png")}
    assert (out / "usage.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "usage.json").read_text())["totals"] == usage["totals"]
    assert (out / "usage.csv").read_text().startswith("week,jobs,refusals,withheld")
    with Client(server.url, t["auditor"]) as api:
        entry = api.ledger(action="usage.report", subject="usage:operator2")[-1]
    assert entry.details["sha256"] == hashlib.sha256((out / "usage.json").read_bytes()).hexdigest()

    inspected = remote(
        server,
        t["authority"],
        "inspect",
        "--operator",
        "operator2",
        "--finding",
        "logs 30 days",
        "--task",
        "keep logs 180 days",
        "--deadline",
        DEADLINE,
    )
    assert inspected.exit_code == 0 and inspected.stdout.startswith("inspection "), inspected.output
    assert rjson(server, t["operator2"], "inbox")["items"][0]["kind"] == "inspection"

    rid = rjson(
        server,
        t["operator2"],
        "request",
        "data",
        "--agreement",
        agreement,
        "--dataset",
        "persons",
        "--purpose",
        "again",
    )["request"]
    refused = rjson(server, t["provider"], "request", "refuse", str(rid), "--reason", "twice")
    assert refused == {"request": rid, "status": "refused"}

    suspended = remote(server, t["authority"], "agreement", "suspend", agreement, "--reason", "a")
    assert suspended.stdout.strip() == f"agreement {agreement} is suspended", suspended.output
    restored = rjson(server, t["authority"], "agreement", "restore", agreement, "--reason", "b")
    assert restored == {"agreement": int(agreement), "status": "active"}
    assert remote(server, t["authority"], "agreement", "expire").stdout.strip() == "expired: none"

    incident = rjson(
        server,
        t["operator2"],
        "incident",
        "report",
        "--operator",
        "operator2",
        "--kind",
        "loss",
        "--description",
        "laptop lost",
    )
    assert incident["suspended"] == [int(agreement)] and incident["notified"]
    assert rjson(server, t["authority"], "inbox")["items"][0]["kind"] == "incident"


def test_schedules_set_through_the_server_show_on_both(served, world):
    server, t, _ = served
    agreement = str(world["agreement"])
    args = ["agreement", "schedule", agreement, "--training-every", "quarter"]
    done = rjson(server, t["authority"], *args, "--evaluate-every", "year")
    assert [(d, s["every"]) for d, s in done.items()] == [("training", "quarter"),
                                                          ("evaluation", "year")]  # fmt: skip
    assert done["training"]["due"] == [] and done["training"]["missing"] == []
    shown = ["agreement", "show", agreement, "--json"]
    here, there = host(server, t["operator2"], *shown), remote(server, t["operator2"], *shown)
    assert there.stdout == here.stdout and json.loads(there.stdout)["schedules"] == done
    with Client(server.url, t["auditor"]) as api:
        sets = api.ledger(action="schedule.set", subject=f"agreement:{agreement}")
    assert [(e.details["duty"], e.article) for e in sets][-2:] == [("training", "Art. 20"),
                                                                   ("evaluation", "Art. 23")]  # fmt: skip


def test_evaluation_materials_through_the_server(served, world, tmp_path):
    """An operator submits a material through the server; lists, downloads, the evaluation
    that considered it and every refusal print as on the host (Art. 23)."""
    server, t, _ = served
    agreement = str(world["agreement"])
    source = tmp_path / "self-assessment.md"
    source.write_bytes(b"# Self-assessment\nstaff trained: 12\n")
    submitted = rjson(server, t["operator2"], "evaluation", "submit", agreement, "--file",
                      str(source), "--title", "self-assessment")  # fmt: skip
    assert submitted["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    material = str(submitted["id"])
    for who in ("operator2", "authority", "auditor"):
        for args in (["evaluation", "materials", agreement], ["evaluation", "materials",
                                                              agreement, "--json"]):  # fmt: skip
            here, there = host(server, t[who], *args), remote(server, t[who], *args)
            assert here.exit_code == 0, here.output
            assert (there.exit_code, there.stdout) == (0, here.stdout)
    saved = {}
    for way, run in (("host", host), ("remote", remote)):
        done = run(server, t["authority"], "evaluation", "download", material, "--out",
                   str(tmp_path / way), "--json")  # fmt: skip
        assert done.exit_code == 0, done.output
        saved[way] = json.loads(done.stdout)
        assert Path(saved[way]["path"]).read_bytes() == source.read_bytes()
    assert {**saved["remote"], "path": ""} == {**saved["host"], "path": ""}
    evaluated = rjson(server, t["authority"], "evaluate", "--agreement", agreement, "--result",
                      "pass", "--notes", "drills kept", "--material", material, "--score", "77")  # fmt: skip
    shown = ["evaluation", "show", str(evaluated["evaluation"]), "--json"]
    here, there = host(server, t["operator2"], *shown), remote(server, t["operator2"], *shown)
    assert there.stdout == here.stdout and json.loads(there.stdout)["score"] == 77
    assert [m["id"] for m in json.loads(there.stdout)["materials"]] == [int(material)]
    big = tmp_path / "huge.pdf"
    with open(big, "wb") as fh:
        fh.truncate(20 * 1024 * 1024 + 1)  # sparse: refused by its size before it is sent
    wrong = tmp_path / "tool.exe"
    wrong.write_bytes(b"MZ")
    for who, *args in [
        ("consumer", "evaluation", "materials", agreement),  # a role that reads none
        ("county", "evaluation", "materials", agreement),  # an authority of another county
        ("county", "evaluation", "download", material, "--out", str(tmp_path / "c")),
        ("operator", "evaluation", "download", material, "--out", str(tmp_path / "o")),
        ("provider", "evaluation", "show", str(evaluated["evaluation"])),
        ("authority", "evaluation", "submit", agreement, "--file", str(source), "--title", "t"),
        ("operator2", "evaluation", "submit", agreement, "--file", str(wrong), "--title", "t"),
        ("operator2", "evaluation", "submit", agreement, "--file", str(big), "--title", "t"),
        ("authority", "evaluate", "--agreement", agreement, "--result", "pass", "--notes", "n",
         "--material", "9999"),
    ]:  # fmt: skip
        here, there = host(server, t[who], *args), remote(server, t[who], *args)
        assert here.exit_code in (1, 2, 3) and here.stderr.startswith("error ["), here.output
        assert (there.exit_code, there.stdout, there.stderr) == (here.exit_code, "", here.stderr)
    with Client(server.url, t["operator2"]) as api:  # the route's own cap, past the CLI's
        with pytest.raises(PayloadTooLarge, match="over the limit of 20 MiB") as info:
            api.submit_material(int(agreement), big, "sent whole")
        assert info.value.status == 413
        assert len(api.materials(int(agreement))) == 1


def test_dataset_show_remotely_hides_the_profile_from_operators(served):
    server, t, _ = served
    shown = remote(server, t["operator"], "dataset", "show", "persons")
    assert shown.exit_code == 0, shown.output
    assert "shown to the dataset's provider, the authority and auditors only" in shown.stdout
    assert rjson(server, t["operator"], "dataset", "show", "persons")["profile"] is None
    assert rjson(server, t["provider"], "dataset", "show", "persons")["profile"]["rows"] == 2000


def test_application_show_and_the_new_routes_are_documented():
    api = (REPO / "docs" / "api.md").read_text()
    for route in [
        "GET /v1/notices/{id}",
        "GET /v1/applications/{id}",
        "POST /v1/agreements/expire",
        "POST /v1/agreements/{id}/rectify",
        "POST /v1/inspections",
        "POST /v1/quality-tickets",
        "POST /v1/quality-tickets/{id}/answer",
        "POST /v1/usage-reports",
        "POST /v1/checkers",
        "POST /v1/jobs/{id}/review/open",
    ]:
        assert f"`{route}" in api, route
    assert "sandbox application show" in (REPO / "docs" / "workflow.md").read_text()


def test_a_consumer_files_its_incident_plan_through_the_server(served, tmp_path):
    server, t, _ = served
    plan = tmp_path / "plan.txt"
    plan.write_text("stop use of delivered products; call the operator and the authority")
    filed = rjson(server, t["consumer"], "security", "plan", "--file", str(plan))
    listed = rjson(server, t["authority"], "security", "plans")["items"]
    assert [(p["id"], p["consumer"], p["plan"]) for p in listed][:1] == [
        (filed["plan"], "consumer", plan.read_text())
    ]
    with Client(server.url, t["auditor"]) as api:
        [entry] = api.ledger(subject=f"incident_plan:{filed['plan']}")
    assert entry.action == "incident_plan.filed" and entry.actor == "consumer"
