"""Verification over HTTP: a real ``sandbox serve`` on loopback, the Python client."""

from __future__ import annotations

import pytest
from api_server import ApiServer, check_envelope
from verify_helpers import CONSENT, IDENTITY, SOCIAL_INSURANCE, direct_identity, make_world

from policies.errors import InputError, PermissionDenied, PolicyRefusal
from sandbox.client import Client
from sandbox.core import principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.verification import products as verify_products


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify_api")
    platform = Platform.init(tmp / "home")

    def make(name, role, org=None, jurisdiction=None):
        with platform.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(platform, make, tmp / "data")
    platform.close()
    responses = []
    with ApiServer(tmp / "home", workers=1) as server:
        yield server, world, responses


def client(served, who: str) -> Client:
    server, world, responses = served
    return Client(server.url, world.tokens[who], hooks=[responses.append])


def test_define_approve_call_batch_stats_and_who_over_http(served):
    _server, world, responses = served
    with client(served, "operator") as op, client(served, "city") as city:
        made = op.define_verification(**IDENTITY)
        assert made["state"] == "defined" and made["check_keys"] == ["name"]
        op.define_verification(**SOCIAL_INSURANCE)
        with pytest.raises(PermissionDenied):
            op.approve_verification("identity")
        assert city.approve_verification("identity")["state"] == "published"
        city.approve_verification("si_paid_6_of_12")
    persons = world.tables["persons"].to_pydict()
    pid, name = persons["pid"][7], persons["name"][7]
    with client(served, "consumer") as bank:
        assert {p["name"] for p in bank.verification_products()} == {"identity", "si_paid_6_of_12"}
        answer = bank.verify("identity", {"pid": pid, "name": name}, CONSENT)
        assert answer.code == "match" and answer.versions == {"persons": 1}
        with pytest.raises(PolicyRefusal) as info:
            bank.verify("identity", {"pid": pid, "name": name})
        assert info.value.status == 403 and info.value.article == "Art. 19"
        # one consent per subject: a consent reference is a value counted across all
        # consumers like the keys (verify.value_per_hour), so one reference for 50 subjects
        # would be refused after 20
        items = [
            {
                "keys": {"pid": persons["pid"][i], "name": persons["name"][i if i % 3 else i + 1]},
                "consent": dict(CONSENT, reference=f"KYC-{i:04d}"),
            }
            for i in range(50)
        ]
        batch = bank.verify_batch("identity", items, CONSENT)
        assert [r["code"] for r in batch.results] == [
            direct_identity(world.tables, i["keys"]["pid"], i["keys"]["name"]) for i in items
        ]
        with pytest.raises(InputError):
            bank.verify("identity", {"pid": pid}, CONSENT)
        code = world.tables["enterprises"].column("credit_code")[0].as_py()
        assert bank.verify("si_paid_6_of_12", {"credit_code": code}).code in {"yes", "no"}
        with pytest.raises(PermissionDenied):
            bank.who_verified({"pid": pid})
    with client(served, "auditor") as auditor:
        rows = auditor.who_verified({"pid": pid}, "identity")
        assert [r["code"] for r in rows] == ["match", "match"]
        assert rows[0]["consent"]["reference"] == CONSENT["reference"]
        assert auditor.verify_ledger().entries > 0
        stats = auditor.verification_stats("identity")
        assert stats["consumers"] == {"consumer": 51}
    for response in responses:
        check_envelope(response)
    assert any(r.status_code == 403 for r in responses)
    assert pid not in "".join(r.text for r in responses if r.request.url.path.endswith("/who"))


def test_products_listing_is_scoped_and_the_names_are_reserved(served):
    with client(served, "operator") as op:
        with pytest.raises(InputError):
            op.define_verification(**dict(IDENTITY, name="who"))
    assert "products" in verify_products.RESERVED
