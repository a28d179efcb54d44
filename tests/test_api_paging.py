"""Contract tests of issue 26's API habits on a real server: cursor paging of
``/v1/jobs`` and ``/v1/products`` (``limit``, ``after``, ``Link: rel="next"``), and
``Idempotency-Key`` on ``POST /v1/jobs`` (a retried submission makes one job).

``/v1/ledger`` pages the same way by sequence number, and every other list the server
documents pages by its key (:func:`test_every_documented_list_pages`): ids, or names
for named things. The workflow lists, the inbox and the catalogue answer a page object
(``items``, ``next_before``), newest first. Every other POST replays its first answer to
a key (``tests/test_api_idempotency.py``).
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
from api_server import ApiServer, check_envelope, host_grant, make_home, write_persons

from policies.errors import Conflict
from sandbox.client import Client
from sandbox.client.products import next_link

SQL = "SELECT county, COUNT(*) AS n FROM persons GROUP BY county"
REFUSED = "SELECT pid FROM persons"  # row level: refused at once, still a job
PAGED = ("/v1/jobs", "/v1/products")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("paging")
    tokens = make_home(root / "home")
    with ApiServer(root / "home") as server:
        csv, yaml_path = write_persons(root / "data")
        with Client(server.url, tokens["provider"]) as provider:
            provider.register_upload("persons", csv, yaml_path)
            provider.register_upload("residents", csv, yaml_path)
        host_grant(root / "home", "operator", "persons")
        host_grant(root / "home", "operator", "residents")
        with Client(server.url, tokens["operator"]) as api:
            for _ in range(5):
                api.submit_job(REFUSED)
            for _ in range(3):
                job = api.wait_job(api.submit_job(SQL).job)
                assert job.state == "released", job
        yield server, tokens


def _get(server, token, path, **params) -> httpx.Response:
    response = httpx.get(  # params given only when any: httpx would drop the path's query
        server.url + path, params=params or None, headers={"Authorization": f"Bearer {token}"}
    )
    check_envelope(response)
    return response


def _all_pages(server, token, path, limit) -> tuple[list[dict], int]:
    rows, pages = [], 0
    target: str | None = f"{path}{'&' if '?' in path else '?'}limit={limit}"
    while target is not None:
        response = _get(server, token, target)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= limit
        rows += page
        pages += 1
        target = next_link(response.headers.get("link"))
    return rows, pages


@pytest.mark.parametrize("path", PAGED)
def test_every_paged_list_pages_by_limit_and_next_links(served, path):
    server, tokens = served
    whole = _get(server, tokens["operator"], path).json()
    assert len(whole) >= 3
    assert "link" not in _get(server, tokens["operator"], path).headers
    for limit in (1, 2, len(whole)):
        rows, pages = _all_pages(server, tokens["operator"], path, limit)
        assert [r["id"] for r in rows] == sorted(r["id"] for r in whole)  # each once, in order
        assert pages == -(-len(whole) // limit)
    first = _get(server, tokens["operator"], path, limit=2)
    link = first.headers["link"]
    assert link == f'<{path}?limit=2&after={first.json()[-1]["id"]}>; rel="next"'
    last = whole[-1]["id"] if path == "/v1/jobs" else max(r["id"] for r in whole)
    assert _get(server, tokens["operator"], path, after=last).json() == []


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"after": "x y"}])
def test_a_bad_page_request_names_the_parameter(served, path, params):
    server, tokens = served
    response = _get(server, tokens["operator"], path, **params)
    assert response.status_code in (400, 422), response.text
    assert next(iter(params)) in response.json()["error"]["message"]


def test_the_ledger_pages_by_sequence_number_with_its_filters_kept(served):
    server, tokens = served
    whole = _get(server, tokens["auditor"], "/v1/ledger", limit=10_000).json()
    assert "link" not in _get(server, tokens["auditor"], "/v1/ledger", limit=10_000).headers
    rows, pages = _all_pages(server, tokens["auditor"], "/v1/ledger", 7)
    assert [r["seq"] for r in rows] == [r["seq"] for r in whole] and pages > 2
    submitted = [r["seq"] for r in whole if r["action"] == "job.submitted"]
    first = _get(server, tokens["auditor"], "/v1/ledger", action="job.submitted", limit=2)
    assert first.headers["link"].startswith("</v1/ledger?action=job.submitted&limit=2&after=")
    rows, _pages = _all_pages(server, tokens["auditor"], "/v1/ledger?action=job.submitted", 2)
    assert [r["seq"] for r in rows] == submitted and len(submitted) >= 8
    with Client(server.url, tokens["auditor"]) as api:
        assert [e.seq for e in api.iter_ledger(page_size=5)][: len(whole)] == [
            r["seq"] for r in whole
        ]


def test_the_clients_iterators_follow_the_pages(served):
    server, tokens = served
    with Client(server.url, tokens["operator"]) as api:
        assert [j.id for j in api.iter_jobs(page_size=2)] == [j.id for j in api.list_jobs()]
        assert [p.id for p in api.iter_products(page_size=1)] == sorted(
            p.id for p in api.list_products()
        )


def _post(server, token, sql, key=None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = httpx.post(server.url + "/v1/jobs", json={"sql": sql}, headers=headers)
    check_envelope(response)
    return response


def _count(server, token) -> int:
    return len(_get(server, token, "/v1/jobs").json())


def test_a_retried_post_with_its_key_makes_one_job(served):
    server, tokens = served
    before = _count(server, tokens["operator"])
    first = _post(server, tokens["operator"], REFUSED, key="retry-1")
    again = _post(server, tokens["operator"], REFUSED, key="retry-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["job"] == again.json()["job"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count(server, tokens["operator"]) == before + 1
    other = _post(server, tokens["operator2"], REFUSED, key="retry-1")  # keys are per principal
    assert other.status_code == 202 and other.json()["job"] != first.json()["job"]
    without = [_post(server, tokens["operator"], REFUSED) for _ in range(2)]
    assert without[0].json()["job"] != without[1].json()["job"]  # no key: two jobs


def test_a_key_used_for_another_request_is_refused(served):
    server, tokens = served
    _post(server, tokens["operator"], REFUSED, key="one-request")
    clash = _post(server, tokens["operator"], SQL, key="one-request")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "conflict"
    assert "Idempotency-Key" in clash.json()["error"]["message"]
    bad = _post(server, tokens["operator"], REFUSED, key="has space")
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]["message"]


def test_two_requests_with_one_key_at_once_make_one_job(served):
    server, tokens = served
    before = _count(server, tokens["operator"])
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(_post(server, tokens["operator"], REFUSED, "race"))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.json()["job"] for a in answers} and len({a.json()["job"] for a in answers}) == 1
    assert _count(server, tokens["operator"]) == before + 1


def test_the_client_sends_a_key_so_its_retries_make_one_job(served):
    server, tokens = served
    with Client(server.url, tokens["operator"]) as api:
        before = len(api.list_jobs())
        a = api.submit_job(REFUSED, idempotency_key="client-key")
        b = api.submit_job(REFUSED, idempotency_key="client-key")
        c = api.submit_job(REFUSED)  # a fresh key per call
        assert a.job == b.job != c.job
        assert len(api.list_jobs()) == before + 2
        with pytest.raises(Conflict):
            api.submit_job(SQL, idempotency_key="client-key")


def test_keys_older_than_a_day_are_swept(tmp_path):
    from sandbox.api import idempotency

    with idempotency.claim(tmp_path, 7, "old-key", {"sql": "x"}) as slot:
        slot.job_id = 1
    folder = tmp_path / "run" / "idempotency"
    [kept] = list(folder.glob("*.json"))
    day_ago = time.time() - idempotency.TTL_S - 60
    os.utime(kept, (day_ago, day_ago))
    with idempotency.claim(tmp_path, 7, "new-key", {"sql": "y"}) as slot:
        slot.job_id = 2
    assert idempotency.sweep(folder) == 1 and not kept.exists()
    with idempotency.claim(tmp_path, 7, "old-key", {"sql": "other"}) as slot:
        assert slot.job_id is None  # an expired key is new again


def test_a_cursor_tells_nothing_of_another_operators_rows(served):
    """operator2 pages with the operator's job and product ids as cursors and reads its
    next links: each page is what its own rows give (an id it cannot read is only a
    number to compare with), and no next link names an id but its own."""
    server, tokens = served
    host_grant(server.home, "operator2", "persons")
    with Client(server.url, tokens["operator2"]) as api:
        job = api.wait_job(api.submit_job(SQL).job)
        assert job.state == "released", job
        api.submit_job(REFUSED)
    with Client(server.url, tokens["operator"]) as api:
        api.wait_job(api.submit_job(SQL).job)  # the operator's ids after operator2's too
    for path in PAGED:
        theirs = [r["id"] for r in _get(server, tokens["operator"], path).json()]
        mine = sorted(r["id"] for r in _get(server, tokens["operator2"], path).json())
        assert mine and not set(mine) & set(theirs)
        for after in theirs:
            page = _get(server, tokens["operator2"], path, after=after, limit=1)
            assert page.status_code == 200, page.text
            assert [r["id"] for r in page.json()] == [i for i in mine if i > after][:1]
        rows, _pages = _all_pages(server, tokens["operator2"], path, 1)
        assert [r["id"] for r in rows] == mine
        rows, _pages = _all_pages(server, tokens["operator"], path, 1)  # across operator2's
        assert [r["id"] for r in rows] == sorted(theirs)
        first = _get(server, tokens["operator2"], path, limit=1)
        expected = f"{path}?limit=1&after={mine[0]}" if len(mine) > 1 else None
        assert next_link(first.headers.get("link")) == expected


def test_a_key_another_principal_used_is_new_to_you(served):
    """The same Idempotency-Key from another operator, with another body: a job of its
    own (202, not the 409 that would say the key was taken), no replay, no foreign id."""
    server, tokens = served
    first = _post(server, tokens["operator"], REFUSED, key="shared-key")
    other = _post(server, tokens["operator2"], SQL, key="shared-key")
    assert other.status_code == 202, other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["job"] != first.json()["job"]
    again = _post(server, tokens["operator2"], SQL, key="shared-key")
    assert again.json()["job"] == other.json()["job"]  # its own replay, of its own job


def _list_routes(server) -> list[str]:
    """Every documented GET whose answer is a JSON list, path parameters set to 1."""
    import re

    spec = httpx.get(server.url + "/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        get = ops.get("get")
        schema = (get or {}).get("responses", {}).get("200", {}).get("content", {})
        if schema.get("application/json", {}).get("schema", {}).get("type") == "array":
            out.append(re.sub(r"\{[^}]+\}", "1", path))
    return sorted(out)


def test_every_documented_list_pages(served):
    """The contract of issue 26: each list takes ``limit`` and ``after``, answers at most
    ``limit`` rows and a ``Link`` to the next page while more follow, and its pages
    together are the whole list, each row once."""
    server, tokens = served
    routes = _list_routes(server)
    assert len(routes) >= 12, routes
    walked = several = 0
    for path in routes:
        for who in ("auditor", "authority", "operator", "provider"):
            whole = _get(server, tokens[who], path)
            if whole.status_code == 200:
                break
        if whole.status_code != 200:
            continue  # no role reads it here (a parent of id 1 that does not exist)
        walked += 1
        full = whole.json() if path != "/v1/ledger" else _get(
            server, tokens[who], path, limit=10_000).json()  # fmt: skip
        rows, pages = _all_pages(server, tokens[who], path, 1)
        key = sorted(json.dumps(r, sort_keys=True) for r in rows)
        assert key == sorted(json.dumps(r, sort_keys=True) for r in full), path
        assert pages == max(1, len(full)), path
        if len(full) > 1:
            assert 'rel="next"' in _get(server, tokens[who], path, limit=1).headers["link"]
            several += 1
    assert walked >= 10 and several >= 5, (walked, several)
