"""policies.access.decide: every rule, its article, and the boundaries of a grant's term.

The term is half open: a grant is usable from ``valid_from`` (inclusive) to
``valid_until`` (exclusive), so at exactly ``valid_until`` it has expired.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policies.access import JOB_KINDS, Grant, GrantStatus, decide
from policies.errors import PolicyRefusal

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
OPERATOR = 7


def grant(**changes) -> Grant:
    base = Grant(
        id=1,
        operator_id=OPERATOR,
        dataset="pums",
        valid_from=NOW - timedelta(days=30),
        valid_until=NOW + timedelta(days=30),
    )
    return replace(base, **changes)


def refusal(grants, datasets=("pums",), kind="sql_aggregate", now=NOW) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        decide(grants, OPERATOR, list(datasets), kind, now)
    return caught.value


def test_an_active_grant_in_term_covers_its_dataset():
    g = grant()
    assert decide([g], OPERATOR, ["pums"], "sql_aggregate", NOW) == {"pums": g}


def test_no_datasets_needs_no_grant():
    assert decide([], OPERATOR, [], "sql_aggregate", NOW) == {}


def test_no_grant_at_all_is_not_granted():
    r = refusal([])
    assert (r.rule, r.article, r.subject) == ("not_granted", "Art. 14", "pums")
    assert r.hint


def test_a_grant_of_another_operator_does_not_count():
    r = refusal([grant(operator_id=OPERATOR + 1)])
    assert r.rule == "not_granted"


def test_a_grant_for_another_dataset_does_not_count():
    r = refusal([grant(dataset="charities")])
    assert (r.rule, r.subject) == ("not_granted", "pums")


def test_every_dataset_needs_its_own_grant_and_the_first_missing_is_named():
    g = grant()
    r = refusal([g], datasets=("pums", "charities", "persons"))
    assert (r.rule, r.subject) == ("not_granted", "charities")
    both = decide(
        [g, grant(id=2, dataset="charities")], OPERATOR, ["pums", "charities"], "sql_aggregate", NOW
    )
    assert {name: g.id for name, g in both.items()} == {"pums": 1, "charities": 2}


def test_valid_from_is_inclusive():
    g = grant(valid_from=NOW)
    assert decide([g], OPERATOR, ["pums"], "sql_aggregate", NOW) == {"pums": g}


def test_one_tick_before_valid_from_is_not_started():
    r = refusal([grant(valid_from=NOW + TICK)])
    assert (r.rule, r.article, r.subject) == ("grant_not_started", "Art. 13", "pums")


def test_valid_until_exactly_now_has_expired():
    r = refusal([grant(valid_until=NOW)])
    assert (r.rule, r.article, r.subject) == ("grant_expired", "Art. 13", "pums")
    assert "new or extended agreement" in r.hint


def test_one_tick_before_valid_until_is_still_usable():
    g = grant(valid_until=NOW + TICK)
    assert decide([g], OPERATOR, ["pums"], "sql_aggregate", NOW) == {"pums": g}


def test_suspended_grant_is_refused_under_art_24():
    r = refusal([grant(status=GrantStatus.SUSPENDED)])
    assert (r.rule, r.article, r.subject) == ("grant_suspended", "Art. 24", "pums")


def test_revoked_grant_is_refused_under_art_24():
    r = refusal([grant(status=GrantStatus.REVOKED)])
    assert (r.rule, r.article, r.subject) == ("grant_revoked", "Art. 24", "pums")


@pytest.mark.parametrize("kind", [k for k in JOB_KINDS if k != "sql_aggregate"])
def test_a_job_kind_outside_the_grant_is_refused(kind):
    r = refusal([grant()], kind=kind)
    assert (r.rule, r.article, r.subject) == ("job_kind_not_granted", "Art. 13", "pums")
    assert "sql_aggregate" in r.hint


def test_a_grant_for_several_kinds_covers_each():
    g = grant(job_kinds=frozenset({"sql_aggregate", "psi_match"}))
    assert decide([g], OPERATOR, ["pums"], "psi_match", NOW) == {"pums": g}


def test_suspension_is_named_before_the_term():
    r = refusal([grant(status=GrantStatus.SUSPENDED, valid_until=NOW - TICK)])
    assert r.rule == "grant_suspended"


def test_the_kind_is_named_before_the_term():
    r = refusal([grant(valid_until=NOW)], kind="psi_match")
    assert r.rule == "job_kind_not_granted"


def test_a_usable_grant_wins_over_an_expired_or_suspended_one():
    expired = grant(id=1, valid_until=NOW - timedelta(days=1))
    suspended = grant(id=2, status=GrantStatus.SUSPENDED, valid_until=NOW + timedelta(days=90))
    usable = grant(id=3)
    assert decide([expired, suspended, usable], OPERATOR, ["pums"], "sql_aggregate", NOW) == {
        "pums": usable
    }


def test_of_several_usable_grants_the_longest_running_is_chosen():
    short = grant(id=1, valid_until=NOW + timedelta(days=1))
    long = grant(id=2, valid_until=NOW + timedelta(days=300))
    assert decide([long, short], OPERATOR, ["pums"], "sql_aggregate", NOW)["pums"].id == 2


def test_without_a_usable_grant_the_latest_one_explains_the_refusal():
    old_suspended = grant(id=1, status=GrantStatus.SUSPENDED, valid_until=NOW - timedelta(days=9))
    later_expired = grant(id=2, valid_until=NOW - timedelta(days=1))
    assert refusal([old_suspended, later_expired]).rule == "grant_expired"


def test_an_expired_grant_says_when_it_ended():
    r = refusal([grant(valid_until=NOW)])
    assert NOW.isoformat() in r.message
