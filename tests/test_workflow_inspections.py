"""Inspections (Art. 5, 22; issue 20, item 9): by authorities, providers and auditors, with
findings, tasks and a deadline; the operator reports them rectified, the inspector closes;
each step one ledger entry and a notice to the other side."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from policies.errors import Conflict, InputError, NotFound, PermissionDenied
from sandbox.cli.app import main
from sandbox.core.principals import Role
from sandbox.registry.inbox import notifications_of
from sandbox.workflow import inspections
from tests.workflow_helpers import NOW, entries, granted, make_cast, verify_ledger


@pytest.fixture
def cast(platform, make_principal, provider, pums_dataset):
    c = make_cast(platform, make_principal, provider)
    c.stranger, _ = make_principal("stranger", Role.PROVIDER, org="Other Bureau")
    granted(c)
    yield c
    verify_ledger(platform)


def kinds(cast, who) -> list[str]:
    return [n["kind"] for n in notifications_of(cast.platform, who)]


def test_a_provider_inspects_the_operator_rectifies_the_provider_closes(cast):
    iid = inspections.inspect(cast.platform, cast.provider, "operator", ["queries on raw ids"],
                              ["train the analysts"], NOW + timedelta(days=30))  # fmt: skip
    assert "inspection" in kinds(cast, cast.operator)
    inspections.rectify(cast.platform, cast.operator, iid, "analysts trained on 3 December")
    assert "inspection_rectified" in kinds(cast, cast.provider)
    inspections.close(cast.platform, cast.provider, iid, "checked the training records")
    assert "inspection_closed" in kinds(cast, cast.operator)
    moves = [
        (e["details"]["from"], e["details"]["to"])
        for e in entries(cast.platform, f"inspection:{iid}")
    ]
    assert moves == [(None, "open"), ("open", "rectified"), ("rectified", "closed")]
    [seen] = inspections.inspections_of(cast.platform, cast.operator)
    assert seen["status"] == "closed" and [h["to"] for h in seen["history"]] == [
        "rectified",
        "closed",
    ]
    with pytest.raises(Conflict, match="closed"):
        inspections.close(cast.platform, cast.provider, iid, "again")


def test_who_may_inspect_rectify_close_and_read(cast):
    with pytest.raises(PermissionDenied) as info:  # it authorized nothing to this operator
        inspections.inspect(cast.platform, cast.stranger, "operator", ["x"])
    assert info.value.code == "not_the_provider"
    with pytest.raises(PermissionDenied):
        inspections.inspect(cast.platform, cast.consumer, "operator", ["x"])
    by_auditor = inspections.inspect(cast.platform, cast.auditor, "operator", ["logs incomplete"])
    with pytest.raises(InputError, match="no tasks"):
        inspections.rectify(cast.platform, cast.operator, by_auditor, "nothing to do")
    with pytest.raises(NotFound):
        inspections.rectify(cast.platform, cast.rival, by_auditor, "not mine")
    with pytest.raises(PermissionDenied):  # neither the inspector nor the city authority
        inspections.close(cast.platform, cast.provider, by_auditor, "not mine")
    inspections.close(cast.platform, cast.city, by_auditor, "closed by the city")
    assert [i["id"] for i in inspections.inspections_of(cast.platform, cast.provider)] == []
    assert [i["id"] for i in inspections.inspections_of(cast.platform, cast.auditor)] == [
        by_auditor
    ]
    assert inspections.inspections_of(cast.platform, cast.rival) == []
    with pytest.raises(InputError, match="--deadline"):
        inspections.inspect(cast.platform, cast.city, "operator", ["x"], ["y"])


def test_the_command_line_follows_an_inspection(cast):
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]

    def run(who, *args):
        result = runner.invoke(main, [*home, *args, "--as", cast.tokens[who], "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    iid = inspections.inspect(
        cast.platform, cast.city, "operator", ["f"], ["t"], NOW + timedelta(days=9)
    )
    assert (
        run("operator", "inspection", "rectify", str(iid), "--notes", "done")["status"]
        == "rectified"
    )
    assert run("city", "inspection", "close", str(iid), "--notes", "ok")["status"] == "closed"
    assert [i["status"] for i in run("auditor", "inspection", "list")] == ["closed"]
