"""Many accounts, one subject (issue 18, item 4): attempts counted per value of each
input field across all consumers, in rolling windows kept in the store, a lifetime cap
per subject, misses counted whatever a definition says, and the authority alerted when
several accounts try one value. Everything goes through the real service path."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import select, update
from verify_helpers import CONSENT, IDENTITY, SOCIAL_INSURANCE, World, make_world

from connectors.validity import resident_id_check_char
from policies.errors import PolicyRefusal, RateLimited
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import Role
from sandbox.verification import products as verify_products
from sandbox.verification import service as verification
from sandbox.verification.tables import (
    verify_products as products_table,
)
from sandbox.verification.tables import (
    verify_value_accounts,
    verify_value_alerts,
    verify_value_counts,
)
from sandbox.workflow.supervision import notifications_of


@pytest.fixture
def world(platform, make_principal, tmp_path) -> World:
    w = make_world(platform, make_principal, tmp_path / "data")
    verify_products.define(platform, w.operator, IDENTITY)
    verify_products.define(platform, w.operator, SOCIAL_INSURANCE)
    verify_products.approve(platform, w.city, "identity")
    verify_products.approve(platform, w.city, "si_paid_6_of_12")
    return w


def reopen(platform: Platform, toml: str | None = None) -> Platform:
    """A new Platform object on the same home (a restart), with these settings."""
    if toml is not None:
        (platform.home / "sandbox.toml").write_text(toml, encoding="utf-8")
    return Platform.open(platform.home)


def close(plat: Platform) -> None:
    verification.service_for(plat).close()
    plat.close()


def _person(world: World, i: int) -> tuple[str, str]:
    persons = world.tables["persons"].to_pydict()
    return persons["pid"][i], persons["name"][i]


def _candidates(true_pid: str, n: int, rng: random.Random) -> list[str]:
    """n valid ID numbers sharing the true one's region and birth date, the true one among
    them: what an attacker who knows a name, a county and a birthday would try."""
    out = {true_pid}
    while len(out) < n:
        first = true_pid[:14] + f"{rng.randint(0, 999):03d}"
        out.add(first + resident_id_check_char(first))
    return sorted(out)


def _ask(plat, consumer, pid: str, name: str, reference: str):
    consent = dict(CONSENT, reference=reference)
    keys = {"pid": pid, "name": name}
    return verification.call(plat, consumer, "identity", [{"keys": keys}], consent).results[0]


def test_89_accounts_with_4_guesses_each_cannot_find_one_id_among_354(world, make_principal):
    rng = random.Random(18)
    true_pid, name = _person(world, 5)
    order = _candidates(true_pid, 354, rng)
    order.remove(true_pid)
    rng.shuffle(order)
    order.insert(rng.randrange(60, 354), true_pid)  # far past the hourly cap
    accounts = [make_principal(f"mule{k:02d}", Role.CONSUMER)[0] for k in range(89)]
    answered, refused, found = 0, [], False
    for k, account in enumerate(accounts):
        for j in range(4):
            attempt = 4 * k + j
            if attempt >= len(order):
                break
            pid = order[attempt]
            try:
                result = _ask(world.platform, account, pid, name, f"MULE-{k}-{j}")
            except (PolicyRefusal, RateLimited) as error:  # a per-account line: not this one
                pytest.fail(f"a per-consumer limit fired, not the defence under test: {error}")
            if result.code is None:
                refused.append((pid == true_pid, result.refused, result.message))
                continue
            answered += 1
            found = found or (pid == true_pid and result.code == "match")
    assert not found
    limit = world.platform.settings.verify.value_per_hour
    assert answered == limit  # the name was answered 20 times in the hour, then no more
    assert len(refused) == 354 - limit
    # the refusal names the rule, the setting and the article, and says the same for the
    # true ID number as for an invented one: it does not tell whether the subject exists
    assert {(rule, message) for _, rule, message in refused} == {(refused[0][1], refused[0][2])}
    assert refused[0][1] == "value_hourly_limit"
    assert "verify.value_per_hour" in refused[0][2] and "Art. 19" in refused[0][2]
    assert any(is_true for is_true, _, _ in refused)
    with world.platform.store.read() as conn:
        alerts = ledger.query(conn, action="verify.alert")
    mine = [a for a in alerts if a["details"].get("kind") == "value_tried_by_accounts"]
    assert [a["details"]["field"] for a in mine] == ["name"]  # once a day per value
    assert mine[0]["details"]["consumers"] == ["mule00", "mule01", "mule02"]


@pytest.mark.parametrize(
    ("setting", "rule"),
    [
        ("value_per_hour", "value_hourly_limit"),
        ("value_per_day", "value_daily_limit"),
        ("subject_lifetime", "subject_lifetime_limit"),
    ],
)
def test_counts_survive_a_restart(world, make_principal, setting, rule):
    pid, name = _person(world, 9)
    first = reopen(world.platform, f"[verify]\n{setting} = 3\n")
    accounts = [world.consumer, world.consumer2, make_principal("bank3", Role.CONSUMER)[0]]
    try:
        for k, account in enumerate(accounts):
            assert _ask(first, account, pid, name, f"REF-{k}").code == "match"
    finally:
        close(first)
    second = reopen(world.platform)  # same home, same settings: a new process would see this
    try:
        result = _ask(second, world.consumer, pid, name, "REF-3")
        assert (result.code, result.refused) == (None, rule)
        assert f"verify.{setting}" in (result.message or "")
    finally:
        close(second)


def test_the_lifetime_cap_outlasts_the_windows(world, make_principal):
    pid, name = _person(world, 11)
    plat = reopen(world.platform, "[verify]\nsubject_lifetime = 2\n")
    try:
        for k, account in enumerate([world.consumer, world.consumer2]):
            assert _ask(plat, account, pid, name, f"L-{k}").code == "match"
        with plat.store.transaction() as conn:  # two days later: the windows are empty
            c = verify_value_counts.c
            conn.execute(verify_value_counts.delete().where(c.span != "life"))
        assert _ask(plat, world.consumer, pid, name, "L-2").refused == "subject_lifetime_limit"
        other, other_name = _person(world, 12)  # another subject is not affected
        assert _ask(plat, world.consumer, other, other_name, "L-3").code == "match"
    finally:
        close(plat)


def test_one_batch_counts_its_own_items_and_counters_hold_no_value(world):
    plat = reopen(world.platform, "[verify]\nvalue_per_hour = 5\n")
    try:
        # eight subjects under one consent reference: the reference is a value like the keys
        people = [_person(world, i) for i in range(40, 48)]
        items = [{"keys": {"pid": pid, "name": name}} for pid, name in people]
        result = verification.call(plat, world.consumer, "identity", items, CONSENT)
        assert [r.refused for r in result.results] == [None] * 5 + ["value_hourly_limit"] * 3
        assert "'consent.reference'" in (result.results[-1].message or "")
        with plat.store.read() as conn:
            rows = [
                tuple(r)
                for table in (verify_value_counts, verify_value_accounts, verify_value_alerts)
                for r in conn.execute(select(table)).all()
            ]
        text = json.dumps(rows, ensure_ascii=False)
        assert rows and CONSENT["reference"] not in text
        assert not any(pid in text or name in text for pid, name in people)
    finally:
        close(plat)


def test_a_definition_cannot_turn_the_counting_of_misses_off(world):
    for miss_codes in ([], ["not_found"]):
        bad = dict(IDENTITY, name="identity_quiet", miss_codes=miss_codes)
        with pytest.raises(PolicyRefusal) as info:
            verify_products.define(world.platform, world.operator, bad)
        assert info.value.rule == "miss_codes" and info.value.article == "Art. 15"
    # the code of an unknown subject is a miss, whatever it is called: refused at approval
    renamed = dict(
        IDENTITY,
        name="identity_absent",
        codes=["match", "mismatch", "absent"],
        miss_codes=["mismatch"],
        rule=IDENTITY["rule"].replace("'not_found'", "'absent'"),
    )
    verify_products.define(world.platform, world.operator, renamed)
    with pytest.raises(PolicyRefusal, match="absent") as info:
        verify_products.approve(world.platform, world.city, "identity_absent")
    assert info.value.rule == "miss_codes"


def test_a_stored_definition_without_miss_codes_still_counts_misses(world):
    """A product filed before the rule (miss_codes: []) cannot let guesses go uncounted:
    an unknown subject or a value its rows do not hold is a miss whatever the codes."""
    with world.platform.store.transaction() as conn:
        row = conn.execute(
            select(products_table.c.definition_json).where(products_table.c.name == "identity")
        ).scalar_one()
        quiet = dict(json.loads(row), miss_codes=[])
        conn.execute(
            update(products_table)
            .where(products_table.c.name == "identity")
            .values(definition_json=json.dumps(quiet))
        )
    true_pid, name = _person(world, 3)
    tried = [p for p in _candidates(true_pid, 40, random.Random(3)) if p != true_pid]
    outcome = "not blocked"
    for k, pid in enumerate(tried):
        try:
            _ask(world.platform, world.consumer, pid, name, f"Q-{k}")
        except RateLimited:
            continue
        except PolicyRefusal as refusal:
            outcome = refusal.rule
            break
    assert outcome == "enumeration_blocked"
    assert k + 1 == world.platform.settings.verify.guess_ids_block


def test_the_authority_is_alerted_when_several_accounts_try_one_subject(world, make_principal):
    pid, name = _person(world, 20)
    wrong = [_person(world, i)[1] for i in range(30, 40) if _person(world, i)[1] != name]
    accounts = [world.consumer, world.consumer2] + [
        make_principal(f"lender{k}", Role.CONSUMER)[0] for k in range(2)
    ]

    def alerts() -> list[dict]:
        with world.platform.store.read() as conn:
            found = ledger.query(conn, action="verify.alert")
        return [a for a in found if a["details"].get("kind") == "value_tried_by_accounts"]

    for k, account in enumerate(accounts[:2]):
        assert _ask(world.platform, account, pid, wrong[k], f"A-{k}").code == "mismatch"
    assert alerts() == []  # two accounts: below verify.alert_accounts (3)
    for k, account in enumerate(accounts[2:], start=2):
        _ask(world.platform, account, pid, wrong[k], f"A-{k}")
    found = alerts()
    assert len(found) == 1  # one alert per value per day, not one per account
    details = found[0]["details"]
    assert (details["field"], details["accounts"]) == ("pid", 3)
    assert details["consumers"] == ["consumer", "consumer2", "lender0"]
    assert pid not in json.dumps(found, ensure_ascii=False)
    notes = notifications_of(world.platform, world.city)
    assert [n["body"].get("field") for n in notes if n["kind"] == "verification_alert"] == ["pid"]
