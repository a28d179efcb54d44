"""The workflow's commands, end to end through click (``--json`` and ``--as TOKEN``).

One flow: notice, application, two reviews, agreement, data request and
approval, a job, feedback, a failed evaluation (the next job refused under
Art. 24), rectification, the usage report, an incident, and a documented
command for every workflow command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sandbox.cli.app import main
from tests.workflow_helpers import make_cast, verify_ledger

COMMANDS = [
    "notice publish",
    "apply",
    "review appoint",
    "review score",
    "agreement sign",
    "agreement suspend",
    "agreement restore",
    "agreement terminate",
    "agreement show",
    "agreement expire",
    "request data",
    "request approve",
    "request refuse",
    "quality report",
    "quality answer",
    "evaluate",
    "rectify",
    "incident report",
    "inspect",
    "feedback",
    "product deliver",
    "report usage",
    "output review",
    "output vote",
    "output appoint",
    "inbox",
    "tick",
    "inspection list",
    "inspection rectify",
    "inspection close",
    "security record",
    "security list",
    "notice list",
    "application list",
    "agreement list",
    "request list",
    "quality list",
    "provider uses",
    "provider suspend",
    "provider lift",
    "provider terminate",
]


@pytest.fixture
def run(platform, make_principal, provider, pums_dataset):
    cast = make_cast(platform, make_principal, provider)
    runner = CliRunner()

    def invoke(who: str | None, *args: str, ok: bool = True):
        token = ["--as", cast.tokens[who]] if who else []
        result = runner.invoke(main, ["--home", str(platform.home), *args, *token, "--json"])
        if ok:
            assert result.exit_code == 0, result.output
            return json.loads(result.output)
        return result

    invoke.cast = cast
    yield invoke
    verify_ledger(platform)


def test_the_whole_flow_from_the_command_line(run, tmp_path):
    deadline = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    notice = run(
        "city",
        "notice",
        "publish",
        "--title",
        "Income",
        "--domain",
        "finance",
        "--scenario",
        "lending",
        "--dataset",
        "pums",
        "--deadline",
        deadline,
    )
    plan = tmp_path / "plan.txt"
    plan.write_text("stop jobs, call the authority")
    app = run(
        "operator",
        "apply",
        "--notice",
        str(notice["id"]),
        "--scenario",
        "lending",
        "--dataset",
        "pums:sex,income,educ,pid",
        "--security-measures",
        "ISO 27001",
        "--security-officer",
        "Wang Li",
        "--incident-plan",
        f"@{plan}",
    )
    aid = str(app["application"])
    no_officer = run(
        "operator",
        "apply",
        "--notice",
        str(notice["id"]),
        "--scenario",
        "s",
        "--dataset",
        "pums",
        "--security-measures",
        "m",
        "--incident-plan",
        "p",
        ok=False,
    )
    assert no_officer.exit_code == 3
    assert "Art. 20" in no_officer.output
    run("city", "review", "appoint", aid, "--reviewer", "r1", "--reviewer", "r2")
    run("r1", "review", "score", aid, "--capability", "80", "--scenario", "70", "--security", "90")
    assert (
        run(
            "r2",
            "review",
            "score",
            aid,
            "--capability",
            "70",
            "--scenario",
            "65",
            "--security",
            "75",
        )["status"]
        == "passed"
    )
    agreement = run(
        "city",
        "agreement",
        "sign",
        aid,
        "--from",
        "2020-01-01",
        "--until",
        "2099-01-01",
        "--rights-duties",
        "aggregates only",
        "--security-requirements",
        "no raw rows",
        "--exit-conditions",
        "breach",
        "--breach-liability",
        "termination",
        "--disposal",
        "delete",
    )["agreement"]
    req = run(
        "operator",
        "request",
        "data",
        "--agreement",
        str(agreement),
        "--dataset",
        "pums",
        "--purpose",
        "income by sex",
    )["request"]
    grant = run("city", "request", "approve", str(req))["grant"]
    assert grant
    shown = run("auditor", "agreement", "show", str(agreement))
    assert shown["grants"] == [grant] and shown["status"] == "active"
    sql = tmp_path / "q.sql"
    sql.write_text("SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex")
    job = run("operator", "job", "submit", "--sql", str(sql))
    assert job["state"] == "released"
    assert run("operator", "product", "deliver", job["product"], "--to", "consumer")["delivery"]
    assert [p["id"] for p in run("consumer", "product", "list")] == [job["product"]]
    fed = ["--quality", "5", "--use", "4", "--effect", "5", "--comment", "good"]
    assert run("consumer", "feedback", job["product"], *fed)
    run(
        "city",
        "evaluate",
        "--agreement",
        str(agreement),
        "--result",
        "fail",
        "--notes",
        "late reports",
        "--deadline",
        deadline,
    )
    refused = run("operator", "job", "submit", "--sql", str(sql), ok=False)
    body = json.loads(refused.output)
    assert (body["state"], body["reason"]["rule"], body["reason"]["article"]) == (
        "refused",
        "agreement_suspended",
        "Art. 24",
    )
    assert run("operator", "inbox")["items"][0]["kind"] == "evaluation_failed"
    run("city", "rectify", "--agreement", str(agreement), "--notes", "reports filed")
    assert run("operator", "job", "submit", "--sql", str(sql))["state"] == "released"
    quarter = f"{datetime.now(UTC).year}-Q{(datetime.now(UTC).month - 1) // 3 + 1}"
    usage = run(
        "operator",
        "report",
        "usage",
        "--operator",
        "operator",
        "--period",
        quarter,
        "--out",
        str(tmp_path / "usage"),
    )
    assert usage["totals"]["jobs"] == 3 and usage["totals"]["refusals"] == 1
    assert Path(usage["files"]["usage.png"]).read_bytes()[:4] == b"\x89PNG"
    incident = run(
        "operator",
        "incident",
        "report",
        "--operator",
        "operator",
        "--kind",
        "leak",
        "--description",
        "laptop lost",
    )
    assert incident["suspended"] == [agreement]
    denied = run("auditor", "agreement", "restore", str(agreement), "--reason", "x", ok=False)
    assert denied.exit_code == 3 and "Art. 24" in denied.output


def test_every_workflow_command_is_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "workflow.md").read_text()
    for command in COMMANDS:
        assert f"sandbox {command}" in text, command
