"""Fuzz the live API from its own /openapi.json with schemathesis (loopback, bounded).

Every operation gets up to 20 generated requests per role token (operator,
authority, provider): no answer may be a 500, and every error must be the
envelope. Mutating routes are fuzzed too; the server runs on a throw-away home
with no server-side source folders, so a generated URI can only be refused.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from api_server import ApiServer, check_error_fields, host_grant, make_home, write_persons
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.client import Client

MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    tokens = make_home(root / "home", "[api]\nrate_per_minute = 100000\n")
    server = ApiServer(root / "home").start()
    csv, yaml_path = write_persons(root / "data", rows=300)
    Client(server.url, tokens["provider"]).register_upload("persons", csv, yaml_path)
    host_grant(root / "home", "operator", "persons")
    yield server, tokens
    server.stop()


def _check(response, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = json.loads(response.text)
        assert set(body) == {"error"}, (label, body)
        try:
            check_error_fields(body["error"])
        except AssertionError as exc:
            raise AssertionError((label, body)) from exc
        assert "Traceback" not in response.text


@pytest.mark.slow
@pytest.mark.parametrize("role", ["operator", "authority", "provider"])
def test_fuzz_no_500_and_every_error_in_the_envelope(live, role):
    server, tokens = live
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    seen = {"calls": 0, "errors": 0}
    for operation in operations:
        _fuzz(operation, server.url, headers, seen)
    assert seen["calls"] >= len(operations)
    assert seen["errors"] > 0  # the envelope check above was exercised


def _fuzz(operation, url: str, headers: dict, seen: dict) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), anonymous=st.booleans())
    def run(case, anonymous):
        response = case.call(base_url=url, headers={} if anonymous else headers)
        seen["calls"] += 1
        seen["errors"] += response.status_code >= 400
        _check(response, label)

    run()
