"""The web console over HTTP (no browser): sessions, CSRF, headers, and what each role sees.

The app is the one ``sandbox serve`` runs (:func:`sandbox.api.app.create_app`, its
lifespan and job executor included), driven by Starlette's test client; the platform
is the real one of the ``platform`` fixture. The browser tests are in
tests/test_console_browser.py.
"""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from policies.classes import ColumnClass
from policies.disclosure import CellVerdict
from policies.workflow import (
    AgreementState,
    AirlockState,
    ApplicationState,
    EvaluationState,
    InspectionState,
    Vote,
)
from sandbox.api.app import create_app
from sandbox.console.i18n import EN, LANGUAGES, ZH
from sandbox.core.principals import Role, Status, rotate_token, set_status
from sandbox.run.jobstate import JobState
from sandbox.workflow import agreements
from tests.console_helpers import (
    SIGNIN,
    Scene,
    held_scene,
    post_sign_in,
    sign_in,
    submit_and_wait,
)
from tests.workflow_helpers import COUNTY, OTHER_COUNTY, entries, make_cast, verify_ledger

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)


@pytest.fixture
def cast(platform, make_principal, provider, pums_dataset):
    c = make_cast(platform, make_principal, provider)
    yield c
    verify_ledger(platform)


@pytest.fixture
def scene(cast) -> Scene:
    return held_scene(cast)


@pytest.fixture
def app(platform):
    return create_app(platform.home)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def new_client(app, base_url: str = "http://testserver") -> TestClient:
    return TestClient(app, base_url=base_url)


def _cookie_header(response, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert found, response.headers
    return found[0].lower()


# --- sessions, cookies, CSRF, headers --------------------------------------------------------


def test_sign_in_gives_a_strict_session_cookie(app, cast):
    with new_client(app) as c:
        answer = post_sign_in(c, cast.tokens["auditor"], follow=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/ledger"
    cookie = _cookie_header(answer, "sbx_session")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # plain http here; behind TLS it is Secure (below)
    assert cast.tokens["auditor"] not in answer.headers.get("set-cookie", "")
    with new_client(app, "https://testserver") as c:
        answer = post_sign_in(c, cast.tokens["auditor"], follow=False)
    assert "; secure" in _cookie_header(answer, "sbx_session")
    [start] = [
        e for e in entries(cast.platform, "principal:auditor") if e["action"] == "session.start"
    ][-1:]
    assert start["details"]["channel"] == "console"


def test_a_wrong_token_or_a_forged_sign_in_form_is_refused(client, cast):
    page = client.get("/console/login")
    signin = SIGNIN.search(page.text).group(1)
    wrong = client.post("/console/login", data={"token": "sbx_nope", "signin": signin})
    assert wrong.status_code == 401 and "sbx_session" not in wrong.cookies
    forged = client.post(
        "/console/login", data={"token": cast.tokens["auditor"], "signin": "forged"}
    )
    assert forged.status_code == 403 and "csrf" in forged.text
    assert "sbx_session" not in client.cookies


def test_a_post_without_its_csrf_token_is_refused(client, scene):
    csrf = sign_in(client, scene.cast.tokens["r1"])
    url = f"/console/reviews/{scene.job_id}/vote"
    vote = {"decision": "approve", "note": "cells checked"}
    for data in (vote, {**vote, "csrf": "not-the-token"}, {**vote, "csrf": ""}):
        refused = client.post(url, data=data)
        assert refused.status_code == 403, refused.text[:300]
        assert "csrf" in refused.text
    assert not [
        e for e in entries(scene.cast.platform, f"job:{scene.job_id}") if "vote" in e["action"]
    ]
    assert client.get(f"/console/reviews/{scene.job_id}").text.count("vote-form") == 1
    done = client.post(url, data={**vote, "csrf": csrf})
    assert done.status_code == 200 and "1 / 2" in done.text
    assert 'id="vote-form"' not in done.text  # voted once: no second form


def test_every_page_has_a_strict_content_security_policy_and_no_inline_script(client, scene):
    sign_in(client, scene.cast.tokens["city"])
    pages = [
        "/console/login",
        "/console/inbox",
        "/console/reviews",
        "/console/agreements",
        f"/console/reviews/{scene.job_id}",
        f"/console/agreements/{scene.agreement_id}",
        "/console/ledger",
        "/console/jobs",
        "/console/products",
        "/console/datasets",
    ]
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert not INLINE_SCRIPT.search(page.text), path
        assert not INLINE_HANDLER.search(page.text), path
        assert ' style="' not in page.text, path
    static = client.get("/console/static/htmx.min.js")
    assert static.status_code == 200 and b"htmx" in static.content[:2000]


def test_a_deactivated_principals_cookie_stops_working(client, scene):
    sign_in(client, scene.cast.tokens["r1"])
    assert client.get("/console/reviews").status_code == 200
    set_status(scene.cast.platform, None, "r1", Status.DEACTIVATED, "left the panel")
    gone = client.get("/console/reviews", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/console/login")
    set_status(scene.cast.platform, None, "r1", Status.ACTIVE, "back on the panel")
    again = client.get("/console/reviews", follow_redirects=False)
    assert again.status_code == 303, "a session refused once stays ended: sign in again"


def test_a_rotated_token_ends_its_sessions(client, scene):
    sign_in(client, scene.cast.tokens["r2"])
    rotate_token(scene.cast.platform, None, "r2")
    assert client.get("/console/reviews", follow_redirects=False).status_code == 303


def test_a_session_ends_after_api_console_session_hours(platform, cast, monkeypatch):
    import time

    monkeypatch.setenv("SANDBOX_API_CONSOLE_SESSION_HOURS", "0.0003")  # about a second
    with new_client(create_app(platform.home)) as c:
        answer = post_sign_in(c, cast.tokens["auditor"], follow=False)
        assert "max-age=1" in _cookie_header(answer, "sbx_session")
        time.sleep(1.5)
        c.cookies.set("sbx_session", answer.cookies["sbx_session"], path="/console")
        assert c.get("/console/ledger", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(app, cast):
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["auditor"])
        stolen = c.cookies.get("sbx_session")
        out = c.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
    with new_client(app) as thief:
        thief.cookies.set("sbx_session", stolen, path="/console")
        assert thief.get("/console/ledger", follow_redirects=False).status_code == 303


# --- the checker: what it votes on ------------------------------------------------------------


def test_the_checker_sees_every_cell_with_its_flags_and_reasons(client, scene):
    """The blind-vote test: it fails if a cell's value, a flagged cell's rules or reasons,
    the SQL or a dataset's version is missing from the checker's page."""
    sign_in(client, scene.cast.tokens["r1"])
    page = client.get(f"/console/reviews/{scene.job_id}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    rows, report = scene.held()
    assert report["cells"], "the scene must hold flagged cells"
    body = text.split('id="held-table"', 1)[1].split("</table>", 1)[0]
    trs = body.split("<tr>")[2:]  # the header row first
    assert len(trs) == len(rows)
    for tr, row in zip(trs, rows, strict=True):
        for value in row.values():
            assert ("∅" if value is None else str(value)) in tr
    flagged = text.split('id="flagged"', 1)[1].split("</table>", 1)[0]
    for cell in report["cells"]:
        for rule in cell["rules"]:
            assert f'<span class="flag">{rule}</span>' in flagged
        assert cell["summary"] in flagged
    sql = text.split('id="review-sql">', 1)[1].split("</pre>", 1)[0]
    assert sql.startswith("SELECT") and '"pums"."educ"' in sql and "GROUP BY" in sql
    datasets = text.split('id="review-datasets"', 1)[1].split("</table>", 1)[0]
    assert "<td>pums</td><td>v1</td>" in datasets
    assert "OpCo" not in text and ">operator<" not in text  # never the author or its org
    assert "review-state" in text and "vote-form" in text


def test_the_operator_never_reads_the_held_output(client, scene):
    sign_in(client, scene.cast.tokens["operator"])
    page = client.get(f"/console/reviews/{scene.job_id}")
    assert page.status_code == 404
    job = client.get(f"/console/jobs/{scene.job_id}")
    assert job.status_code == 200 and "data-rules" not in job.text and "flag" not in job.text
    _rows, report = scene.held()
    assert report["cells"][0]["summary"] not in html.unescape(job.text)


def test_votes_stay_sealed_until_both_are_in_and_the_product_reaches_the_operator(app, scene):
    held_rows, _report = scene.held()  # the released table has these rows (suppressions empty)
    with new_client(app) as r1:
        csrf = sign_in(r1, scene.cast.tokens["r1"])
        r1.post(
            f"/console/reviews/{scene.job_id}/vote",
            data={"decision": "approve", "note": "first note", "csrf": csrf},
        )
    with new_client(app) as r2:
        csrf = sign_in(r2, scene.cast.tokens["r2"])
        page = r2.get(f"/console/reviews/{scene.job_id}")
        assert "first note" not in page.text and "1 / 2" in page.text
        done = r2.post(
            f"/console/reviews/{scene.job_id}/vote",
            data={"decision": "approve", "note": "second note", "csrf": csrf},
        )
        assert "first note" in done.text and "second note" in done.text
        product = re.search(r'id="released">[^<]*?(prod-\d+)', done.text).group(1)
    with new_client(app) as op:
        sign_in(op, scene.cast.tokens["operator"])
        listing = op.get("/console/products")
        assert product in listing.text
        shown = op.get(f"/console/products/{product}")
        assert shown.status_code == 200 and 'id="verified"' in shown.text
        preview = shown.text.split('id="preview"', 1)[1].split("</table>", 1)[0]
        assert preview.count("<tr>") == len(held_rows) + 1  # the header, then every row
        header = re.findall(r"<th>([^<]*)</th>", preview)
        assert [c for c in header if not c.endswith("_flag")] == list(held_rows[0])
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text).group(1)
        op.post(f"/console/products/{product}/deliver", data={"consumer": "consumer", "csrf": csrf})
        download = op.get(f"/console/products/{product}/files/output.csv")
        assert download.status_code == 200 and download.content.lstrip(b"\xef\xbb\xbf").startswith(
            b'"educ"'
        )
    with new_client(app) as bank:
        csrf = sign_in(bank, scene.cast.tokens["consumer"])  # lands on its products
        rated = bank.post(
            f"/console/products/{product}/feedback",
            data={"quality": 4, "use": 5, "effect": 3, "comment": "useful", "csrf": csrf},
        )
        assert rated.status_code == 200 and 'id="rated"' in rated.text
    downloads = [
        e
        for e in entries(scene.cast.platform, f"product:{product}")
        if e["action"] == "product.download"
    ]
    assert downloads[-1]["details"]["channel"] == "console"


# --- operator, authority, auditor -----------------------------------------------------------


def test_a_refusal_is_shown_in_place_with_its_rule_and_the_sql_kept(client, cast):
    from tests.workflow_helpers import granted

    granted(cast)
    csrf = sign_in(client, cast.tokens["operator"])
    page = client.get("/console/jobs")
    assert 'id="schemas"' in page.text and "pums" in page.text and "income" in page.text
    answer = client.post("/console/jobs", data={"sql": "SELECT pid FROM pums", "csrf": csrf})
    assert answer.status_code == 422
    assert 'id="error-rule"' in answer.text and "SELECT pid FROM pums" in answer.text


def test_the_schema_panel_shows_the_columns_a_sql_job_may_read(client, cast):
    """Two grants on pums: a narrow one for SQL jobs, then a wider one for PSI only. The
    panel beside the editor shows the SQL grant's columns, the ones admission checks."""
    from sandbox.data.grants import add_grant

    until = "2099-12-31"
    add_grant(cast.platform, cast.city, "operator", "pums", until=until, columns=["educ", "sex"])
    add_grant(cast.platform, cast.city, "operator", "pums", until=until, job_kinds=["psi_match"])
    sign_in(client, cast.tokens["operator"])
    panel = client.get("/console/jobs").text.split('id="schemas"', 1)[1].split("</aside>", 1)[0]
    assert "<code>educ</code>" in panel and "<code>sex</code>" in panel
    assert "<code>income</code>" not in panel  # the PSI grant's columns are not the SQL job's


def test_the_operator_sees_its_privacy_budget_shares(client, scene):
    from datetime import UTC, datetime

    from sandbox.guard import dp_admin

    year = datetime.now(UTC).year
    dp_admin.set_total(scene.cast.platform, scene.cast.city, "person", year, 4.0)
    dp_admin.set_share(scene.cast.platform, scene.cast.city, scene.agreement_id, year, 1.5)
    sign_in(client, scene.cast.tokens["operator"])
    page = client.get("/console/jobs")
    budget = page.text.split('id="budget"', 1)[1].split("</table>", 1)[0]
    assert f"<td>{scene.agreement_id}</td><td>person</td><td>{year}</td><td>1.5</td>" in budget
    sign_in(client, scene.cast.tokens["rival"])
    assert 'id="budget"' not in client.get("/console/jobs").text


def test_a_suspension_by_the_authority_shows_as_a_refusal_on_the_submit_page(app, scene):
    with new_client(app) as city:
        csrf = sign_in(city, scene.cast.tokens["city"])
        page = city.get(f"/console/agreements/{scene.agreement_id}")
        assert 'id="suspend-form"' in page.text and "Art. 24" in page.text
        city.post(
            f"/console/agreements/{scene.agreement_id}/suspend",
            data={"reason": "audit finding", "csrf": csrf},
        )
    with scene.cast.platform.store.read() as conn:
        assert (
            agreements.agreement_dict(conn, scene.cast.city, scene.agreement_id)["status"]
            == "suspended"
        )
    with new_client(app) as op:
        csrf = sign_in(op, scene.cast.tokens["operator"])
        answer = op.post(
            "/console/jobs",
            data={"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", "csrf": csrf},
        )
        assert answer.status_code == 422 and 'id="error-rule"' in answer.text


def test_a_county_authority_cannot_suspend_another_countys_agreement(client, scene):
    csrf = sign_in(client, scene.cast.tokens["other_county"])
    answer = client.post(
        f"/console/agreements/{scene.agreement_id}/suspend",
        data={"reason": "not mine", "csrf": csrf},
    )
    assert answer.status_code in (403, 404)
    with scene.cast.platform.store.read() as conn:
        assert (
            agreements.agreement_dict(conn, scene.cast.city, scene.agreement_id)["status"]
            == "active"
        )


def test_a_provider_decides_a_data_request_from_its_inbox(app, cast):
    from sandbox.data.grants import list_grants
    from sandbox.workflow import requests
    from tests.workflow_helpers import passed_application, sign

    agreement_id = sign(cast, passed_application(cast))
    wanted = requests.request_data(
        cast.platform, cast.operator, agreement_id, "pums", purpose="income by education"
    )
    token = rotate_token(cast.platform, None, cast.provider.name)["token"]
    with new_client(app) as c:
        csrf = sign_in(c, token)
        page = c.get("/console/inbox")
        assert f'id="approve-{wanted}"' in page.text and "income by education" in page.text
        c.post(f"/console/requests/{wanted}/approve", data={"csrf": csrf})
        assert f'id="approve-{wanted}"' not in c.get("/console/inbox").text
    with cast.platform.store.read() as conn:
        assert [g["agreement"] for g in list_grants(conn, cast.provider)] == [agreement_id]


def test_the_classification_editor_names_the_first_problem_and_then_passes(app, cast):
    token = rotate_token(cast.platform, None, cast.provider.name)["token"]
    with new_client(app) as c:
        csrf = sign_in(c, token)
        page = c.get("/console/datasets/pums/classification")
        assert page.status_code == 200 and "entity_key: pid" in page.text
        text = html.unescape(page.text.split('id="classification"', 1)[1])
        text = text.split(">", 1)[1].split("</textarea>", 1)[0]
        check = "/console/datasets/pums/classification/check"
        typo = c.post(
            check, data={"text": text.replace("educ: dimension", "educ: dimensoin"), "csrf": csrf}
        )
        assert 'id="error"' in typo.text and "dimensoin" in html.unescape(typo.text)
        missing = c.post(
            check, data={"text": text.replace("  educ: dimension\n", ""), "csrf": csrf}
        )
        assert 'id="error"' in missing.text and "educ" in missing.text
        fixed = c.post(check, data={"text": text, "csrf": csrf})
        assert 'id="classification-ok"' in fixed.text
        assert c.post(check, data={"text": text}).status_code == 403  # no CSRF token


def _editor_text(page) -> str:
    text = html.unescape(page.text.split('id="classification"', 1)[1])
    return text.split(">", 1)[1].split("</textarea>", 1)[0]


def _versions(cast) -> list[int]:
    from sandbox.data.vault import get_version

    with cast.platform.store.read() as conn:
        latest = get_version(conn, cast.platform, "pums").version
    return list(range(1, latest + 1))


def test_a_provider_saves_a_corrected_classification_as_a_new_version(app, cast):
    """Saved through vault.register from the dataset's kept source; a bad classification,
    a wrong role and a missing CSRF token are refused in place and write nothing."""
    from sandbox.data.vault import get_version

    token = rotate_token(cast.platform, None, cast.provider.name)["token"]
    before = len(entries(cast.platform, "dataset:pums"))
    with new_client(app) as c:
        csrf = sign_in(c, token)
        page = c.get("/console/datasets/pums/classification")
        assert 'id="save"' in page.text and 'id="save-source"' in page.text
        assert "pums_1000_pid.csv" in html.unescape(page.text)  # the source it reads again
        text = _editor_text(page)
        save = "/console/datasets/pums/classification"
        typo = c.post(
            save, data={"text": text.replace("educ: dimension", "educ: dimensoin"), "csrf": csrf}
        )
        assert typo.status_code == 400 and 'id="error"' in typo.text, typo.text[:300]
        kept = _editor_text(typo)
        assert "dimensoin" in kept and "dimensoin" in html.unescape(
            typo.text.split('id="error"')[1]
        )
        hx = c.post(
            save,
            data={"text": text.replace("  pid: identifier\n", ""), "csrf": csrf},
            headers={"HX-Request": "true"},
        )
        assert hx.status_code == 200 and 'id="error"' in hx.text and "pid" in hx.text
        assert c.post(save, data={"text": text}).status_code == 403  # no CSRF token
        assert _versions(cast) == [1] and len(entries(cast.platform, "dataset:pums")) == before
        same = c.post(save, data={"text": text, "csrf": csrf})
        assert 'id="classification-unchanged"' in same.text and _versions(cast) == [1]
        fixed = text.replace("married: dimension", "married: quasi")
        saved = c.post(save, data={"text": fixed, "csrf": csrf}, follow_redirects=False)
        assert saved.status_code == 303
        assert saved.headers["location"] == "/console/datasets/pums?version=2"
        shown = c.get(saved.headers["location"])
        assert 'id="version-2"' in shown.text and 'id="version-1"' in shown.text
        assert "v2" in shown.text.split("</h1>", 1)[0]
    with cast.platform.store.read() as conn:
        new = get_version(conn, cast.platform, "pums")
        old = get_version(conn, cast.platform, "pums", 1)
    assert new.version == 2 and new.classification.columns["married"].value == "quasi"
    assert new.rows == old.rows
    registered = [
        e for e in entries(cast.platform, "dataset:pums") if e["action"] == "dataset.register"
    ]
    assert (
        registered[-1]["actor"] == cast.provider.name and registered[-1]["details"]["version"] == 2
    )
    with new_client(app) as c:  # the auditor reads the editor but saves nothing
        csrf = sign_in(c, cast.tokens["auditor"])
        page = c.get("/console/datasets/pums/classification")
        assert page.status_code == 200 and 'id="save"' not in page.text
        refused = c.post(
            "/console/datasets/pums/classification", data={"text": fixed, "csrf": csrf}
        )
        assert refused.status_code == 403 and 'id="error"' in refused.text
    assert _versions(cast) == [1, 2]


def _notices(cast) -> list[dict]:
    from sandbox.workflow.lists import list_page

    return list_page(cast.platform, cast.auditor, "notices")["items"]


NOTICE = {
    "title": "收入统计征集",
    "domain": "finance",
    "scenario": "regional income aggregates",
    "datasets": "pums",
    "conditions": "licensed",
    "deadline": "2099-12-31",
}


def test_an_uploaded_datasets_provider_sends_the_file_again_to_save(app, cast, pums_csv):
    """A dataset registered from an upload keeps no source: the editor asks for the data
    file, and the file with the corrected classification is registered as a new version
    (vault.register, as POST /v1/datasets/upload). No file, a file of an unknown kind and a
    bad classification are refused in place, naming the file as sent; the auditor cannot."""
    import shutil

    from sandbox.data.kept_sources import kept_uri
    from sandbox.data.vault import get_version, register

    work = cast.platform.work_dir()  # as the upload route keeps it: no source is kept
    copy = work / "upload.csv"
    shutil.copyfile(pums_csv, copy)
    with cast.platform.store.read() as conn:
        first = get_version(conn, cast.platform, "pums").classification
    register(cast.platform, cast.provider, "pums", str(copy), first)
    assert kept_uri(cast.platform, "pums") is None
    token = rotate_token(cast.platform, None, cast.provider.name)["token"]
    url = "/console/datasets/pums/classification/upload"
    with new_client(app) as c:
        csrf = sign_in(c, token)
        page = c.get("/console/datasets/pums/classification")
        assert 'id="save-upload"' in page.text and 'id="save"' not in page.text
        text = _editor_text(page)
        fixed = text.replace("married: dimension", "married: quasi")
        data = pums_csv.read_bytes()
        none = c.post(url, data={"text": fixed, "csrf": csrf})
        assert none.status_code == 400 and "data file" in html.unescape(none.text)
        kind = c.post(url, data={"text": fixed, "csrf": csrf},
                      files={"data": ("pums.txt", data, "text/plain")})  # fmt: skip
        assert kind.status_code == 400 and "must end in one of" in html.unescape(kind.text)
        bad = c.post(url, data={"text": fixed.replace("pid: identifier", "pid: idntifier"),
                                "csrf": csrf}, files={"data": ("pums.csv", data, "text/csv")})  # fmt: skip
        assert bad.status_code == 400 and "idntifier" in html.unescape(bad.text)
        assert str(cast.platform.home) not in html.unescape(bad.text)
        assert _versions(cast) == [1]  # the same file and classification: no new version
        saved = c.post(url, data={"text": fixed, "csrf": csrf},
                       files={"data": ("pums.csv", data, "text/csv")}, follow_redirects=False)  # fmt: skip
        assert saved.status_code == 303, saved.text[:300]
        assert saved.headers["location"] == "/console/datasets/pums?version=2"
    with cast.platform.store.read() as conn:
        assert (
            get_version(conn, cast.platform, "pums").classification.columns["married"].value
            == "quasi"
        )
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["auditor"])
        page = c.get("/console/datasets/pums/classification")
        assert 'id="save-upload"' not in page.text and 'id="save-needs"' not in page.text
        refused = c.post(url, data={"text": fixed, "csrf": csrf},
                         files={"data": ("pums.csv", data, "text/csv")})  # fmt: skip
        assert refused.status_code == 403
    assert _versions(cast) == [1, 2]


def test_an_authority_publishes_a_notice_from_the_form(app, cast):
    """notices.publish decides: a bad or past deadline is shown above the form with the
    values kept, another role and another county are refused by its rule, a POST
    without the CSRF token is refused; none of them publishes anything."""
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["county"])
        page = c.get("/console/notices")
        assert page.status_code == 200 and 'id="notice-form"' in page.text
        assert 'value="pums"' in page.text  # the datasets to choose from
        for deadline, named in (("2026-02-30", "deadline '2026-02-30'"), ("2020-01-01", "future")):
            bad = c.post("/console/notices", data={**NOTICE, "deadline": deadline, "csrf": csrf})
            assert bad.status_code == 400 and 'id="error"' in bad.text, bad.text[:300]
            assert named in html.unescape(bad.text)
            assert 'value="收入统计征集"' in bad.text and f'value="{deadline}"' in bad.text
        other = c.post(
            "/console/notices", data={**NOTICE, "jurisdiction": OTHER_COUNTY, "csrf": csrf}
        )
        assert other.status_code == 403 and "Art. 10" in other.text
        assert c.post("/console/notices", data=NOTICE).status_code == 403  # no CSRF token
        assert _notices(cast) == []
        done = c.post("/console/notices", data={**NOTICE, "csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303
        listed = c.get(done.headers["location"])
        [notice] = _notices(cast)
        assert f'id="notice-{notice["id"]}" class="new"' in listed.text
    assert notice["jurisdiction"] == COUNTY and notice["datasets"] == ["pums"]
    assert notice["deadline"].startswith("2099-12-31T16:00")  # the day's end in Beijing
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["operator"])
        assert 'id="notice-form"' not in c.get("/console/notices").text  # reads, publishes not
        refused = c.post("/console/notices", data={**NOTICE, "csrf": csrf})
        assert refused.status_code == 403 and 'id="error"' in refused.text
        assert "Art. 10" in refused.text
    assert len(_notices(cast)) == 1


def _evaluations(cast) -> list[dict]:
    from sandbox.workflow.lists import list_page

    return list_page(cast.platform, cast.auditor, "evaluations")["items"]


def test_an_authority_records_an_evaluation_from_the_agreement_page(app, cast):
    from tests.workflow_helpers import granted

    agreement_id, _grant = granted(cast)
    url = f"/console/agreements/{agreement_id}/evaluate"
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["operator"])
        refused = c.post(url, data={"result": "pass", "notes": "fine", "csrf": csrf})
        assert refused.status_code == 403 and 'id="error"' in refused.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["other_county"])
        refused = c.post(url, data={"result": "pass", "notes": "fine", "csrf": csrf})
        assert refused.status_code in (403, 404) and 'id="error"' in refused.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["city"])
        page = c.get(f"/console/agreements/{agreement_id}")
        assert 'id="evaluate-form"' in page.text
        assert c.post(url, data={"result": "pass", "notes": "fine"}).status_code == 403
        for deadline, named in (("", "deadline"), ("next week", "'next week'")):
            bad = c.post(
                url,
                data={
                    "result": "fail",
                    "notes": "logs missing",
                    "deadline": deadline,
                    "csrf": csrf,
                },
            )
            assert bad.status_code == 400, bad.text[:300]
            box = html.unescape(bad.text.split('id="evaluations"', 1)[1])
            assert 'id="error"' in box and named in box and "logs missing" in box
        assert _evaluations(cast) == []
        passed = c.post(url, data={"result": "pass", "notes": "all in order", "csrf": csrf})
        assert passed.status_code == 200 and "all in order" in passed.text
        failed = c.post(
            url,
            data={
                "result": "fail",
                "notes": "logs missing",
                "deadline": "2099-01-31",
                "csrf": csrf,
            },
        )
        assert 'id="restore-form"' in failed.text  # suspended (Art. 24)
    assert [e["status"] for e in _evaluations(cast)] == ["failed", "passed"]
    with cast.platform.store.read() as conn:
        shown = agreements.agreement_dict(conn, cast.city, agreement_id)
    assert shown["status"] == "suspended" and shown["rectify_deadline"].startswith("2099-01-31")


def agreement_status(cast, agreement_id: int) -> str:
    with cast.platform.store.read() as conn:
        return agreements.agreement_dict(conn, cast.city, agreement_id)["status"]


def test_an_authority_accepts_a_rectification_from_the_agreement_page(app, cast):
    """After a failed evaluation the page offers the rectification; supervision.rectify
    decides: another county's authority and a form without its token are refused, empty
    notes are refused, and the accepted rectification restores the agreement (Art. 24)."""
    from sandbox.workflow import supervision
    from tests.workflow_helpers import granted

    agreement_id, _grant = granted(cast)
    supervision.evaluate(cast.platform, cast.city, agreement_id, passed=False,
                         notes="logs missing", deadline="2099-01-31")  # fmt: skip
    url = f"/console/agreements/{agreement_id}/rectify"
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["other_county"])
        refused = c.post(url, data={"notes": "checked", "csrf": csrf})
        assert refused.status_code in (403, 404) and 'id="error"' in refused.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["city"])
        page = c.get(f"/console/agreements/{agreement_id}")
        assert 'id="rectify-form"' in page.text and 'id="restore-form"' in page.text
        assert c.post(url, data={"notes": "checked"}).status_code == 403  # no CSRF token
        empty = c.post(url, data={"notes": "  ", "csrf": csrf})
        assert empty.status_code == 400 and 'id="error"' in empty.text
        assert agreement_status(cast, agreement_id) == "suspended"
        done = c.post(url, data={"notes": "logs restored and checked", "csrf": csrf})
        assert done.status_code == 200 and 'id="suspend-form"' in done.text
        assert 'id="rectify-form"' not in done.text
    assert agreement_status(cast, agreement_id) == "active"
    assert [e["status"] for e in _evaluations(cast)] == ["rectified"]


def test_reviewers_score_an_application_from_its_page(app, cast):
    """reviews.score decides, as for the CLI: a reviewer of the applicant's organisation
    is refused by the separation-of-duties rule, a score out of range and a second score
    are refused in place, a POST without the CSRF token is refused; two scores decide."""
    from sandbox.workflow import reviews
    from tests.workflow_helpers import apply, publish

    application_id = apply(cast, publish(cast))
    reviews.appoint(cast.platform, cast.city, application_id, ["r1", "r2"])
    url = f"/console/applications/{application_id}/score"
    marks = {"capability": "80", "scenario": "75", "security": "90", "comment": "sound plan"}
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["r3_same_org"])
        refused = c.post(url, data={**marks, "csrf": csrf})
        assert refused.status_code == 403 and 'id="error"' in refused.text
        assert "own_organisation" in refused.text and "Art. 12" in refused.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["operator"])
        assert c.post(url, data={**marks, "csrf": csrf}).status_code == 403
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["r1"])
        listing = c.get("/console/applications")
        assert f'id="application-{application_id}"' in listing.text
        page = c.get(f"/console/applications/{application_id}")
        assert 'id="score-form"' in page.text and "ISO 27001" in page.text
        bad = c.post(url, data={**marks, "security": "101", "csrf": csrf})
        assert bad.status_code == 400 and 'id="error"' in bad.text and "Art. 12" in bad.text
        assert 'value="101"' in bad.text  # the values typed are kept
        assert c.post(url, data=marks).status_code == 403  # no CSRF token
        assert [
            r["status"] for r in reviews.reviews_of(cast.platform, cast.auditor, application_id)
        ] == ["appointed", "appointed"]
        done = c.post(url, data={**marks, "csrf": csrf})
        assert done.status_code == 200 and 'id="my-scores"' in done.text
        assert 'id="score-form"' not in done.text
        again = c.post(url, data={**marks, "csrf": csrf})
        assert again.status_code in (403, 409) and 'id="error"' in again.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["r2"])
        c.post(url, data={**marks, "csrf": csrf})
    with new_client(app) as c:
        sign_in(c, cast.tokens["city"])
        page = c.get(f"/console/applications/{application_id}")
        assert 'id="scores"' in page.text and "sound plan" not in page.text
        assert 'id="application-state"' in page.text and "s-passed" in page.text
    scored = reviews.reviews_of(cast.platform, cast.auditor, application_id)
    assert [r["scores"]["security"] for r in scored] == [90, 90]


def test_the_lineage_of_a_product_links_its_job_grants_versions_votes_and_deliveries(app, scene):
    from sandbox.data.vault import get_version
    from sandbox.workflow import airlock, deliveries

    cast, job = scene.cast, scene.job_id
    airlock.vote(cast.platform, cast.r1, job, Vote.APPROVE, "cells checked")
    done = airlock.vote(cast.platform, cast.r2, job, Vote.APPROVE, "agreed")
    product = done["product"]
    deliveries.deliver(cast.platform, cast.operator, product, "consumer", "for the credit desk")
    with cast.platform.store.read() as conn:
        pums = get_version(conn, cast.platform, "pums")
    url = f"/console/lineage/{product}"
    for name in ("auditor", "city"):
        with new_client(app) as c:
            sign_in(c, cast.tokens[name])
            found = c.get(f"/console/lineage?product={product}", follow_redirects=False)
            assert found.status_code == 303 and found.headers["location"] == url
            page = c.get(url)
            assert page.status_code == 200, page.text[:300]
            text = html.unescape(page.text)
            sql = text.split('id="lineage-sql">', 1)[1].split("</pre>", 1)[0]
            assert sql.startswith("SELECT") and "GROUP BY" in sql
            assert 'id="lineage-operator">operator<' in text
            versions = text.split('id="lineage-versions"', 1)[1].split("</table>", 1)[0]
            assert f"<td>v{pums.version}</td><td><code>{pums.sha256}</code></td>" in versions
            assert f"<td>{pums.rows}</td><td>—</td>" in versions  # no county: the whole set
            assert f'href="/console/agreements/{scene.agreement_id}"' in text
            assert f'href="/console/jobs/{job}"' in text
            votes = text.split('id="lineage-votes"', 1)[1].split("</ul>", 1)[0]
            assert "cells checked" in votes and "agreed" in votes
            assert "for the credit desk" in text.split('id="lineage-deliveries"', 1)[1]
            ledger = text.split('id="lineage-ledger"', 1)[1]
            for action in ("job.queued", "job.withheld", "product.deliver"):
                assert f"<code>{action}" in ledger, action
    with new_client(app) as c:
        sign_in(c, cast.tokens["auditor"])
        odd = c.get("/console/lineage?product=../../v1/me", follow_redirects=False)
        assert odd.status_code == 404 and 'id="error"' in odd.text
    for name in ("operator", "consumer", "r1"):
        with new_client(app) as c:
            sign_in(c, cast.tokens[name])
            refused = c.get(url)
            assert refused.status_code == 403 and 'id="error"' in refused.text, name
            assert "cells checked" not in refused.text
    with new_client(app) as c:
        sign_in(c, cast.tokens["other_county"])
        refused = c.get(url)
        assert refused.status_code == 403 and 'id="error"' in refused.text
        assert "GROUP BY" not in refused.text


def test_the_lineage_names_the_county_of_a_countys_slice(app, cast):
    from sandbox.run.execution import JobService
    from tests.workflow_helpers import granted

    granted(cast, authority=cast.county)  # pums with its county column, a county agreement
    service = JobService(cast.platform, spare=False)
    try:
        outcome = service.submit(
            cast.operator, {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
        )
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, outcome.reason
    url = f"/console/lineage/{outcome.product_id}"
    with new_client(app) as c:
        sign_in(c, cast.tokens["county"])
        page = c.get(url)
        assert page.status_code == 200, page.text[:300]
        versions = page.text.split('id="lineage-versions"', 1)[1].split("</table>", 1)[0]
        assert f"<td>{COUNTY}</td>" in versions
    with new_client(app) as c:
        sign_in(c, cast.tokens["other_county"])
        assert c.get(url).status_code == 403


def test_an_inspection_from_findings_to_rectification_to_closing(app, cast):
    """inspections.inspect, rectify and close decide: an authority out of its reach and a
    consumer are refused, tasks without a deadline and a bad deadline are shown in place
    with the values kept; the operator answers; only the inspector closes."""
    from sandbox.workflow.inspections import inspections_of
    from tests.workflow_helpers import granted

    granted(cast, authority=cast.county)  # the operator holds an agreement of COUNTY
    record = {"operator": "operator", "findings": "访问日志缺失\nno training record",
              "tasks": "补齐访问日志", "deadline": "2099-03-31"}  # fmt: skip
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["other_county"])
        refused = c.post("/console/inspections", data={**record, "csrf": csrf})
        assert refused.status_code == 403 and 'id="error"' in refused.text
        assert "Art. 22" in refused.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["consumer"])
        refused = c.post("/console/inspections", data={**record, "csrf": csrf})
        assert refused.status_code == 403 and 'id="error"' in refused.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["county"])
        assert c.post("/console/inspections", data=record).status_code == 403  # no CSRF
        for deadline, named in (("", "--deadline"), ("31.03.2099", "'31.03.2099'")):
            bad = c.post(
                "/console/inspections", data={**record, "deadline": deadline, "csrf": csrf}
            )
            assert bad.status_code == 400 and named in html.unescape(bad.text), bad.text[:300]
            assert "补齐访问日志" in bad.text  # the values typed are kept
        assert inspections_of(cast.platform, cast.auditor) == []
        done = c.post("/console/inspections", data={**record, "csrf": csrf})
        assert done.status_code == 200
        [inspection] = inspections_of(cast.platform, cast.auditor)
        number = inspection["id"]
        assert inspection["findings"] == ["访问日志缺失", "no training record"]
        assert f'id="close-{number}"' in done.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["operator"])
        page = c.get("/console/inspections")
        assert "补齐访问日志" in page.text and f'id="rectify-{number}"' in page.text
        assert f'id="close-{number}"' not in page.text
        closing = c.post(f"/console/inspections/{number}/close", data={"notes": "x", "csrf": csrf})
        assert closing.status_code in (403, 404) and 'id="error"' in closing.text
        answered = c.post(
            f"/console/inspections/{number}/rectify", data={"notes": "日志已补齐", "csrf": csrf}
        )
        assert answered.status_code == 200 and "日志已补齐" in answered.text
    with new_client(app) as c:
        csrf = sign_in(c, cast.tokens["county"])
        c.post(f"/console/inspections/{number}/close", data={"notes": "核实无误", "csrf": csrf})
    [closed] = inspections_of(cast.platform, cast.auditor)
    assert closed["status"] == "closed" and [h["by"] for h in closed["history"]] == [
        "operator",
        "county",
    ]


def test_the_auditor_reads_the_ledger_with_a_chart_and_verifies_it(client, scene):
    sign_in(client, scene.cast.tokens["auditor"])
    page = client.get("/console/ledger?action=job.withheld")
    assert page.status_code == 200 and f"job:{scene.job_id}" in page.text
    timeline = page.text.split('class="list small timeline"', 1)[1]
    assert "<code>job.withheld</code>" in timeline  # the filter reached the query:
    assert "<code>session.start</code>" not in timeline  # no other action is listed
    assert 'name="action" value="job.withheld"' in page.text
    assert client.get("/console/ledger?actor=" + "a" * 201).status_code == 422  # too long
    for query, named in (
        ("since=2026-02-30", "since '2026-02-30'"),
        ("until=12/01/2026", "until '12/01/2026'"),
        ("since=2026-12-05&until=2026-12-01", "'since' on or before the 'until'"),
        ("since=2024-01-01&until=2026-01-01", "longer than 366 days"),
    ):
        refused = client.get(f"/console/ledger?{query}")
        assert refused.status_code == 400 and named in html.unescape(refused.text), query
    chart = client.get("/console/ledger/chart.svg")
    assert chart.headers["content-type"] == "image/svg+xml"
    assert "unsafe-inline" in chart.headers["content-security-policy"]
    assert b"<svg" in chart.content and b"<script" not in chart.content
    verified = client.get("/console/ledger/verify")
    assert 'id="verify-ok"' in verified.text


def test_a_form_that_does_not_fit_names_the_field(client, scene):
    csrf = sign_in(client, scene.cast.tokens["r1"])
    answer = client.post(
        f"/console/reviews/{scene.job_id}/vote",
        data={"decision": "maybe", "note": "x" * 2001, "csrf": csrf},
    )
    assert answer.status_code == 422 and 'id="error"' in answer.text
    message = html.unescape(answer.text.split('class="message">', 1)[1].split("</p>", 1)[0])
    assert "decision:" in message and "note:" in message and "2000" in message
    assert "x" * 50 not in message  # the value typed is not echoed


def test_a_role_without_the_right_is_refused_with_the_platforms_rule(client, cast):
    sign_in(client, cast.tokens["consumer"])  # its first page is its inbox
    page = client.get("/console/ledger")
    assert page.status_code == 403 and "auditor" in page.text


# --- words -------------------------------------------------------------------------------------


def test_both_languages_have_every_key_the_templates_name():
    from pathlib import Path

    import sandbox.console as console

    assert set(ZH) == set(EN)
    folder = Path(console.__file__).parent
    texts = [p.read_text(encoding="utf-8") for p in (folder / "templates").glob("*.html")]
    texts += [p.read_text(encoding="utf-8") for p in folder.glob("*.py")]
    key = re.compile(r'\bt\(\s*["\']([a-z_][a-z_.0-9]*)["\']')
    named = {k for text in texts for k in key.findall(text)}
    fixed = {k for k in named if not k.endswith(".")}  # "vote." ~ v: the enums, below
    assert fixed and not fixed - set(ZH)
    for prefix, values in {
        "jobstate.": JobState,
        "airlock.": AirlockState,
        "agrstate.": AgreementState,
        "evalstate.": EvaluationState,
        "inspstate.": InspectionState,
        "appstate.": ApplicationState,
        "vote.": Vote,
        "role.": Role,
        "verdict.": CellVerdict,
        "outverdict.": ("released", "released_with_suppressions"),
        "class.": ColumnClass,
        "lang.": LANGUAGES,
    }.items():
        assert prefix in named
        for value in values:
            assert prefix + str(getattr(value, "value", value)) in ZH, (prefix, value)


def test_chinese_first_with_an_english_switch(client, cast):
    sign_in(client, cast.tokens["auditor"])
    assert "审计账本" in client.get("/console/ledger").text
    client.get("/console/lang/en?next=/console/ledger")
    assert "Ledger" in client.get("/console/ledger").text
    away = client.get("/console/lang/zh?next=https://elsewhere.example/", follow_redirects=False)
    assert away.headers["location"] == "/console/"


# --- what an attacker tries ------------------------------------------------------------------

HOSTILE = "<img src=x onerror=alert(1)>"


def _where(location: str) -> tuple[str, str]:
    """The host and path a browser would go to for this Location (tabs and newlines
    dropped and backslashes read as slashes, as WHATWG URL parsing does for http)."""
    from urllib.parse import unquote, urljoin, urlsplit

    cleaned = re.sub(r"[\t\n\r]", "", unquote(location)).replace("\\", "/")
    went = urlsplit(urljoin("http://testserver/console/login", cleaned))
    return went.netloc, went.path


OFF_SITE = [
    "https://elsewhere.example/",
    "//elsewhere.example/console/",
    "/\\elsewhere.example",
    "\\\\elsewhere.example",
    "/console/\\..\\..\\\\elsewhere.example",
    "/\telsewhere.example/console/",
    "https:elsewhere.example",
    "/console/../..//elsewhere.example",
    "javascript:alert(1)//console/",
    "/console/%2e%2e/%2e%2e//elsewhere.example",
    "/console/./../v1/principals",
]


def test_no_next_parameter_sends_the_browser_off_the_console(app, cast):
    """Open redirects: the language switch's and the sign-in's ``next`` stay on this host."""
    with new_client(app) as c:
        for target in OFF_SITE:
            away = c.get("/console/lang/en", params={"next": target}, follow_redirects=False)
            assert away.status_code == 303, target
            host, path = _where(away.headers["location"])
            assert host == "testserver" and path.startswith("/console/"), target
            page = c.get("/console/login", params={"next": target})
            signin = SIGNIN.search(page.text).group(1)
            answer = c.post(
                "/console/login",
                data={"token": cast.tokens["auditor"], "signin": signin, "next": target},
                follow_redirects=False,
            )
            assert answer.status_code == 303, target
            host, path = _where(answer.headers["location"])
            assert host == "testserver" and path.startswith("/console/"), target


def test_a_copied_cookie_stays_refused_after_the_principal_is_reactivated(app, scene):
    """Deactivation ends the session for good: a copy of the cookie taken before it does
    not come back to life when the principal is reactivated (with the same token)."""
    with new_client(app) as c:
        sign_in(c, scene.cast.tokens["r1"])
        stolen = c.cookies.get("sbx_session")
    set_status(scene.cast.platform, None, "r1", Status.DEACTIVATED, "left the panel")
    set_status(scene.cast.platform, None, "r1", Status.ACTIVE, "back on the panel")
    with new_client(app) as thief:
        thief.cookies.set("sbx_session", stolen, path="/console")
        assert thief.get("/console/reviews", follow_redirects=False).status_code == 303
    with new_client(app) as c:  # the token itself works again: a new sign-in is fine
        sign_in(c, scene.cast.tokens["r1"])
        assert c.get("/console/reviews").status_code == 200


def test_sign_out_and_the_language_switch_need_no_trust_in_another_site(client, cast):
    """Sign-out is a POST that needs the session's CSRF token (a forged one leaves the
    session open); the language switch is a link that only sets the language."""
    csrf = sign_in(client, cast.tokens["auditor"])
    for data in ({}, {"csrf": "forged"}):
        refused = client.post("/console/logout", data=data, follow_redirects=False)
        assert refused.status_code == 403 and "csrf" in refused.text
        assert client.get("/console/ledger").status_code == 200
    switched = client.get("/console/lang/en?next=/console/ledger", follow_redirects=False)
    assert [h for h in switched.headers.get_list("set-cookie") if "sbx_session" in h] == []
    assert client.get("/console/ledger").status_code == 200
    out = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/console/ledger", follow_redirects=False).status_code == 303


def test_checkers_not_appointed_and_the_authors_colleague_learn_nothing(app, scene):
    """A reviewer of the author's organisation and an unappointed one ask for the held
    output, its verdict and the lists: nothing of it, nor the author, appears."""
    job = scene.job_id
    for name in ("r3_same_org", "outsider"):
        token = scene.cast.tokens.get(name)
        if token is None:
            from sandbox.core.principals import add_principal

            _outsider, token = add_principal(
                scene.cast.platform, name, Role.REVIEWER, org="Elsewhere University"
            )
        with new_client(app) as c:
            csrf = sign_in(c, token)
            for path in (f"/console/reviews/{job}", f"/console/reviews/{job}/verdict"):
                page = c.get(path)
                assert page.status_code == 404, (name, path, page.text[:300])
                assert "held-table" not in page.text and "OpCo" not in page.text
            for path in ("/console/reviews", "/console/inbox"):
                listing = c.get(path)
                assert listing.status_code == 200
                assert f"/console/reviews/{job}" not in listing.text, (name, path)
            voted = c.post(
                f"/console/reviews/{job}/vote",
                data={"decision": "approve", "note": "let it out", "csrf": csrf},
            )
            assert voted.status_code == 403, (name, voted.text[:300])
    cast_votes = [e for e in entries(scene.cast.platform, f"job:{job}") if "vote" in e["action"]]
    assert cast_votes == []


def test_the_first_vote_stays_sealed_on_every_page_until_the_second(app, scene):
    """After r1 votes, r2, the authority and the auditor look everywhere the review is
    shown: r1's vote and note stay hidden until r2 has voted."""
    job = scene.job_id
    secret = "first-checkers-sealed-note"
    with new_client(app) as r1:
        csrf = sign_in(r1, scene.cast.tokens["r1"])
        r1.post(
            f"/console/reviews/{job}/vote",
            data={"decision": "reject", "note": secret, "csrf": csrf},
        )
    for name in ("r2", "city", "auditor", "operator"):
        with new_client(app) as c:
            sign_in(c, scene.cast.tokens[name])
            for path in (
                f"/console/reviews/{job}",
                f"/console/reviews/{job}/verdict",
                "/console/reviews",
                "/console/inbox",
                f"/console/jobs/{job}",
                f"/console/ledger?subject=job:{job}",
            ):
                text = html.unescape(c.get(path).text)
                assert secret not in text, (name, path)
                if path == f"/console/reviews/{job}":  # only the checker still to vote
                    assert ('id="vote-form"' in text) == (name == "r2"), name
                assert "r1</strong>" not in text, (name, path)


def test_another_countys_authority_reads_nothing_of_this_county(app, scene):
    """The other county's authority asks for this county's agreement, held output, jobs
    and ledger by their ids: refused or absent, never shown."""
    job, agreement_id = scene.job_id, scene.agreement_id
    with new_client(app) as c:
        sign_in(c, scene.cast.tokens["other_county"])
        for path in (
            f"/console/agreements/{agreement_id}",
            f"/console/reviews/{job}",
            f"/console/reviews/{job}/verdict",
            f"/console/jobs/{job}",
        ):
            page = c.get(path)
            assert page.status_code in (403, 404), (path, page.status_code)
            assert "OpCo" not in page.text and "held-table" not in page.text, path
            assert 'id="error"' in page.text, path  # the refusal is shown, by its rule
        for path in ("/console/reviews", "/console/inbox", "/console/agreements", "/console/jobs"):
            listing = c.get(path)
            assert listing.status_code == 200, path
            assert f"/console/reviews/{job}" not in listing.text, path
            assert f"/console/agreements/{agreement_id}" not in listing.text, path
            assert f"/console/jobs/{job}" not in listing.text, path
        ledger = c.get(f"/console/ledger?subject=job:{job}")
        assert ledger.status_code == 200
        timeline = ledger.text.split('class="list small timeline"', 1)[1]
        assert f"<code>job:{job}</code>" not in timeline


def test_html_in_sql_notes_and_column_names_is_shown_as_text(app, scene):
    """SQL, a column alias, a vote's note and a suspension's reason carrying markup come
    back escaped, under the same strict CSP."""
    with new_client(app) as op:
        csrf = sign_in(op, scene.cast.tokens["operator"])
        sql = f"SELECT pid FROM pums -- </textarea>{HOSTILE}"
        page = op.post("/console/jobs", data={"sql": sql, "csrf": csrf})
        assert page.status_code == 422 and 'id="error-rule"' in page.text
        kept = page.text.split('id="sql"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
        assert "<" not in kept and html.unescape(kept) == sql  # kept in the editor, as text
    aliased = submit_and_wait(
        scene.cast, f'SELECT sex AS "{HOSTILE}", COUNT(*) AS n FROM pums GROUP BY sex'
    )
    with new_client(app) as r1:
        csrf = sign_in(r1, scene.cast.tokens["r1"])
        pages = [r1.get(f"/console/reviews/{scene.job_id}")]
        held = r1.get(f"/console/reviews/{aliased}")
        assert held.status_code == 200 and html.escape(HOSTILE) in held.text  # the column
        pages.append(held)
        done = r1.post(
            f"/console/reviews/{scene.job_id}/vote",
            data={"decision": "reject", "note": HOSTILE, "csrf": csrf},
        )
    with new_client(app) as r2:
        csrf = sign_in(r2, scene.cast.tokens["r2"])
        done = r2.post(
            f"/console/reviews/{scene.job_id}/vote",
            data={"decision": "reject", "note": "no", "csrf": csrf},
        )
        assert "&lt;img src=x" in done.text
        pages.append(done)
    with new_client(app) as city:
        csrf = sign_in(city, scene.cast.tokens["city"])
        city.post(
            f"/console/agreements/{scene.agreement_id}/suspend",
            data={"reason": HOSTILE, "csrf": csrf},
        )
        pages.append(city.get(f"/console/agreements/{scene.agreement_id}"))
    for page in pages:
        assert HOSTILE not in page.text and "<img" not in page.text, page.url
        assert "unsafe-inline" not in page.headers["content-security-policy"]
