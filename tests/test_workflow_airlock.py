"""The airlock: two appointed, independent checkers decide a withheld output.

Withheld jobs come from the real JobService (every cell of the query is too
small, so the output check holds it back).
"""

from __future__ import annotations

import pytest

from policies.errors import Conflict, InputError, PermissionDenied
from policies.workflow import AirlockState, Vote, airlock_verdict
from sandbox.core.principals import Role
from sandbox.core.store import jobs
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from sandbox.workflow import airlock
from tests.workflow_helpers import (
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
)

HELD = "SELECT educ, COUNT(*) AS n FROM pums WHERE age > 85 GROUP BY educ"


@pytest.fixture
def held(cast):
    agreement_id, _ = granted(cast)
    service = JobService(cast.platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": HELD})
    finally:
        service.close()
    assert outcome.state is JobState.WITHHELD
    return agreement_id, outcome.job_id


def test_verdict_rule():
    assert airlock_verdict([Vote.APPROVE]) is AirlockState.PENDING
    assert airlock_verdict([Vote.APPROVE, Vote.APPROVE]) is AirlockState.APPROVED
    assert airlock_verdict([Vote.APPROVE, Vote.RETURN]) is AirlockState.RETURNED
    assert airlock_verdict([Vote.RETURN, Vote.REJECT]) is AirlockState.REJECTED


def test_checkers_are_two_and_never_of_the_authors_organisation(cast, held):
    agreement_id, _job = held
    with pytest.raises(InputError):
        airlock.appoint_checkers(cast.platform, cast.city, ["r1"], agreement_id=agreement_id)
    with pytest.raises(PermissionDenied) as caught:
        airlock.appoint_checkers(
            cast.platform, cast.city, ["r1", "r3_same_org"], agreement_id=agreement_id
        )
    assert caught.value.code == "own_organisation"
    with pytest.raises(PermissionDenied):
        airlock.appoint_checkers(
            cast.platform, cast.city, ["r1", "consumer"], agreement_id=agreement_id
        )
    with pytest.raises(PermissionDenied):
        airlock.appoint_checkers(
            cast.platform, cast.other_county, ["r1", "r2"], agreement_id=agreement_id
        )


def test_the_author_and_unappointed_principals_never_vote(cast, held, make_principal):
    agreement_id, job_id = held
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    with pytest.raises(PermissionDenied):
        airlock.vote(cast.platform, cast.operator, job_id, Vote.APPROVE, "mine is fine")
    colleague, _ = make_principal("colleague", Role.REVIEWER, org="OpCo")
    with pytest.raises(PermissionDenied) as caught:
        airlock.vote(cast.platform, colleague, job_id, Vote.APPROVE, "fine")
    assert caught.value.code == "own_organisation"
    with pytest.raises(PermissionDenied) as caught:
        airlock.vote(cast.platform, cast.county, job_id, Vote.APPROVE, "fine")
    assert caught.value.code == "not_appointed"


def test_votes_are_blind_until_both_are_in(cast, held):
    agreement_id, job_id = held
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    first = airlock.vote(cast.platform, cast.r1, job_id, Vote.RETURN, "round the counts")
    assert first["status"] == "pending" and first["votes_in"] == 1
    seen_by_r2 = airlock.show(cast.platform, cast.r2, job_id)
    assert seen_by_r2["votes"] == [] and seen_by_r2["votes_in"] == 1
    assert airlock.show(cast.platform, cast.city, job_id)["votes"] == []
    cast_entry = [e for e in entries(cast.platform, "output_vote:1")][0]
    assert "return" not in str(cast_entry["details"]) and "seal" in cast_entry["details"]
    with pytest.raises(Conflict):
        airlock.vote(cast.platform, cast.r1, job_id, Vote.APPROVE, "changed my mind")
    final = airlock.vote(cast.platform, cast.r2, job_id, Vote.APPROVE, "looks safe")
    assert final["status"] == "returned"
    assert {v["checker"]: v["vote"] for v in final["votes"]} == {"r1": "return", "r2": "approve"}
    with pytest.raises(Conflict):
        airlock.vote(cast.platform, cast.r2, job_id, Vote.APPROVE, "again")
    [verdict] = [
        e for e in entries(cast.platform, "output_review:1") if e["details"]["to"] == "returned"
    ]
    assert len(verdict["details"]["votes"]) == 2 and verdict["article"] == "Art. 15"


def test_a_reason_is_required(cast, held):
    agreement_id, job_id = held
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    with pytest.raises(InputError):
        airlock.vote(cast.platform, cast.r1, job_id, Vote.REJECT, " ")


def test_a_released_job_is_not_reviewed(cast):
    granted(cast)
    service = JobService(cast.platform, spare=False)
    try:
        job = service.submit(
            cast.operator, {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
        ).job_id
    finally:
        service.close()
    with pytest.raises(Conflict):
        airlock.open_review(cast.platform, cast.city, job)


def test_two_approvals_release_the_held_output(cast, held):
    agreement_id, job_id = held
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    airlock.vote(cast.platform, cast.r1, job_id, Vote.APPROVE, "safe")
    final = airlock.vote(cast.platform, cast.r2, job_id, Vote.APPROVE, "safe")
    assert final["status"] == "approved" and final["product"]
    assert (cast.platform.home / "products" / final["product"]).is_dir()
    with cast.platform.store.read() as conn:
        job = conn.execute(jobs.select().where(jobs.c.id == job_id)).first()
    assert (job.status, job.product_id) == ("released", final["product"])


def test_an_agreement_asking_for_review_withholds_even_a_safe_output(cast):
    granted(cast, review_required=True)
    service = JobService(cast.platform, spare=False)
    try:
        outcome = service.submit(
            cast.operator, {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
        )
    finally:
        service.close()
    assert outcome.state is JobState.WITHHELD and outcome.product_id is None


def test_the_checkers_read_the_held_output_and_the_author_does_not(cast, held):
    """What a checker votes on (issue 21): every cell with its flags and reasons, the SQL,
    the datasets and versions; never the author or its organisation; the operator, a
    rival and an authority of another county are refused."""
    import json

    from policies.errors import NotFound
    from sandbox.workflow import held as held_outputs

    agreement_id, job_id = held
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    out = held_outputs.held_output(cast.platform, cast.r1, job_id)
    assert out["rows"] and out["columns"] == ["educ", "n"]
    flagged = [cell for row in out["rows"] for cell in row if cell["rules"]]
    assert flagged and all(cell["reason"] and cell["verdict"] != "pass" for cell in flagged)
    assert out["sql"].startswith("SELECT") and out["datasets"][0]["name"] == "pums"
    assert out["datasets"][0]["version"] == 1 and out["review"]["votes"] == []
    text = json.dumps(out, default=str)
    assert "OpCo" not in text and '"operator"' not in text
    for outsider in (cast.operator, cast.rival):
        with pytest.raises(NotFound):
            held_outputs.held_output(cast.platform, outsider, job_id)
    with pytest.raises(PermissionDenied):
        held_outputs.held_output(cast.platform, cast.other_county, job_id)
    waiting = held_outputs.held_outputs(cast.platform, cast.r1)
    assert [(i["job"], i["appointed"], i["voted"]) for i in waiting] == [(job_id, True, False)]
    assert held_outputs.held_outputs(cast.platform, cast.r3_same_org) == []
    with pytest.raises(PermissionDenied):
        held_outputs.held_outputs(cast.platform, cast.operator)


def test_a_checker_sees_the_authors_earlier_releases_on_the_same_data(cast):
    """What left before, so a checker may spot a difference: the author's released jobs on
    the same datasets, with the SQL as it ran; never the author's name."""
    from sandbox.workflow import held as held_outputs

    agreement_id, _ = granted(cast)
    service = JobService(cast.platform, spare=False)
    try:
        before = service.submit(
            cast.operator, {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
        )
        assert before.state is JobState.RELEASED
        job_id = service.submit(cast.operator, {"sql": HELD}).job_id
    finally:
        service.close()
    airlock.appoint_checkers(cast.platform, cast.city, ["r1", "r2"], agreement_id=agreement_id)
    out = held_outputs.held_output(cast.platform, cast.r1, job_id)
    assert [(e["job"], e["product"]) for e in out["earlier"]] == [
        (before.job_id, before.product_id)
    ]
    assert '"pums"."sex"' in out["earlier"][0]["sql"] and "operator" not in str(out["earlier"])
