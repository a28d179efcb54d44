"""Scoring services (issue 22): define over a passed model, approve, call with consent for a
grade of the declared bands; limits, enumeration defence, withdrawal, and a guessing run
that cannot read a feature value back."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from model_helpers import (
    BANDS,
    CONSENT,
    FEATURES,
    SOUND,
    World,
    copied_world,
    sign_agreement,
    trained_world,
)
from sqlalchemy import select

from policies.errors import InputError, NotFound, PermissionDenied, PolicyRefusal, RateLimited
from sandbox.core import ledger, principals
from sandbox.core.ledger import now_utc
from sandbox.models import audit as score_audit
from sandbox.models import calls, service, services
from sandbox.models.tables import score_index
from sandbox.registry.inbox import notifications_of
from sandbox.verification.keys import load_secret, subject_hash
from sandbox.workflow import agreements

SERVICE = {"name": "sme_credit", "model": SOUND["name"], "bands": BANDS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> World:
    """One platform with the sound model trained: each test works on a copy of its home."""
    return trained_world(tmp_path_factory.mktemp("scoring"))


@pytest.fixture
def world(trained, tmp_path) -> World:
    w = copied_world(trained, tmp_path)
    yield w
    calls.close(w.platform)
    w.platform.close()


@pytest.fixture
def published(world) -> World:
    services.define(world.platform, world.operator, SERVICE)
    services.approve(world.platform, world.city, "sme_credit")
    return world


def _codes(world: World, n: int) -> list[str]:
    return world.table.column("credit_code").to_pylist()[:n]


def test_a_consumer_gets_a_declared_grade_with_consent_and_nothing_more(published):
    w = published
    codes = _codes(w, 5)
    result = calls.call(w.platform, w.consumer, "sme_credit", [{"key": c} for c in codes], CONSENT)
    grades = [r.code for r in result.results]
    assert set(grades) <= {"a", "b", "c", "d"}
    assert result.to_dict()["results"][0].keys() == {"code", "refused", "message"}
    unknown = calls.call(
        w.platform, w.consumer, "sme_credit", [{"key": "91370800X99999999"}], CONSENT
    )
    assert unknown.code == "not_found"
    with w.platform.store.read() as conn:
        entries = ledger.query(conn, action="score.call")
    text = str(entries)
    assert entries and not any(c in text for c in codes)  # keyed hashes only
    assert entries[0]["details"]["items"][0]["consent"]["reference"] == CONSENT["reference"]
    # who graded this enterprise? the auditor holds the key; the store holds its hash only
    rows = score_audit.who(w.platform, w.auditor, f"  {codes[0]} ")
    assert [(r["consumer"], r["grade"]) for r in rows] == [("lender", grades[0])]
    assert rows[0]["consent"]["reference"] == CONSENT["reference"]
    with pytest.raises(PermissionDenied):
        score_audit.who(w.platform, w.consumer, codes[0])


def test_a_call_without_consent_is_refused(published):
    w = published
    with pytest.raises(PolicyRefusal) as refused:
        calls.call(w.platform, w.consumer, "sme_credit", [{"key": _codes(w, 1)[0]}])
    assert refused.value.rule == "consent_required" and refused.value.article == "Art. 19"
    partial = {k: v for k, v in CONSENT.items() if k != "purpose"}
    with pytest.raises(PolicyRefusal, match="purpose"):
        calls.call(w.platform, w.consumer, "sme_credit", [{"key": _codes(w, 1)[0]}], partial)


def test_the_lifecycle_needs_the_authority_and_a_passed_model(world):
    w = world
    with pytest.raises(NotFound):
        calls.call(w.platform, w.consumer, "sme_credit", [{"key": "x1"}], CONSENT)
    with pytest.raises(PolicyRefusal) as refused:
        services.define(
            w.platform,
            w.operator,
            {**SERVICE, "bands": [{"grade": "a", "upto": 0.001}, {"grade": "b", "upto": 1.0}]},
        )
    assert refused.value.rule == "band_size"
    with pytest.raises(PolicyRefusal) as refused:
        services.define(w.platform, w.operator, {**SERVICE, "bands": [{"grade": "a", "upto": 0.5}]})
    assert refused.value.rule == "service_definition"
    services.define(w.platform, w.operator, SERVICE)
    with pytest.raises(NotFound, match="no published"):
        calls.call(w.platform, w.consumer, "sme_credit", [{"key": "x1"}], CONSENT)
    with pytest.raises(Exception, match="only an authority"):
        services.approve(w.platform, w.operator, "sme_credit")
    assert services.approve(w.platform, w.city, "sme_credit")["index_rows"] == w.table.num_rows
    assert [s["name"] for s in services.list_services(w.platform, w.consumer)] == ["sme_credit"]


def test_a_county_authority_lists_only_the_services_of_its_county(published):
    """The service was made under the city's agreement: a county authority neither
    lists it nor may reject it (Art. 5); the city authority and the auditor list it."""
    w = published
    with w.platform.store.transaction() as conn:
        county, _ = principals.insert(
            conn, "rencheng", principals.Role.AUTHORITY, "Rencheng", "370811", now_utc()
        )
    assert services.list_services(w.platform, county) == []
    with pytest.raises(PermissionDenied) as refused:
        services.reject(w.platform, county, "sme_credit", reason="not ours")
    assert refused.value.article == "Art. 5"
    for viewer in (w.city, w.auditor):
        assert [s["name"] for s in services.list_services(w.platform, viewer)] == ["sme_credit"]


def test_a_county_authority_neither_lists_nor_reads_the_citys_models(published):
    """The model was trained under the city's agreement: a county authority neither lists
    it nor reads its card (Art. 5), as for jobs and services; the city authority does."""
    w = published
    with w.platform.store.transaction() as conn:
        county, _ = principals.insert(
            conn, "weishan", principals.Role.AUTHORITY, "Weishan", "370826", now_utc()
        )
    assert service.list_models(w.platform, county) == []
    with pytest.raises(NotFound):
        service.show(w.platform, county, SOUND["name"])
    assert [m["name"] for m in service.list_models(w.platform, w.city)] == [SOUND["name"]]
    assert service.show(w.platform, w.city, SOUND["name"])["state"] == "passed"


def test_the_service_is_withdrawn_when_its_agreement_stops(published):
    w = published
    agreements.suspend(w.platform, w.city, w.agreement, reason="security incident")
    with pytest.raises(PolicyRefusal) as refused:
        calls.call(w.platform, w.consumer, "sme_credit", [{"key": _codes(w, 1)[0]}], CONSENT)
    assert refused.value.rule == "agreement_suspended"
    with w.platform.store.read() as conn:
        assert ledger.query(conn, action="score.withdrawn")
    assert services.list_services(w.platform, w.operator)[0]["state"] == "withdrawn"
    assert services.list_services(w.platform, w.consumer) == []


def test_a_withdrawal_names_the_services_own_agreement_and_what_stopped_it(published):
    # Issue 20, item 10: a second agreement of the operator, ending later, was suspended
    # first; the gate's refusal judges that one (its grant ends last). The service was
    # made under the first: its withdrawal names the first and the suspension that ended
    # it, and the operator is told.
    w = published
    with w.platform.store.read() as conn:
        made = {n: principals.by_name(conn, n) for n in ("city", "bank", "provider", "r1", "r2")}
    later = sign_agreement(w.platform, made, days=400)
    agreements.suspend(w.platform, w.city, later, reason="unrelated audit")
    key = [{"key": _codes(w, 1)[0]}]
    assert calls.call(w.platform, w.consumer, "sme_credit", key, CONSENT).code in "abcd"
    agreements.suspend(w.platform, w.city, w.agreement, reason="staff leaked a file")
    with pytest.raises(PolicyRefusal):
        calls.call(w.platform, w.consumer, "sme_credit", key, CONSENT)
    with w.platform.store.read() as conn:
        [entry] = ledger.query(conn, action="score.withdrawn")
    details = entry["details"]
    assert (details["agreement"], details["rule"]) == (w.agreement, "agreement_suspended")
    assert details["event"]["subject"] == f"agreement:{w.agreement}"
    assert (details["event"]["by"], details["event"]["reason"]) == ("city", "staff leaked a file")
    assert f"agreement {later}" not in details["reason"] and "staff leaked" in details["reason"]
    [note] = [n for n in notifications_of(w.platform, w.operator)
              if n["kind"] == "scoring_service_withdrawn"]  # fmt: skip
    assert (note["subject"], note["body"]["agreement"]) == ("score:sme_credit", w.agreement)


def test_a_guessing_run_cannot_read_a_feature_value_back(published):
    w = published
    code = _codes(w, 1)[0]
    # 1. a call cannot carry features: the model is never run on made-up inputs
    with pytest.raises(InputError, match="unknown field 'capital'"):
        calls.call(w.platform, w.consumer, "sme_credit", [{"key": code, "capital": 1e6}], CONSENT)
    # 2. asking again gives the same grade until the subject's daily limit stops it
    answers = []
    for _ in range(12):
        try:
            answers.append(
                calls.call(w.platform, w.consumer, "sme_credit", [{"key": code}], CONSENT).code
            )
        except PolicyRefusal:
            break
    assert len(set(answers) - {None}) == 1 and None in answers  # subject_daily_limit
    # 3. guessing subjects: misses block the consumer before it maps the population
    rng = np.random.default_rng(1)
    stopped = refusal = None
    for i in range(200):
        guess = f"91370800G{rng.integers(0, 10**8):08d}"
        consent = {**CONSENT, "reference": f"R{i}"}
        try:
            calls.call(w.platform, w.consumer, "sme_credit", [{"key": guess}], consent)
        except (PolicyRefusal, RateLimited) as error:
            stopped, refusal = i, error
            break
    assert stopped is not None and stopped < 60, stopped  # throttled: 60% misses of 50 calls
    assert isinstance(refusal, RateLimited) or refusal.rule == "enumeration_blocked"
    # 4. what a grade says: every grade is shared by at least the threshold of enterprises
    # whose values of each measured feature differ, so no grade stands for one value. (A
    # grade does say coarse things: here every 'a' has no months in arrears, which is
    # what a good grade means; docs/models.md says so.)
    secret = load_secret(w.platform.home / "keys")
    with w.platform.store.read() as conn:
        by_hash = dict(conn.execute(select(score_index.c.subject_hash, score_index.c.grade)).all())
    codes = w.table.column("credit_code").to_pylist()
    grades = [by_hash[subject_hash(secret, (c,))] for c in codes]
    for feature in ("capital", "staff", "bill_mean"):
        values = w.table.column(feature).to_pylist()
        for grade in set(grades):
            held = {v for v, g in zip(values, grades, strict=True) if g == grade}
            assert len(held) >= 10, (feature, grade)
    assert min(grades.count(g) for g in set(grades)) >= 10


def test_an_ended_agreement_disposes_of_the_model_and_its_service(published):
    w = published
    agreements.suspend(w.platform, w.city, w.agreement, reason="breach")
    later = datetime.now(UTC) + timedelta(days=400)
    agreements.terminate(w.platform, w.city, w.agreement, reason="breach", now=later)
    assert services.dispose_ended(w.platform) == ["credit_tree"]
    assert services.dispose_ended(w.platform) == []  # idempotent
    with w.platform.store.read() as conn:
        assert conn.execute(select(score_index)).first() is None
        assert ledger.query(conn, action="model.disposed")
    assert service.show(w.platform, w.operator, "credit_tree")["state"] == "disposed"
    assert not list((w.platform.home / "models").glob("*.parquet"))


def test_two_services_whose_bands_differ_slightly_cannot_single_out_an_enterprise(world):
    """An operator publishes a regression on capital alone twice, with a bound moved past
    one enterprise's score: each service's bands hold many enterprises, but a consumer
    holding both grades would know that enterprise's score, hence its capital, to within
    a sliver. The second service is refused; every pair of grades stays shared."""
    w = world
    request = {
        "name": "capital_only",
        "features": FEATURES.replace(
            "MAX(capital) AS capital, MAX(arrears_months) AS arrears, "
            "MAX(staff) AS staff, MAX(bill_mean) AS bills, ",
            "MAX(capital) AS capital, ",
        ),
        "label": "defaulted",
        "algorithm": "logistic_regression",
    }
    assert service.train(w.platform, w.operator, request)["card"]["verdict"] == "passed"
    with w.platform.store.read() as conn:
        model = service.model_row(conn, "capital_only")
    scores = np.sort(service.scores_of(w.platform, model.scores_path).column("score").to_numpy())
    middle = scores.size // 2
    assert scores[middle - 1] < scores[middle] < scores[middle + 1]  # continuous scores
    low = float(scores[middle - 1] + scores[middle]) / 2
    high = float(scores[middle] + scores[middle + 1]) / 2  # (low, high] holds one score
    for name, upto in (("first", low), ("second", high)):
        definition = {
            "name": name,
            "model": "capital_only",
            "bands": [{"grade": "low", "upto": upto}, {"grade": "high", "upto": 1.0}],
        }
        try:
            services.define(w.platform, w.operator, definition)
            services.approve(w.platform, w.city, name)
        except PolicyRefusal as refused:
            assert name == "second" and refused.rule == "band_size", refused
            assert "first" in refused.message
    with w.platform.store.read() as conn:
        rows = conn.execute(
            select(score_index.c.subject_hash, score_index.c.service, score_index.c.grade)
        ).all()
    pairs: dict[str, dict[str, str]] = {}
    for subject, name, grade in rows:
        pairs.setdefault(subject, {})[name] = grade
    shared = Counter(tuple(sorted(g.items())) for g in pairs.values())
    assert min(shared.values()) >= 10, shared


def test_colluding_consumers_get_one_grade_and_the_authority_hears_of_them(published):
    """Four consumers ask about one enterprise: they get the same grade (nothing more to
    combine), the subject's daily limit spans them all, and the authority that approved
    the service is told that several accounts tried one key."""
    w = published
    code = _codes(w, 1)[0]
    colluders = [w.consumer]
    with w.platform.store.transaction() as conn:
        for name in ("lender2", "lender3", "lender4"):
            colluders.append(
                principals.insert(conn, name, principals.Role.CONSUMER, name, None, now_utc())[0]
            )
    answers = []
    for i in range(4):
        for consumer in colluders:
            consent = {**CONSENT, "reference": f"C{i}-{consumer.name}"}
            result = calls.call(w.platform, consumer, "sme_credit", [{"key": code}], consent)
            answers.append(result.results[0])
    grades = [r.code for r in answers if r.code is not None]
    assert len(set(grades)) == 1
    assert len(grades) == w.platform.settings.verify.subject_per_day
    assert {r.refused for r in answers if r.code is None} == {"subject_daily_limit"}
    with w.platform.store.read() as conn:
        alerts = [
            e for e in ledger.query(conn) if e["details"].get("kind") == "value_tried_by_accounts"
        ]
    assert alerts and alerts[0]["details"]["accounts"] >= 3
