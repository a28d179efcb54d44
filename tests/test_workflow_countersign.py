"""Providers sign the agreement for their own data (授权单位, Art. 4, 13; issue 20, item 1).

The attacks: a provider signing for another provider's dataset, for a dataset outside
the agreement, twice, or on an agreement that has ended; an operator or authority
signing in a provider's name; a provider reading an agreement that does not use its
data. Each is refused by name and writes nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from policies.errors import Conflict, InputError, NotFound, PermissionDenied
from sandbox.core.principals import Role
from sandbox.data import vault
from sandbox.registry.inbox import notifications_of
from sandbox.registry.tables import countersignatures
from sandbox.workflow import agreements, countersign, requests
from tests.workflow_helpers import entries, make_cast, passed_application, sign, verify_ledger

TERMS = "aggregates of Rencheng residents only; no linkage with other sources"


@pytest.fixture
def cast(platform, make_principal, provider, pums_dataset, pums_csv, pums_classification):
    c = make_cast(platform, make_principal, provider)
    c.farmer, _ = make_principal("farm_bureau", Role.PROVIDER, org="Agriculture Bureau")
    vault.register(platform, c.farmer, "farms", str(pums_csv), pums_classification)
    yield c
    verify_ledger(platform)


def _agreement(cast) -> int:
    return sign(cast, passed_application(cast))


def _shown(cast, viewer, agreement_id: int) -> dict:
    with cast.platform.store.read() as conn:
        return agreements.agreement_dict(conn, viewer, agreement_id)


def _count(cast) -> int:
    with cast.platform.store.read() as conn:
        return conn.execute(select(func.count()).select_from(countersignatures)).scalar_one()


def test_a_provider_signs_for_its_dataset_and_the_parties_are_told(cast):
    agreement_id = _agreement(cast)
    before = _shown(cast, cast.city, agreement_id)["parties"]["providers"]
    assert before == [
        {"dataset": "pums", "provider": cast.provider.name, "signed": False,
         "signed_at": None, "terms": None}
    ]  # fmt: skip
    signed = countersign.countersign(cast.platform, cast.provider, agreement_id, "pums", TERMS)
    assert signed["dataset"] == "pums" and signed["terms"] == TERMS
    (party,) = _shown(cast, cast.operator, agreement_id)["parties"]["providers"]
    assert party["signed"] and party["terms"] == TERMS and party["provider"] == cast.provider.name
    # the provider reads the agreement it signed; the ledger and both parties know
    assert _shown(cast, cast.provider, agreement_id)["id"] == agreement_id
    (entry,) = [
        e for e in entries(cast.platform, f"agreement:{agreement_id}")
        if e["action"] == "agreement.countersigned"
    ]  # fmt: skip
    assert entry["actor"] == cast.provider.name and entry["article"] == "Art. 13"
    assert entry["details"]["dataset"] == "pums" and entry["details"]["by"] == "countersign"
    for who in (cast.operator, cast.city):
        told = notifications_of(cast.platform, who)
        assert [n["body"]["dataset"] for n in told if n["kind"] == "agreement_countersigned"] == [
            "pums"
        ]


def test_approving_a_request_signs_for_the_dataset_and_an_authoritys_approval_does_not(cast):
    agreement_id = _agreement(cast)
    rid = requests.request_data(cast.platform, cast.operator, agreement_id, "pums", purpose="p")
    requests.approve(cast.platform, cast.provider, rid)
    (party,) = _shown(cast, cast.city, agreement_id)["parties"]["providers"]
    assert party["signed"] and f"data request {rid}" in party["terms"]
    # an authority approving (Art. 14 allows it) does not sign in the provider's name
    other = _agreement(cast)
    rid2 = requests.request_data(cast.platform, cast.operator, other, "pums", purpose="p")
    requests.approve(cast.platform, cast.city, rid2)
    (party,) = _shown(cast, cast.city, other)["parties"]["providers"]
    assert not party["signed"]
    # a provider that signed first is not asked again when it approves
    third = _agreement(cast)
    countersign.countersign(cast.platform, cast.provider, third, "pums", TERMS)
    rid3 = requests.request_data(cast.platform, cast.operator, third, "pums", purpose="p")
    requests.approve(cast.platform, cast.provider, rid3)
    (party,) = _shown(cast, cast.city, third)["parties"]["providers"]
    assert party["terms"] == TERMS


@pytest.mark.parametrize(
    "who, dataset, error, words",
    [
        ("farmer", "pums", PermissionDenied, "not a dataset of farm_bureau"),
        ("provider", "farms", PermissionDenied, "not a dataset of"),
        ("operator", "pums", PermissionDenied, "countersign agreements"),
        ("city", "pums", PermissionDenied, "countersign agreements"),
    ],
)
def test_only_the_datasets_provider_signs_for_it(cast, who, dataset, error, words):
    agreement_id = _agreement(cast)
    with pytest.raises(error) as refused:
        countersign.countersign(cast.platform, getattr(cast, who), agreement_id, dataset, TERMS)
    assert words in str(refused.value)
    assert _count(cast) == 0


def test_twice_outside_the_scope_or_after_the_end_is_refused(cast):
    agreement_id = _agreement(cast)
    countersign.countersign(cast.platform, cast.provider, agreement_id, "pums", TERMS)
    with pytest.raises(Conflict, match="signed agreement .* already"):
        countersign.countersign(cast.platform, cast.provider, agreement_id, "pums", "again")
    with pytest.raises(Conflict, match="does not cover dataset 'farms'"):
        countersign.countersign(cast.platform, cast.farmer, agreement_id, "farms", TERMS)
    with pytest.raises(InputError):
        countersign.countersign(cast.platform, cast.provider, _agreement(cast), "pums", "  ")
    ended = _agreement(cast)
    agreements.suspend(cast.platform, cast.city, ended, "audit")
    agreements.terminate(cast.platform, cast.city, ended, "breach")
    with pytest.raises(Conflict, match="is terminated"):
        countersign.countersign(cast.platform, cast.provider, ended, "pums", TERMS)
    assert _count(cast) == 1


def test_a_provider_reads_only_agreements_that_use_its_data(cast):
    agreement_id = _agreement(cast)
    assert _shown(cast, cast.provider, agreement_id)["id"] == agreement_id
    with pytest.raises(NotFound):
        _shown(cast, cast.farmer, agreement_id)
    with pytest.raises(PermissionDenied):
        _shown(cast, cast.consumer, agreement_id)
