"""The console's model pages over HTTP (issue 22): the signed card made readable, scoring
services and exports proposed by the operator and decided by the authority, and what the
other roles are refused.

The app is the one ``sandbox serve`` runs (:func:`sandbox.api.app.create_app`), driven by
Starlette's test client, as tests/test_console.py drives it; the platform is a copy of a
home where the sound model of tests/model_helpers.py was trained once for the module.
Every figure the page shows is compared with :func:`sandbox.models.service.show`'s card.
"""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
from fastapi.testclient import TestClient

from policies.verification.common import ProductState
from sandbox.api.app import create_app
from sandbox.console.i18n import EN, ZH
from sandbox.core import principals
from sandbox.core.canonical import canonical
from sandbox.core.ledger import now_utc
from sandbox.core.principals import Role
from sandbox.models import export, service, services
from sandbox.models.export import ExportState
from sandbox.models.tables import models
from tests.console_helpers import sign_in
from tests.model_helpers import BANDS, SOUND, World, copied_world, trained_world

MODEL = SOUND["name"]
PAGE = f"/console/models/{MODEL}"
HX = {"HX-Request": "true"}
BANDS_TEXT = "\n".join(f"{b['grade']} {b['upto']}" for b in BANDS)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> World:
    """One platform with the sound model trained: each test works on a copy of its home."""
    return trained_world(tmp_path_factory.mktemp("console_models"))


@pytest.fixture
def world(trained, tmp_path) -> World:
    w = copied_world(trained, tmp_path)
    yield w
    w.platform.close()


@pytest.fixture
def app(world):
    return create_app(world.platform.home)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _text(page: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (its tags dropped, entities read)."""
    found = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no element #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def _service_state(w: World, name: str) -> str:
    return next(s["state"] for s in services.list_services(w.platform, w.city) if s["name"] == name)


def _propose(client, csrf: str, name: str, bands: str = BANDS_TEXT):
    """The operator's service form, sent as htmx sends it."""
    return client.post(
        f"{PAGE}/services",
        data={"csrf": csrf, "service_name": name, "bands": bands, "description": "grades"},
        headers=HX,
    )


def test_the_operator_reads_its_models_signed_card(client, world):
    w = world
    shown = service.show(w.platform, w.operator, MODEL)
    card = shown["card"]
    sign_in(client, w.tokens["bank"])
    listing = client.get("/console/models")
    assert listing.status_code == 200 and f'id="model-{MODEL}"' in listing.text
    [row] = service.list_models(w.platform, w.operator)
    assert str(row["auc"]) in listing.text.split(f'id="model-{MODEL}"')[1].split("</tr>")[0]
    page = client.get(PAGE)
    assert page.status_code == 200, page.text[:500]
    text = page.text
    assert _text(text, "card-verdict") == ZH["modelstate." + card["verdict"]]
    for key in ("auc", "ks", "brier", "calibration_error"):
        assert _text(text, f"eval-{key}") == str(card["evaluation"][key]), key
    findings = [*card["structure"], *card["attacks"]["findings"]]
    assert {f["rule"] for f in findings} >= {"leaf_entities", "attack_worst_case", "attack_lira"}
    for f in findings:
        assert _text(text, f"figure-{f['rule']}") == str(f["figure"]), f["rule"]
        assert _text(text, f"limit-{f['rule']}") == str(f["limit"]), f["rule"]
        verdict = ZH["check.passed"] if f["passed"] else ZH["check.failed"]
        assert _text(text, f"verdict-{f['rule']}") == verdict, f["rule"]
    for name, version in card["datasets"].items():
        assert _text(text, f"version-{name}") == f"v{version}"
    assert _text(text, "card-sha256") == hashlib.sha256(canonical(card)).hexdigest()
    assert _text(text, "card-signature") == shown["signature"]
    assert _text(text, "model-sha256") == card["model_sha256"]
    assert 'id="service-form"' in text and 'id="export-form"' in text  # its own model's acts
    assert not INLINE_SCRIPT.search(text) and ' style="' not in text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_an_altered_card_is_refused_not_shown(client, world):
    with world.platform.store.read() as conn:
        row = service.model_row(conn, MODEL)
    card = json.loads(row.card_json)
    card["evaluation"]["auc"] = 0.9999  # a better figure than the one signed
    with world.platform.store.transaction() as conn:
        conn.execute(
            models.update().where(models.c.name == MODEL).values(card_json=json.dumps(card))
        )
    sign_in(client, world.tokens["bank"])
    page = client.get(PAGE)
    assert page.status_code >= 400 and 'id="error"' in page.text, page.text[:300]
    assert "0.9999" not in page.text and 'id="card"' not in page.text


def test_another_operator_finds_no_such_model(client, world):
    with world.platform.store.transaction() as conn:
        _other, token = principals.insert(
            conn, "rival", Role.OPERATOR, "rival org", None, now_utc()
        )
    csrf = sign_in(client, token)
    page = client.get(PAGE)
    assert page.status_code == 404 and 'id="error"' in page.text
    assert 'id="card"' not in page.text and 'id="eval-auc"' not in page.text
    assert f'id="model-{MODEL}"' not in client.get("/console/models").text
    refused = _propose(client, csrf, "rival_grades")
    assert 'id="error"' in refused.text and not services.list_services(world.platform, world.city)


@pytest.mark.parametrize("who", ["lender", "provider"])
def test_consumers_and_providers_do_not_see_models(client, world, who):
    sign_in(client, world.tokens[who])
    page = client.get(PAGE)
    assert page.status_code == 404 and 'id="error"' in page.text
    assert 'id="card"' not in page.text and shown_figure(world) not in page.text
    listing = client.get("/console/models")
    assert listing.status_code >= 400 and 'id="error"' in listing.text
    assert MODEL not in listing.text
    assert 'id="nav-models"' not in listing.text


def shown_figure(w: World) -> str:
    """A figure only the card holds (the structural check's message of its smallest leaf)."""
    return service.show(w.platform, w.city, MODEL)["card"]["structure"][0]["message"]


def test_the_auditor_reads_the_card_and_decides_nothing(client, world):
    sign_in(client, world.tokens["auditor"])
    assert 'id="nav-models"' in client.get("/console/models").text
    page = client.get(PAGE)
    assert page.status_code == 200 and _text(page.text, "card-verdict")
    assert 'id="service-form"' not in page.text and 'id="export-form"' not in page.text
    assert "/approve" not in page.text


def test_the_authority_approves_a_service_the_operator_proposed(app, world):
    w = world
    with TestClient(app) as operator:
        csrf = sign_in(operator, w.tokens["bank"])
        answer = _propose(operator, csrf, "sme_grades")
        assert answer.status_code == 200 and 'id="done"' in answer.text, answer.text[:500]
        assert 'hx-swap-oob="true"' in answer.text and 'id="service-sme_grades"' in answer.text
        assert 'id="export-form"' in answer.text  # the export's part, swapped too, keeps its form
    assert _service_state(w, "sme_grades") == ProductState.DEFINED.value
    with TestClient(app) as city:
        csrf = sign_in(city, w.tokens["city"])
        models = city.get("/console/models")
        assert 'id="pending-service-sme_grades"' in models.text
        url = "/console/score-services/sme_grades/approve"
        for data in ({}, {"csrf": "not-the-token"}):
            refused = city.post(url, data={**data, "back": "/console/models"})
            assert refused.status_code == 403 and "csrf" in refused.text
        assert _service_state(w, "sme_grades") == ProductState.DEFINED.value
        done = city.post(url, data={"csrf": csrf, "back": "/console/models"})
        assert done.status_code == 200 and str(done.url).endswith("/console/models")
        assert 'id="pending-service-sme_grades"' not in done.text
    assert _service_state(w, "sme_grades") == ProductState.PUBLISHED.value
    with TestClient(app) as operator:
        sign_in(operator, w.tokens["bank"])
        page = operator.get(PAGE)
        assert _text(page.text, "service-state-sme_grades") == ZH["svcstate.published"]


def test_a_refused_service_is_shown_in_place_with_its_rule(client, world):
    csrf = sign_in(client, world.tokens["bank"])
    narrow = "a 0.0001\nb 1.0"  # a band of fewer entities than the threshold
    answer = _propose(client, csrf, "too_fine", narrow)
    assert answer.status_code == 200 and 'id="error"' in answer.text  # htmx swaps a 200
    assert _text(answer.text, "error-rule") == "band_size" and "Art. 15" in answer.text
    assert not services.list_services(world.platform, world.city)
    # without htmx: the model's page, the refusal above the form, the values kept
    page = client.post(
        f"{PAGE}/services", data={"csrf": csrf, "service_name": "too_fine", "bands": narrow}
    )
    assert page.status_code == 403 and _text(page.text, "error-rule") == "band_size"
    assert 'value="too_fine"' in page.text and "a 0.0001" in page.text
    unreadable = _propose(client, csrf, "odd", "a half\nb 1.0")
    assert "band line 1" in unreadable.text and 'id="error"' in unreadable.text
    # and a service that fits, without htmx: back to the model's page with a note
    filed = client.post(
        f"{PAGE}/services", data={"csrf": csrf, "service_name": "fits", "bands": BANDS_TEXT}
    )
    assert filed.status_code == 200 and str(filed.url).endswith(f"{PAGE}?done=proposed")
    assert _text(filed.text, "done") == ZH["done.proposed"]
    assert _text(filed.text, "service-state-fits") == ZH["svcstate.defined"]


def test_an_export_is_asked_for_and_the_authority_approves_it(app, world):
    w = world
    with TestClient(app) as operator:
        csrf = sign_in(operator, w.tokens["bank"])
        asked = operator.post(f"{PAGE}/export", data={"csrf": csrf}, headers=HX)
        assert 'id="done"' in asked.text and 'id="export-form"' not in asked.text
        again = operator.post(f"{PAGE}/export", data={"csrf": csrf}, headers=HX)
        assert 'id="error"' in again.text and "requested already" in html.unescape(again.text)
    [row] = export.list_exports(w.platform, w.city)
    assert row["state"] == ExportState.REQUESTED.value
    with TestClient(app) as city:
        csrf = sign_in(city, w.tokens["city"])
        assert f'id="pending-export-{MODEL}"' in city.get("/console/models").text
        done = city.post(f"{PAGE}/export/approve", data={"csrf": csrf, "back": PAGE})
        assert done.status_code == 200 and str(done.url).endswith(PAGE)
    [row] = export.list_exports(w.platform, w.city)
    assert row["state"] == ExportState.APPROVED.value and row["product"]
    assert _text(done.text, "export-product") == row["product"]


def test_an_authority_rejects_a_service_with_a_reason(app, world):
    w = world
    services.define(w.platform, w.operator, {"name": "sme_grades", "model": MODEL, "bands": BANDS})
    with TestClient(app) as city:
        csrf = sign_in(city, w.tokens["city"])
        url = "/console/score-services/sme_grades/reject"
        empty = city.post(url, data={"csrf": csrf, "reason": "  "})
        assert empty.status_code >= 400 and "reason" in empty.text
        assert _service_state(w, "sme_grades") == ProductState.DEFINED.value
        city.post(url, data={"csrf": csrf, "reason": "bands too coarse", "back": PAGE})
    assert _service_state(w, "sme_grades") == ProductState.REJECTED.value


def test_the_operator_cannot_approve_its_own_service(client, world):
    w = world
    services.define(w.platform, w.operator, {"name": "sme_grades", "model": MODEL, "bands": BANDS})
    csrf = sign_in(client, w.tokens["bank"])
    refused = client.post("/console/score-services/sme_grades/approve", data={"csrf": csrf})
    assert refused.status_code == 403 and 'id="error"' in refused.text
    assert _service_state(w, "sme_grades") == ProductState.DEFINED.value


def test_the_model_pages_words_are_in_both_languages(client, world):
    prefixes = {
        "modelstate.": ("passed", "refused", "disposed"),
        "svcstate.": [s.value for s in ProductState],
        "expstate.": [s.value for s in ExportState],
        "check.": ("passed", "failed"),
        "done.": ("proposed", "export_requested"),
    }
    for prefix, values in prefixes.items():
        for value in values:
            assert prefix + value in ZH and prefix + value in EN, prefix + value
    sign_in(client, world.tokens["bank"])
    assert ZH["models.structure"] in client.get(PAGE).text
    client.get(f"/console/lang/en?next={PAGE}")
    english = client.get(PAGE).text
    assert EN["models.structure"] in english and EN["nav.models"] in english
