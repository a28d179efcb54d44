"""The population budgets over HTTP, against a real ``sandbox serve`` on 127.0.0.1.

The agreements are made in-process through the real workflow (:func:`world`); the
budget, the shares, the jobs and the reads then go through the server, which is
restarted once: the balance and the refusal survive it. Every error is the envelope.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from api_server import ApiServer, check_envelope

from tests.test_cli import REPO, _env
from tests.test_dp_budget_jobs import COUNT, YEAR, World, world

ACCOUNTING = "pure epsilon-DP, basic composition, delta 0"


@pytest.fixture
def w(platform, make_principal, provider) -> World:
    return world(platform, make_principal, provider)


def call(server: ApiServer, w: World, who: str, method: str, path: str, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {w.cast.tokens[who]}"}
    response = httpx.request(method, server.url + path, headers=headers, timeout=60, **kw)
    check_envelope(response)
    return response


def error_of(response: httpx.Response, status: int, code: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error
    return error


def wait_job(server: ApiServer, w: World, who: str, job_id: int) -> dict:
    for _ in range(12):
        job = call(server, w, who, "GET", f"/v1/jobs/{job_id}?wait=10").json()
        if job["state"] not in ("queued", "running", "checking"):
            return job
    raise AssertionError(f"job {job_id} did not end")


def test_budgets_shares_and_spends_over_http_survive_a_restart(w):
    server = ApiServer(w.platform.home).start()
    try:
        made = call(
            server, w, "city", "POST", "/v1/dp/budgets",
            json={"population": "person", "year": YEAR, "epsilon": 1.0},
        )  # fmt: skip
        assert made.status_code == 200, made.text
        assert made.json()["accounting"] == ACCOUNTING and made.json()["epsilon"] == 1.0
        share = {"agreement": w.a, "year": YEAR, "epsilon": 0.5}
        assert call(server, w, "city", "POST", "/v1/dp/shares", json=share).status_code == 200

        # bad input: 4xx envelopes naming the field and the article, nothing written
        over = call(
            server,
            w,
            "city",
            "POST",
            "/v1/dp/shares",
            json={**share, "agreement": w.b, "epsilon": 0.75},
        )
        error = error_of(over, 403, "refused", "epsilon:", "never exceed the year's total")
        assert error["rule"] == "dp_shares_over_total" and error["article"] == "Art. 15"
        for body, status, code, field in (
            ({**share, "epsilon": -1}, 400, "bad_input", "epsilon:"),
            ({**share, "agreement": 999}, 404, "not_found", "agreement:"),
            ({**share, "year": 1850}, 400, "bad_input", "year:"),
        ):
            answer = call(server, w, "city", "POST", "/v1/dp/shares", json=body)
            assert error_of(answer, status, code, field)["article"] == "Art. 15"
        schema = call(server, w, "city", "POST", "/v1/dp/shares", json={**share, "epsilon": "x"})
        error_of(schema, 422, "invalid_request", "epsilon")
        denied = call(
            server, w, "operator", "POST", "/v1/dp/budgets", json={"year": YEAR, "epsilon": 9}
        )
        error_of(denied, 403, "forbidden", "only an authority")
        shares = call(server, w, "auditor", "GET", f"/v1/dp/shares?year={YEAR}").json()
        assert [(s["agreement"], s["epsilon"]) for s in shares["shares"]] == [(w.a, 0.5)]
        assert (
            call(
                server, w, "city", "POST", "/v1/dp/shares", json={**share, "agreement": w.b}
            ).status_code
            == 200
        )

        sql = {"sql": COUNT.format(table="pums")}
        job = call(server, w, "operator", "POST", "/v1/jobs", json=sql).json()
        released = wait_job(server, w, "operator", job["job"])
        assert released["state"] == "released", released
        assert released["report"]["dp"]["accounting"] == ACCOUNTING
    finally:
        server.stop()

    server = ApiServer(w.platform.home).start()  # a restart keeps the balance
    try:
        refused = call(server, w, "operator", "POST", "/v1/jobs", json=sql).json()
        assert refused["state"] == "refused", refused
        assert refused["reason"]["rule"] == "dp_budget_exhausted"
        assert "has 0 of its share of 0.5 left" in refused["reason"]["message"]
        spends = call(server, w, "city", "GET", "/v1/dp/spends").json()
        assert spends == {
            "accounting": ACCOUNTING,
            "agreements": [
                {
                    "agreement": w.a,
                    "population": "person",
                    "year": YEAR,
                    "spent": 0.5,
                    "jobs": [job["job"]],
                }
            ],
            "total": 0.5,
        }
        mine = call(server, w, "rival", "GET", "/v1/dp/shares").json()["shares"]
        assert [s["agreement"] for s in mine] == [w.b]  # an operator: its own agreements
        hidden = call(server, w, "rival", "GET", f"/v1/dp/spends?agreement={w.a}")
        error_of(hidden, 404, "not_found", "agreement:")
        budgets = call(server, w, "auditor", "GET", "/v1/dp/budgets").json()["budgets"]
        assert [(b["epsilon"], b["shared"], b["spent"], b["remaining"]) for b in budgets] == [
            (1.0, 1.0, 0.5, 0.5)
        ]
        error_of(call(server, w, "operator", "GET", "/v1/dp/budgets"), 403, "forbidden")

        # the command line with --server: the same answers, the same one-line errors
        def cli(who: str, *args: str) -> subprocess.CompletedProcess:
            command = [sys.executable, "-m", "sandbox", "--server", server.url, "dp", *args]
            env = _env(w.platform.home.parent)
            return subprocess.run(
                [*command, "--as", w.cast.tokens[who]],
                capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
            )  # fmt: skip

        assert json.loads(cli("city", "spent", "--json").stdout) == spends
        over = cli(
            "city", "share", "--agreement", str(w.b), "--epsilon", "0.75", "--year", str(YEAR)
        )
        assert over.returncode == 3 and over.stdout == "", over.stderr
        assert over.stderr.startswith("error [refused]: epsilon:") and "(Art. 15)" in over.stderr
    finally:
        server.stop()
