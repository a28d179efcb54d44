"""HE aggregate jobs over HTTP: the real client against a real uvicorn on 127.0.0.1.

The home is prepared in-process (a registry registered by ``provider``, an HE
grant to ``operator``), then served; the client's secret key never leaves the
test process, the server sees the public context, the keys and ciphertexts.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from api_server import ApiServer, check_envelope, make_home

from policies.errors import InputError, PermissionDenied, PolicyRefusal
from sandbox.client import Client
from sandbox.client import he as client_he
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, by_name
from tests.he_helpers import SMALL_COUNTY, direct_grant, expected_sums, register_registry

pytestmark = pytest.mark.slow  # a server and 34 MB contexts: about 15 s on a quiet machine


def _hook(response: httpx.Response) -> None:
    check_envelope(response)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("he-api")
    tokens = make_home(root / "home")
    platform = Platform.open(root / "home")
    try:
        with platform.store.read() as conn:
            provider = by_name(conn, "provider", Role.PROVIDER)
            authority = by_name(conn, "authority", Role.AUTHORITY)
        table = register_registry(platform, provider, root)
        direct_grant(platform, authority, "operator")
    finally:
        platform.close()
    server = ApiServer(root / "home").start()
    clients = {n: Client(server.url, t, hooks=[_hook]) for n, t in tokens.items()}
    yield server, clients, table
    for client in clients.values():
        client.close()
    server.stop()


def test_he_sum_over_http_matches_plain_sums(served):
    server, clients, table = served
    rng = np.random.default_rng(2)
    keys = table.column("code").to_pylist()[:300] + ["UNKNOWN-1", "UNKNOWN-2"]
    values = rng.lognormal(10, 1, len(keys)).round(2).tolist()
    result = clients["operator"].he_sum("registry", "code", "county", keys, values)
    expected = expected_sums(table, "code", ["county"], keys, values)
    assert result.groups and not hasattr(result, "groups_refused")
    for g in result.groups:
        total, count = expected[(g.group["county"],)]
        assert g.subjects == count and g.sum == pytest.approx(total, rel=1e-6)
    assert SMALL_COUNTY not in {g.group["county"] for g in result.groups}
    assert result.answer_bytes < 2 * 1024 * 1024
    entries = clients["auditor"].ledger(action="he.sum")
    assert entries and entries[-1].details["list_size"] == len(keys)
    assert "UNKNOWN-1" not in str(entries[-1].details)


def test_he_refusals_over_http(served):
    server, clients, table = served
    keys = table.column("code").to_pylist()[:20]
    with pytest.raises(PolicyRefusal) as refused:
        clients["operator2"].he_sum("registry", "code", "county", keys, [1.0] * 20)
    assert refused.value.status == 403 and refused.value.article == "Art. 14"
    # The envelope names the rule, so the client's exception carries it too.
    assert refused.value.rule == "not_granted", refused.value.rule
    with pytest.raises(PermissionDenied):
        clients["consumer"].he_sum("registry", "code", "county", keys, [1.0] * 20)
    with pytest.raises(PolicyRefusal) as group:
        clients["operator"].he_sum("registry", "code", "capital", keys, [1.0] * 20)
    assert "public" in str(group.value) and group.value.rule == "he_group_not_public"
    assert group.value.rule not in ("refused", None) and group.value.subject, group.value.to_dict()
    response = httpx.post(
        server.url + "/v1/he/sum",
        content=b"not the HE format",
        headers={
            "Authorization": f"Bearer {clients['operator']._http.headers['authorization'][7:]}"
        },
    )
    assert response.status_code == 400 and "malformed" in response.json()["error"]["message"]
    with pytest.raises(InputError):
        client_he.build_request(
            client_he.make_context("bfv"), "registry", "code", ["county"], keys, [0.5] * 20, "bfv"
        )
