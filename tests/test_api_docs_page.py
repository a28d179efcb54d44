"""The API's documentation page, ``/docs`` (issue 26): Swagger UI over ``/openapi.json``,
every file from the platform itself, under a strict Content-Security-Policy.

Over real HTTP: the page names only files the server serves, each of which answers
with its content; nothing points outside the host. In headless Chromium (skipped with
the reason when none is found): the page lists the API's operations, raises no CSP
violation, and a reader who authorizes with a token and tries ``GET /v1/me`` sees the
answer for that principal.
"""

from __future__ import annotations

import re

import httpx
import pytest
from api_server import ApiServer, make_home

from tests.browser import Page, skip_reason


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("docs-page") / "home"
    tokens = make_home(home)
    with ApiServer(home, log=home.parent / "server.log") as server:
        yield server, tokens


def test_the_page_loads_only_the_platforms_own_files(served):
    server, _tokens = served
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
        assert "<script>" not in page.text  # no inline script: the CSP would block it
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), page.text
        files = re.findall(r"""(?:src|href)="(/[^"]+)\"""", page.text)
        assert {f.rsplit("/", 1)[1] for f in files} == {
            "swagger-ui.css",
            "swagger-ui-bundle.js",
            "docs.js",
        }
        for path in files:
            answer = http.get(path)
            assert answer.status_code == 200 and len(answer.content) > 100, path
        assert "SwaggerUIBundle" in http.get("/docs/static/docs.js").text
        assert http.get("/docs/static/../app.py").status_code == 404
        assert http.get("/docs/static/no-such-file.js").status_code == 404
        assert "/v1/jobs" in http.get("/openapi.json").json()["paths"]


@pytest.mark.browser
@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_a_reader_sees_the_operations_and_tries_one_with_a_token(served, tmp_path):
    server, tokens = served
    page = Page(server.url, tmp_path / "screenshots")
    try:
        page.open("/docs")
        page.wait_for(".opblock-summary-path")
        paths = {e.text for e in page.driver.find_elements("css selector", ".opblock-summary-path")}
        assert {"/v1/jobs", "/v1/me", "/v1/ledger"} <= {p.replace("\u200b", "") for p in paths}
        page.click(".btn.authorize")
        page.wait_for(".auth-container input")
        page.type(".auth-container input", tokens["auditor"])
        page.click(".auth-btn-wrapper .authorize")
        page.click(".btn-done")
        page.click("#operations-system-me_v1_me_get .opblock-summary")
        page.wait_for("#operations-system-me_v1_me_get .try-out__btn")
        page.click("#operations-system-me_v1_me_get .try-out__btn")
        page.click("#operations-system-me_v1_me_get .execute")
        live = "#operations-system-me_v1_me_get .live-responses-table"
        page.wait_for(live + " tr.response .response-col_status", "200")
        body = page.el(live + " tr.response .microlight").text
        assert '"name": "auditor"' in body
        page.shot("api-docs")
        assert not page.csp_violations(), page.csp_violations()
    finally:
        page.close()
