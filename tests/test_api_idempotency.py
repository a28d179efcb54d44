"""``Idempotency-Key`` on every POST of the API (issue 26), on a real server.

The contract: for every ``POST /v1/...`` route the server documents, a second request
with the same key and the same body is answered with the first answer, byte for byte,
marked ``Idempotent-Replayed: true``, and the route does not run again; the same key
with another body is refused (409). Then the case a retrying client meets: a notice
published twice with one key (in a row, and at once from two threads) is one notice,
and a new key publishes a new one. Job submission keeps its own keys
(``tests/test_api_paging.py``).
"""

from __future__ import annotations

import re
import threading
import uuid

import httpx
import pytest
from api_server import ApiServer, check_envelope, make_home, write_persons

from sandbox.api.replay import OWN_KEYS, REPLAYED
from sandbox.client import Client

NOTICE = {
    "title": "Income by county",
    "domain": "finance",
    "scenario": "regional income aggregates",
    "datasets": ["persons"],
    "conditions": "licensed firm",
    "deadline": "2099-12-31",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("idempotency")
    tokens = make_home(root / "home")
    with ApiServer(root / "home") as server:
        csv, yaml_path = write_persons(root / "data", rows=200)
        with Client(server.url, tokens["provider"]) as provider:
            provider.register_upload("persons", csv, yaml_path)
        yield server, tokens


def _post(server, token, path, body, key) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    response = httpx.post(server.url + path, json=body, headers=headers, timeout=60)
    check_envelope(response)
    return response


def _post_routes(server) -> list[str]:
    spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
    paths = [p for p, ops in spec["paths"].items() if "post" in ops and p.startswith("/v1/")]
    return sorted(re.sub(r"\{[^}]+\}", "1", p) for p in paths if p not in OWN_KEYS)


def test_every_post_route_replays_its_first_answer_and_refuses_another_body(served):
    server, tokens = served
    routes = _post_routes(server)
    assert len(routes) > 30  # the API's creating and changing routes, not a handful
    for path in routes:
        key = str(uuid.uuid4())
        first = _post(server, tokens["operator"], path, {}, key)
        again = _post(server, tokens["operator"], path, {}, key)
        assert REPLAYED.lower() not in first.headers, path
        assert again.headers.get(REPLAYED.lower()) == "true", path
        assert (again.status_code, again.content) == (first.status_code, first.content), path
        other = _post(server, tokens["operator"], path, {"changed": True}, key)
        assert other.status_code == 409, (path, other.text)
        assert "a key names one request" in other.json()["error"]["message"]


def _notices(server, token) -> list[dict]:
    response = httpx.get(
        server.url + "/v1/workflow/notices",
        headers={"Authorization": f"Bearer {token}"},
        params={"limit": 500},
        timeout=30,
    )
    return response.json()["items"]


def test_a_retried_notice_is_published_once(served):
    server, tokens = served
    before = len(_notices(server, tokens["authority"]))
    key = str(uuid.uuid4())
    first = _post(server, tokens["authority"], "/v1/notices", NOTICE, key)
    assert first.status_code in (200, 201), first.text
    again = _post(server, tokens["authority"], "/v1/notices", NOTICE, key)
    assert again.json() == first.json() and again.headers[REPLAYED.lower()] == "true"
    assert len(_notices(server, tokens["authority"])) == before + 1
    # another caller's same key is its own: its request runs (and is refused by role)
    theirs = _post(server, tokens["operator"], "/v1/notices", NOTICE, key)
    assert theirs.status_code == 403 and REPLAYED.lower() not in theirs.headers
    assert len(_notices(server, tokens["authority"])) == before + 1


def test_two_requests_with_one_key_at_once_make_one_notice(served):
    server, tokens = served
    before = len(_notices(server, tokens["authority"]))
    key = str(uuid.uuid4())
    answers: list[httpx.Response] = []

    def publish() -> None:
        answers.append(_post(server, tokens["authority"], "/v1/notices", NOTICE, key))

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [answers[0].status_code] * 2
    assert answers[0].json() == answers[1].json()
    assert sorted(a.headers.get(REPLAYED.lower(), "") for a in answers) == ["", "true"]
    assert len(_notices(server, tokens["authority"])) == before + 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 201])
def test_a_bad_key_is_refused_and_nothing_is_made(served, key):
    server, tokens = served
    before = len(_notices(server, tokens["authority"]))
    response = _post(server, tokens["authority"], "/v1/notices", NOTICE, key)
    assert response.status_code == 400, response.text
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert len(_notices(server, tokens["authority"])) == before
