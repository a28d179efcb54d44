"""Security duties on record (Art. 20, 21; issue 20, item 8): an operator records its staff
trainings and emergency drills (who, when, attendance); each is a ledger entry, readable
by the operator, the authorities within reach and auditors."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from policies.errors import InputError, NotFound, PermissionDenied
from sandbox.cli.app import main
from sandbox.registry.base import BEIJING
from sandbox.workflow import duties
from tests.workflow_helpers import (
    COUNTY,
    NOW,
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
)

YESTERDAY = (NOW.astimezone(BEIJING) - timedelta(days=1)).date().isoformat()


def test_an_operator_records_trainings_and_drills(cast):
    agreement_id, _ = granted(cast)
    training = duties.record(cast.platform, cast.operator, "training", held_on=YESTERDAY,
                             topic="data classification and the output check", attendees=12,
                             names=["Zhang Wei", "Li Na"], agreement_id=agreement_id)  # fmt: skip
    drill = duties.record(cast.platform, cast.operator, "drill", held_on=YESTERDAY,
                          topic="a leaked laptop", attendees=5)  # fmt: skip
    [entry] = entries(cast.platform, f"security_record:{training}")
    assert (entry["action"], entry["article"]) == ("security.training", "Art. 20")
    assert entries(cast.platform, f"security_record:{drill}")[0]["article"] == "Art. 21"
    mine = duties.records_of(cast.platform, cast.operator)
    assert [(r["kind"], r["attendees"]) for r in mine] == [("training", 12), ("drill", 5)]
    assert mine[0]["names"] == ["Li Na", "Zhang Wei"] and mine[0]["agreement"] == agreement_id
    assert [r["id"] for r in duties.records_of(cast.platform, cast.city, "operator")] == [
        training,
        drill,
    ]
    assert len(duties.records_of(cast.platform, cast.auditor)) == 2
    assert duties.records_of(cast.platform, cast.rival) == []  # another operator's stay unseen
    with pytest.raises(PermissionDenied, match="Art. 5"):  # no agreement of its county
        duties.records_of(cast.platform, cast.county, "operator")
    with pytest.raises(PermissionDenied):
        duties.records_of(cast.platform, cast.consumer)


def test_bad_records_are_refused_and_nothing_is_written(cast):
    granted(cast, authority=cast.county, notice_kw={"jurisdiction": COUNTY})
    tomorrow = (NOW.astimezone(BEIJING) + timedelta(days=1)).date().isoformat()
    bad = [
        ({"kind": "party"}, "training .* or drill"),
        ({"held_on": tomorrow}, "in the future"),
        ({"held_on": "last week"}, "not an ISO date"),
        ({"attendees": 0}, "--attendees"),
        ({"topic": " "}, "'topic' is required"),
    ]
    for change, message in bad:
        args = {"kind": "drill", "held_on": YESTERDAY, "topic": "t", "attendees": 3, **change}
        kind = args.pop("kind")
        with pytest.raises(InputError, match=message):
            duties.record(cast.platform, cast.operator, kind, **args)
    with pytest.raises(NotFound):
        duties.record(cast.platform, cast.rival, "drill", held_on=YESTERDAY, topic="t",
                      attendees=2, agreement_id=1)  # fmt: skip
    with pytest.raises(PermissionDenied):
        duties.record(cast.platform, cast.city, "drill", held_on=YESTERDAY, topic="t", attendees=2)
    assert duties.records_of(cast.platform, cast.auditor) == []
    assert duties.records_of(cast.platform, cast.county, "operator") == []  # in its reach now


def test_the_command_line_records_and_lists(cast):
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]
    args = ["security", "record", "--kind", "training", "--held-on", YESTERDAY, "--topic",
            "privacy law", "--attendees", "9", "--name", "Wang Fang"]  # fmt: skip
    done = runner.invoke(main, [*home, *args, "--as", cast.tokens["operator"], "--json"])
    assert done.exit_code == 0, done.output
    listed = runner.invoke(
        main, [*home, "security", "list", "--as", cast.tokens["auditor"], "--json"]
    )
    assert [r["topic"] for r in json.loads(listed.output)] == ["privacy law"]


def test_an_authority_out_of_reach_cannot_tell_who_keeps_records(cast):
    # A county authority naming operators outside its reach must not learn which of them
    # keep training or drill records: the refusal is the same with records and without.
    granted(cast)  # the operator's agreement is the city's
    duties.record(cast.platform, cast.operator, "drill", held_on=YESTERDAY, topic="t",
                  attendees=3)  # fmt: skip
    answers = []
    for name in ("operator", "rival"):  # with one record; with none
        with pytest.raises(PermissionDenied) as info:
            duties.records_of(cast.platform, cast.county, name)
        answers.append((info.value.code, str(info.value).replace(name, "?")))
    assert answers[0] == answers[1] and answers[0][0] == "outside_jurisdiction", answers
