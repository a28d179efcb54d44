"""Verification products in-process: correctness against the snapshot, consent, the
agreement gate, limits, the enumeration defence, batches, audit, group commit."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from verify_helpers import (
    CONSENT,
    IDENTITY,
    SOCIAL_INSURANCE,
    World,
    direct_identity,
    direct_social_insurance,
    make_world,
    sign_agreement,
)

from connectors.validity import resident_id_check_char
from policies.errors import InputError, NotFound, PermissionDenied, PolicyRefusal, RateLimited
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.demo.data import DEMO_TABLES
from sandbox.registry.tables import verification_feedback
from sandbox.verification import audit as verify_audit
from sandbox.verification import products as verify_products
from sandbox.verification import service as verification
from sandbox.workflow import agreements, consumers, feedback, supervision, usage
from sandbox.workflow.catalogue import catalogue
from sandbox.workflow.supervision import notifications_of

RELAXED = """
[verify]
consumer_per_minute = 100000
consumer_per_day = 1000000
subject_per_day = 1000
miss_min_calls = 100000
guess_ids_throttle = 100000
guess_ids_block = 100000
value_per_hour = 100000
value_per_day = 100000
subject_lifetime = 100000
"""


def reopen(platform: Platform, toml: str) -> Platform:
    """The platform again with ``toml``'s settings added to its home's (its store kept)."""
    path = platform.home / "sandbox.toml"
    kept = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(kept + "\n" + toml, encoding="utf-8")
    return Platform.open(platform.home)


@pytest.fixture
def world(platform, make_principal, tmp_path) -> World:
    w = make_world(platform, make_principal, tmp_path / "data")
    verify_products.define(platform, w.operator, IDENTITY)
    verify_products.define(platform, w.operator, SOCIAL_INSURANCE)
    verify_products.approve(platform, w.city, "identity")
    verify_products.approve(platform, w.city, "si_paid_6_of_12")
    return w


@pytest.fixture
def relaxed(world) -> Platform:
    plat = reopen(world.platform, RELAXED)
    yield plat
    verification.service_for(plat).close()
    plat.close()


def _persons(world: World) -> dict:
    return world.tables["persons"].to_pydict()


def _absent_pid(rng: random.Random, known: set[str]) -> str:
    while True:
        first = "370811" + f"{rng.randint(1950, 2005)}0101" + f"{rng.randint(0, 999):03d}"
        pid = first + resident_id_check_char(first)
        if pid not in known:
            return pid


def test_answers_equal_a_direct_computation_over_the_snapshot(world, relaxed):
    rng = random.Random(5)
    persons = _persons(world)
    known = set(persons["pid"])
    items, expected = [], []
    for _ in range(60):
        i = rng.randrange(len(persons["pid"]))
        kind = rng.choice(["present", "mismatched", "absent"])
        pid = persons["pid"][i]
        name = persons["name"][i]
        if kind == "mismatched":
            name = persons["name"][rng.randrange(len(persons["name"]))]
        if kind == "absent":
            pid = _absent_pid(rng, known)
        items.append({"keys": {"pid": pid, "name": name}})
        expected.append(direct_identity(world.tables, pid, name))
    assert {"match", "not_found"} <= set(expected)
    result = verification.call(relaxed, world.consumer, "identity", items, CONSENT)
    assert [r.code for r in result.results] == expected
    assert result.versions == {"persons": 1}

    codes = world.tables["enterprises"].column("credit_code").to_pylist()
    codes = rng.sample(codes, 20) + ["91370800MA3C0000X1"]
    result = verification.call(
        relaxed, world.consumer, "si_paid_6_of_12", [{"keys": {"credit_code": c}} for c in codes]
    )
    wanted = [direct_social_insurance(world.tables, c) for c in codes]
    assert [r.code for r in result.results] == wanted
    assert "not_found" in wanted and "yes" in wanted


def test_keys_are_normalised_the_same_way_at_definition_and_call(world, relaxed):
    persons = _persons(world)
    pid = next(p for p in persons["pid"] if p.endswith("X"))
    name = persons["name"][persons["pid"].index(pid)]
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in pid[:6]) + pid[6:-1] + "x"
    result = verification.call(
        relaxed,
        world.consumer,
        "identity",
        [{"keys": {"pid": f"  {full_width}\u3000", "name": name}}],
        CONSENT,
    )
    assert result.code == "match"


def test_person_level_calls_need_consent_and_enterprise_calls_do_not(world):
    persons = _persons(world)
    keys = {"pid": persons["pid"][0], "name": persons["name"][0]}
    with pytest.raises(PolicyRefusal) as info:
        verification.call(world.platform, world.consumer, "identity", [{"keys": keys}])
    assert info.value.rule == "consent_required" and info.value.article == "Art. 19"
    partial = dict(CONSENT, purpose="")
    with pytest.raises(PolicyRefusal, match="purpose"):
        verification.call(world.platform, world.consumer, "identity", [{"keys": keys}], partial)
    leaky = dict(CONSENT, who=persons["name"][0])
    with pytest.raises(InputError, match="must not repeat"):
        verification.call(world.platform, world.consumer, "identity", [{"keys": keys}], leaky)
    code = world.tables["enterprises"].column("credit_code")[0].as_py()
    result = verification.call(
        world.platform, world.consumer, "si_paid_6_of_12", [{"keys": {"credit_code": code}}]
    )
    assert result.code in {"yes", "no"}


def test_a_suspended_agreement_withdraws_the_product(world):
    persons = _persons(world)
    item = [{"keys": {"pid": persons["pid"][1], "name": persons["name"][1]}}]
    assert (
        verification.call(world.platform, world.consumer, "identity", item, CONSENT).code == "match"
    )
    agreements.suspend(world.platform, world.city, world.agreement, "failed evaluation")
    with pytest.raises(PolicyRefusal) as info:
        verification.call(world.platform, world.consumer, "identity", item, CONSENT)
    assert info.value.rule == "agreement_suspended" and info.value.article == "Art. 24"
    with world.platform.store.read() as conn:
        withdrawn = ledger.query(conn, action="verify.withdrawn", subject="verification:identity")
    assert len(withdrawn) == 1 and withdrawn[0]["details"]["rule"] == "agreement_suspended"
    agreements.restore(world.platform, world.city, world.agreement, "rectified")
    with pytest.raises(PolicyRefusal) as info:
        verification.call(world.platform, world.consumer, "identity", item, CONSENT)
    assert info.value.rule == "product_withdrawn"
    verify_products.approve(world.platform, world.city, "identity")
    assert (
        verification.call(world.platform, world.consumer, "identity", item, CONSENT).code == "match"
    )


def test_a_withdrawal_names_the_products_own_agreement(world):
    # A second agreement over the same data, ending later: the gate's refusal names the
    # agreement of the grant that ends last, but the product was made under the first.
    made = {"city": world.city, "operator": world.operator, "provider": world.provider}
    with world.platform.store.read() as conn:
        made.update({n: by_name(conn, n, Role.REVIEWER) for n in ("r1", "r2")})
    later = sign_agreement(world.platform, made, days=400)
    agreements.suspend(world.platform, world.city, later, "failed evaluation")
    persons = _persons(world)
    item = [{"keys": {"pid": persons["pid"][1], "name": persons["name"][1]}}]
    assert (
        verification.call(world.platform, world.consumer, "identity", item, CONSENT).code == "match"
    )
    agreements.suspend(world.platform, world.city, world.agreement, "failed evaluation")
    with pytest.raises(PolicyRefusal):
        verification.call(world.platform, world.consumer, "identity", item, CONSENT)
    with world.platform.store.read() as conn:
        withdrawn = ledger.query(conn, action="verify.withdrawn", subject="verification:identity")
    details = withdrawn[0]["details"]
    assert details["agreement"] == world.agreement
    assert details["rule"] == "agreement_suspended"
    assert f"agreement {world.agreement} " in details["reason"], details


def test_an_incident_on_the_products_agreement_is_named_as_its_withdrawal(world):
    # Issue 20, item 10: the operator's first agreement was terminated, and its grants end
    # last; the product is made under the second, which an incident then stops. The gate's
    # refusal judges the grant that ends last ("agreement 1 was terminated"); the
    # withdrawal names the second agreement and the incident, and the operator is told.
    made = {"city": world.city, "operator": world.operator, "provider": world.provider}
    with world.platform.store.read() as conn:
        made.update({n: by_name(conn, n, Role.REVIEWER) for n in ("r1", "r2")})
    second = sign_agreement(world.platform, made, days=200)
    agreements.suspend(world.platform, world.city, world.agreement, "breach")
    agreements.terminate(world.platform, world.city, world.agreement, "breach confirmed")
    assert (
        verify_products.define(world.platform, world.operator, dict(IDENTITY, name="id2"))[
            "agreement"
        ]
        == second
    )
    verify_products.approve(world.platform, world.city, "id2")
    persons = _persons(world)
    item = [{"keys": {"pid": persons["pid"][1], "name": persons["name"][1]}}]
    assert verification.call(world.platform, world.consumer, "id2", item, CONSENT).code == "match"
    incident = supervision.report_incident(
        world.platform, world.operator, "operator", "leak", "a table left the sandbox"
    )["incident"]
    with pytest.raises(PolicyRefusal) as info:
        verification.call(world.platform, world.consumer, "id2", item, CONSENT)
    assert f"agreement {world.agreement} was terminated" in str(info.value)  # the gate's own
    with world.platform.store.read() as conn:
        [entry] = ledger.query(conn, action="verify.withdrawn", subject="verification:id2")
    details = entry["details"]
    assert (details["agreement"], details["rule"]) == (second, "agreement_suspended")
    event = details["event"]
    assert (event["action"], event["by"], event["incident"]) == (
        "agreement.suspended", "operator", incident)  # fmt: skip
    assert f"agreement {second} is suspended" in details["reason"]
    assert f"incident {incident} (leak)" in details["reason"]
    assert f"agreement {world.agreement}" not in details["reason"]
    [note] = [n for n in notifications_of(world.platform, world.operator)
              if n["kind"] == "verification_product_withdrawn"]  # fmt: skip
    assert note["subject"] == "verification:id2"
    assert (note["body"]["agreement"], note["body"]["event"]["incident"]) == (second, incident)


def test_definitions_need_an_agreement_covering_verification(world):
    other = dict(IDENTITY, name="identity2")
    with pytest.raises(PermissionDenied):
        verify_products.define(world.platform, world.consumer, other)
    bad = dict(IDENTITY, name="probe", rule=IDENTITY["rule"].replace("$name", "'王伟'"))
    with pytest.raises(PolicyRefusal):
        verify_products.define(world.platform, world.operator, bad)
    with pytest.raises(PermissionDenied):
        verify_products.approve(world.platform, world.operator, "identity")
    with pytest.raises(NotFound):
        verification.call(world.platform, world.consumer, "nothing_here", [{"keys": {}}])


def test_consumer_rate_limit_per_minute(world):
    plat = reopen(world.platform, "[verify]\nconsumer_per_minute = 5\n")
    try:
        codes = world.tables["enterprises"].column("credit_code").to_pylist()
        for code in codes[:4]:
            verification.call(
                plat, world.consumer, "si_paid_6_of_12", [{"keys": {"credit_code": code}}]
            )
        batch = [{"keys": {"credit_code": c}} for c in codes[4:6]]
        with pytest.raises(RateLimited, match="verify.consumer_per_minute"):
            verification.call(plat, world.consumer, "si_paid_6_of_12", batch)
        verification.call(plat, world.consumer, "si_paid_6_of_12", batch[:1])
        with pytest.raises(RateLimited):
            verification.call(plat, world.consumer, "si_paid_6_of_12", batch[:1])
        # Another consumer has its own allowance.
        verification.call(plat, world.consumer2, "si_paid_6_of_12", batch[:1])
    finally:
        verification.service_for(plat).close()
        plat.close()


def test_per_subject_daily_limit_across_consumers(world):
    plat = reopen(world.platform, "[verify]\nsubject_per_day = 2\n")
    try:
        code = world.tables["enterprises"].column("credit_code")[3].as_py()
        item = [{"keys": {"credit_code": code}}]
        assert verification.call(plat, world.consumer, "si_paid_6_of_12", item).code
        assert verification.call(plat, world.consumer2, "si_paid_6_of_12", item).code
        third = verification.call(plat, world.consumer2, "si_paid_6_of_12", item)
        assert third.code is None and third.results[0].refused == "subject_daily_limit"
        other = world.tables["enterprises"].column("credit_code")[4].as_py()
        batch = verification.call(
            plat, world.consumer, "si_paid_6_of_12", item + [{"keys": {"credit_code": other}}]
        )
        assert [r.refused for r in batch.results] == ["subject_daily_limit", None]
    finally:
        verification.service_for(plat).close()
        plat.close()


def _enumerate(plat: Platform, world: World, seed: int, consumer) -> str:
    """Try 1,000 candidate ID numbers for one name; 'found', 'blocked' or 'gave_up'."""
    rng = random.Random(seed)
    persons = _persons(world)
    i = rng.randrange(len(persons["pid"]))
    true_pid, name = persons["pid"][i], persons["name"][i]
    candidates = set()
    while len(candidates) < 999:
        first = true_pid[:14] + f"{rng.randint(0, 999):03d}"
        candidates.add(first + resident_id_check_char(first))
    candidates.discard(true_pid)
    order = sorted(candidates)[:999] + [true_pid]
    rng.shuffle(order)
    consent = dict(CONSENT, reference=f"GUESS-{seed}")
    for pid in order:
        try:
            result = verification.call(
                plat, consumer, "identity", [{"keys": {"pid": pid, "name": name}}], consent
            )
        except RateLimited:
            continue  # a real script would wait; it is the same attempt either way
        except PolicyRefusal as refusal:
            assert refusal.rule == "enumeration_blocked"
            return "blocked"
        if result.code == "match" and pid == true_pid:
            return "found"
    return "gave_up"


def test_an_enumeration_script_is_blocked_before_it_finds_the_id(world, make_principal):
    outcomes = []
    for seed in range(10):
        guesser, _token = make_principal(f"guesser{seed}", Role.CONSUMER)
        outcomes.append(_enumerate(world.platform, world, seed, guesser))
    assert outcomes.count("blocked") >= 9, outcomes
    with world.platform.store.read() as conn:
        alerts = ledger.query(conn, action="verify.alert")
    assert {a["details"]["standing"] for a in alerts} >= {"throttled", "blocked"}
    notes = notifications_of(world.platform, world.city)
    assert any(n["kind"] == "verification_alert" for n in notes)
    stats = verify_audit.stats(world.platform, world.city, "identity")
    assert stats["codes"].get("not_found", 0) + stats["codes"].get("mismatch", 0) > 0


def test_a_high_share_of_misses_blocks_a_consumer(world):
    plat = reopen(world.platform, "[verify]\nmiss_min_calls = 10\n")
    try:
        rng = random.Random(1)
        items = [
            {"keys": {"credit_code": f"9137080{rng.randrange(10**10):010d}X"}} for _ in range(9)
        ]
        verification.call(plat, world.consumer, "si_paid_6_of_12", items)
        with pytest.raises(PolicyRefusal) as info:
            verification.call(plat, world.consumer, "si_paid_6_of_12", items[:2])
        assert info.value.rule == "enumeration_blocked"
        real = world.tables["enterprises"].column("credit_code")[0].as_py()
        with pytest.raises(PolicyRefusal, match="blocked"):
            verification.call(
                plat, world.consumer, "si_paid_6_of_12", [{"keys": {"credit_code": real}}]
            )
    finally:
        verification.service_for(plat).close()
        plat.close()


def test_batches_up_to_1000_subjects(world, relaxed):
    persons = _persons(world)
    n = len(persons["pid"])
    items = [
        {"keys": {"pid": persons["pid"][i % n], "name": persons["name"][(i * 7) % n]}}
        for i in range(1000)
    ]
    result = verification.call(relaxed, world.consumer, "identity", items, CONSENT)
    assert len(result.results) == 1000
    expected = [
        direct_identity(world.tables, it["keys"]["pid"], it["keys"]["name"]) for it in items
    ]
    assert [r.code for r in result.results] == expected
    with pytest.raises(InputError, match="1 to 1000"):
        verification.call(relaxed, world.consumer, "identity", items + items[:1], CONSENT)


def test_auditor_finds_who_verified_a_subject_and_the_ledger_holds_no_key_value(world):
    persons = _persons(world)
    pid, name = persons["pid"][2], persons["name"][2]
    keys = {"pid": pid, "name": name}
    verification.call(world.platform, world.consumer, "identity", [{"keys": keys}], CONSENT)
    consent2 = dict(CONSENT, reference="BANK2-77")
    verification.call(world.platform, world.consumer2, "identity", [{"keys": keys}], consent2)
    other = {"pid": persons["pid"][3], "name": persons["name"][3]}
    verification.call(world.platform, world.consumer2, "identity", [{"keys": other}], consent2)
    rows = verify_audit.who(world.platform, world.auditor, {"pid": pid.lower()})
    assert [(r["consumer"], r["consent"]["reference"], r["code"]) for r in rows] == [
        ("consumer", "CONSENT-0001", "match"),
        ("consumer2", "BANK2-77", "match"),
    ]
    assert all(r["in_ledger"] for r in rows)
    with pytest.raises(PermissionDenied):
        verify_audit.who(world.platform, world.consumer, {"pid": pid})
    with world.platform.store.read() as conn:
        text = json.dumps(ledger.query(conn), ensure_ascii=False)
        assert ledger.verify(conn, world.platform.key.public_key()).entries > 0
    assert pid not in text and name not in text
    assert "verify.who" in text


def test_a_new_dataset_version_rebuilds_the_index(world, tmp_path):
    persons = world.tables["persons"]
    names = persons.column("name").to_pylist()
    names[0] = "新名字"
    changed = persons.set_column(persons.schema.get_field_index("name"), "name", pa.array(names))
    path = tmp_path / "persons_v2.parquet"
    pq.write_table(changed, path)
    vault.register(
        world.platform,
        world.provider,
        "persons",
        str(path),
        DEMO_TABLES["persons"].classification(),
    )
    keys = {"pid": persons.column("pid")[0].as_py(), "name": "新名字"}
    result = verification.call(
        world.platform, world.consumer, "identity", [{"keys": keys}], CONSENT
    )
    assert result.code == "match" and result.versions == {"persons": 2}
    with world.platform.store.read() as conn:
        assert ledger.query(conn, action="verify.index")


def test_group_commit_batches_concurrent_calls_and_every_call_is_ledgered(world, relaxed):
    codes = world.tables["enterprises"].column("credit_code").to_pylist()
    errors: list[Exception] = []
    answers: list[str] = []

    def worker(k: int) -> None:
        try:
            for j in range(6):
                code = codes[(k * 6 + j) % len(codes)]
                r = verification.call(
                    relaxed, world.consumer, "si_paid_6_of_12", [{"keys": {"credit_code": code}}]
                )
                answers.append(r.request_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    service = verification.service_for(relaxed)
    assert service.committer.units >= 72 and service.committer.batches < service.committer.units
    with relaxed.store.read() as conn:
        calls = ledger.query(conn, action="verify.call")
        ledger.verify(conn, relaxed.key.public_key())
    assert {c["details"]["request_id"] for c in calls} >= set(answers)


def test_secret_file_is_private(world):
    secret = Path(world.platform.home) / "keys" / "verify.secret"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_the_catalogue_offers_published_verification_products_only(world):
    # Art. 17: published products are in the catalogue with the datasets they read; a
    # defined one is not yet, a withdrawn one no more; no code or key value is shown.
    verify_products.define(world.platform, world.operator, dict(IDENTITY, name="id_pending"))
    page = catalogue(world.platform, world.consumer2)
    shown = {e["id"]: e for e in page["items"]}
    assert set(shown) == {"identity", "si_paid_6_of_12"}
    assert shown["identity"]["kind"] == "verification"
    assert shown["identity"]["datasets"] == ["persons"]
    assert shown["identity"]["title"] == IDENTITY["description"]
    assert set(shown["identity"]) == {"id", "kind", "title", "operator", "datasets", "released_at"}
    persons = _persons(world)
    item = [{"keys": {"pid": persons["pid"][1], "name": persons["name"][1]}}]
    agreements.suspend(world.platform, world.city, world.agreement, "failed evaluation")
    with pytest.raises(PolicyRefusal):
        verification.call(world.platform, world.consumer, "identity", item, CONSENT)
    assert [e["id"] for e in catalogue(world.platform, world.auditor)["items"]] == [
        "si_paid_6_of_12"
    ]


def test_a_consumer_that_called_a_product_gives_feedback_on_it(world):
    # Art. 16: a verification product reaches a consumer by its calls; that consumer (and
    # no other) gives feedback on it, and the operator's usage figures count it.
    with pytest.raises(PermissionDenied) as info:
        feedback.give(world.platform, world.consumer, "identity", quality=4, use=4, effect=4)
    assert (info.value.code, info.value.article) == ("not_delivered", "Art. 16")
    persons = _persons(world)
    item = [{"keys": {"pid": persons["pid"][1], "name": persons["name"][1]}}]
    verification.call(world.platform, world.consumer, "identity", item, CONSENT)
    fid = feedback.give(world.platform, world.consumer, "identity", quality=5, use=4, effect=2,
                        comment="fast answers")  # fmt: skip
    with world.platform.store.read() as conn:
        [row] = conn.execute(select(verification_feedback)).all()
        [entry] = ledger.query(conn, action="feedback.given", subject="verification:identity")
        now = datetime.now(UTC)
        facts = usage.figures(conn, "operator", now - timedelta(days=1), now + timedelta(days=1))
    assert (row.id, row.product, row.consumer_id) == (fid, "identity", world.consumer.id)
    assert (row.quality, row.use_score, row.effect, row.rating) == (5, 4, 2, 4)
    assert entry["actor"] == "consumer" and entry["details"]["feedback"] == fid
    assert facts["totals"]["feedback"] == 1 and facts["mean_rating"] == 4
    answers = []  # another consumer: one answer for a product it never called and for none
    for probe in ("identity", "no_such_product"):
        with pytest.raises(PermissionDenied) as info:
            feedback.give(world.platform, world.consumer2, probe, quality=3, use=3, effect=3)
        answers.append((info.value.code, str(info.value).replace(probe, "?")))
    assert answers[0] == answers[1] and answers[0][0] == "not_delivered"


def test_a_consumer_reports_an_incident_on_a_product_that_answered_it(world):
    # Art. 21: a verification product reaches a consumer by its answers; that consumer may
    # report its misuse: the operator, the signing authority and the provider are told,
    # and the product stays published (a consumer's word suspends nothing).
    with pytest.raises(PermissionDenied) as info:
        consumers.incident_report(world.platform, world.consumer, "misuse", "x", product="identity")
    assert info.value.code == "not_delivered"
    persons = _persons(world)
    item = [{"keys": {"pid": persons["pid"][1], "name": persons["name"][1]}}]
    verification.call(world.platform, world.consumer, "identity", item, CONSENT)
    done = consumers.incident_report(world.platform, world.consumer, "misuse",
                                     "answers resold to a broker", product="identity")  # fmt: skip
    for told in (world.operator, world.city, world.provider):
        assert [n["body"]["product"] for n in notifications_of(world.platform, told)
                if n["kind"] == "incident"] == ["identity"], told.name  # fmt: skip
    assert not [n for n in notifications_of(world.platform, world.consumer2)]
    assert done["suspended"] == []
    assert verification.call(world.platform, world.consumer, "identity", item, CONSENT).code == (
        "match"
    )
