"""The pure part of verification: definitions, rule admission, the index plan, the defence."""

from __future__ import annotations

import pytest

from policies.admission import QueryScope, TableScope
from policies.errors import InputError, PolicyRefusal
from policies.verification import (
    Consent,
    Definition,
    ProductState,
    Signals,
    Standing,
    Thresholds,
    ValueCounts,
    ValueLimits,
    admit_rule,
    assess,
    index_plan,
    judge,
    lookup_patterns,
    may_move,
)
from sandbox.demo.data import DEMO_TABLES

SCOPE = QueryScope(
    tables={
        n: TableScope(n, DEMO_TABLES[n].classification())
        for n in ("persons", "enterprises", "social_insurance")
    }
)
BASE = {
    "name": "identity",
    "dataset": "persons",
    "keys": ["pid", "name"],
    "codes": ["match", "mismatch", "not_found"],
    "rule": "SELECT CASE WHEN COUNT(*) = 0 THEN 'not_found' "
    "WHEN SUM(CASE WHEN name = $name THEN 1 ELSE 0 END) > 0 THEN 'match' "
    "ELSE 'mismatch' END FROM persons WHERE pid = $pid",
}


def _admit(rule: str, **changes):
    return admit_rule(Definition.from_dict({**BASE, **changes, "rule": rule}), SCOPE)


def test_the_identity_rule_is_admitted_with_one_subject_and_one_check_key():
    rule = _admit(BASE["rule"])
    assert [k.name for k in rule.subject_keys] == ["pid"]
    assert [k.name for k in rule.check_keys] == ["name"]
    assert rule.person_level and rule.columns == {"persons": frozenset({"pid", "name"})}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # identifiers compared with literals: the jobs' own rule
        (
            "SELECT CASE WHEN SUM(CASE WHEN name = '王伟' THEN 1 ELSE 0 END) > 0 THEN 'match' "
            "ELSE 'mismatch' END FROM persons WHERE pid = $pid AND name = $name",
            "identifier_literal",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN name ELSE 'match' END FROM persons "
            "WHERE pid = $pid AND name = $name",
            "rule_output",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN 'rich' ELSE 'match' END FROM persons "
            "WHERE pid = $pid AND name = $name",
            "undeclared_code",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN 'match' END FROM persons "
            "WHERE pid = $pid AND name = $name",
            "rule_output",
        ),
        ("SELECT COUNT(*) FROM persons WHERE pid = $pid AND name = $name", "rule_output"),
        (
            "SELECT CASE WHEN SUM(income) > 1 THEN 'match' ELSE 'mismatch' END FROM persons "
            "WHERE pid <> $pid AND name = $name",
            "parameter_position",
        ),
        (
            "SELECT CASE WHEN SUM(CASE WHEN name = $name THEN 1 ELSE 0 END) > 0 THEN 'match' "
            "ELSE 'mismatch' END FROM persons",
            "parameter",
        ),
        (
            "SELECT CASE WHEN SUM(CASE WHEN name = $name THEN 1 ELSE 0 END) > 0 THEN 'match' "
            "ELSE 'mismatch' END FROM persons WHERE county = '370811' AND $pid = $pid",
            "parameter_position",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN 'match' ELSE 'mismatch' END FROM persons "
            "WHERE pid = $pid AND name = $name GROUP BY county",
            "rule_shape",
        ),
        (
            "SELECT CASE WHEN income > 0 THEN 'match' ELSE 'mismatch' END FROM persons "
            "WHERE pid = $pid AND name = $name",
            "row_level",
        ),
        (
            "SELECT CASE WHEN string_agg(name, ',') = 'x' THEN 'match' ELSE 'mismatch' END "
            "FROM persons WHERE pid = $pid AND name = $name",
            "member_aggregate",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN 'match' ELSE 'mismatch' END FROM persons "
            "WHERE pid = $pid AND name = $name AND household_id = 'H1'",
            "identifier_literal",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN 'match' ELSE 'mismatch' END FROM persons "
            "WHERE pid = $pid AND name = $name AND income > 5000",
            "measure_outside_aggregate",
        ),
        (
            "SELECT CASE WHEN COUNT(*) > 0 THEN 'match' ELSE 'mismatch' END FROM "
            "read_csv('/etc/passwd') WHERE pid = $pid AND name = $name",
            "rule_shape",
        ),
        ("DELETE FROM persons WHERE pid = $pid", "statement"),
    ],
)
def test_rules_that_could_leak_are_refused(rule, expected):
    with pytest.raises(PolicyRefusal) as info:
        _admit(rule)
    assert info.value.rule == expected, info.value
    assert "王伟" not in str(info.value) and "H1" not in str(info.value)


def test_key_columns_must_be_identifiers():
    rule = (
        "SELECT CASE WHEN COUNT(*) > 0 THEN 'match' ELSE 'mismatch' END FROM persons "
        "WHERE county = $county"
    )
    with pytest.raises(PolicyRefusal) as info:
        _admit(rule, keys=["county"])
    assert info.value.rule == "key_column"


def test_definition_shape_is_checked():
    for bad in (
        {**BASE, "codes": ["match"]},
        {**BASE, "codes": ["Match Now", "x"]},
        {**BASE, "name": "Bad Name"},
        {**BASE, "extra": 1},
        {**BASE, "miss_codes": ["nope"]},
    ):
        with pytest.raises(InputError):
            Definition.from_dict(bad)
    assert Definition.from_dict(BASE).miss_codes == ("mismatch", "not_found")


def test_the_plan_has_a_default_and_lookup_patterns_try_most_values_first():
    plan = index_plan(_admit(BASE["rule"]), "\x1dx")
    assert "WHERE FALSE" in plan.default and "__cand" in plan.patterns
    assert lookup_patterns(2) == [(True, True), (True, False), (False, True), (False, False)]


def test_consent_needs_every_field():
    with pytest.raises(PolicyRefusal) as info:
        Consent.from_dict(None)
    assert info.value.article == "Art. 19"
    with pytest.raises(PolicyRefusal):
        Consent.from_dict({"reference": "r", "who": "subject", "purpose": " ", "given_at": "2025"})


def test_the_defence_throttles_then_blocks():
    limits = Thresholds(guess_ids_throttle=3, guess_ids_block=5, miss_min_calls=10)
    assert assess(Signals(2, 5, 2), limits)[0] is Standing.OK
    assert assess(Signals(3, 5, 3), limits)[0] is Standing.THROTTLED
    assert assess(Signals(5, 5, 5), limits)[0] is Standing.BLOCKED
    assert assess(Signals(0, 9, 9), limits)[0] is Standing.OK  # too few calls to judge a share
    assert assess(Signals(0, 10, 7), limits)[0] is Standing.THROTTLED
    assert assess(Signals(0, 10, 9), limits)[0] is Standing.BLOCKED


def test_product_states():
    assert may_move(ProductState.DEFINED, ProductState.PUBLISHED)
    assert may_move(ProductState.WITHDRAWN, ProductState.PUBLISHED)
    assert not may_move(ProductState.REJECTED, ProductState.PUBLISHED)
    assert not may_move(ProductState.DEFINED, ProductState.WITHDRAWN)


def test_a_definition_must_count_its_misses():
    Definition.from_dict(BASE).require_misses("not_found")
    for miss in ([], ["not_found"], ["mismatch"]):
        with pytest.raises(PolicyRefusal) as info:
            Definition.from_dict({**BASE, "miss_codes": miss}).require_misses()
        assert info.value.rule == "miss_codes"
    renamed = Definition.from_dict(
        {**BASE, "codes": ["match", "mismatch", "absent"], "miss_codes": ["mismatch"]}
    )
    renamed.require_misses()  # 'absent' is not a known miss word ...
    with pytest.raises(PolicyRefusal, match="absent"):
        renamed.require_misses("absent")  # ... but it is the unknown subject's code


def test_value_limits_depend_on_counts_only():
    limits = ValueLimits(per_hour=3, per_day=5, subject_lifetime=7)
    assert judge("name", ValueCounts(2, 4), limits) is None
    assert judge("name", ValueCounts(3, 3), limits)[0] == "value_hourly_limit"
    assert judge("name", ValueCounts(0, 5), limits)[0] == "value_daily_limit"
    assert judge("pid", ValueCounts(0, 0, 7), limits)[0] == "subject_lifetime_limit"
    assert judge("name", ValueCounts(0, 0, None), limits) is None  # not a subject key
    rule, message = judge("pid", ValueCounts(3, 3), limits) or ("", "")
    assert "'pid'" in message and "verify.value_per_hour" in message and "Art. 19" in message
