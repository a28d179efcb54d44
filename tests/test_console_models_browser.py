"""The model pages in a real browser: headless Chromium on a real ``sandbox serve`` whose
home holds the sound model of tests/model_helpers.py.

The operator follows the menu to its model, reads the card's verdict and each check's,
and proposes a scoring service through the htmx form (the answer swapped into the page,
the services' list swapped out of band), under the strict CSP: the test fails on any
Content-Security-Policy violation the browser reports. Skipped, with the reason, when no
Chromium, chromedriver or selenium is found (:mod:`tests.browser`).
"""

from __future__ import annotations

import pytest

from sandbox.console.i18n import ZH
from sandbox.models import service, services
from tests.api_server import ApiServer
from tests.browser import Page, skip_reason
from tests.model_helpers import SOUND, World, copied_world, trained_world

REASON = skip_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]


@pytest.fixture
def world(tmp_path) -> World:
    w = copied_world(trained_world(tmp_path / "trained"), tmp_path / "copy")
    yield w
    w.platform.close()


@pytest.fixture
def page(world, tmp_path):
    with ApiServer(world.platform.home, log=tmp_path / "server.log") as server:
        opened = Page(server.url, tmp_path / "screenshots")
        try:
            yield opened
            violations = opened.csp_violations()
        finally:
            opened.close()
        assert not violations, violations


def test_the_operator_reads_its_models_verdict_and_proposes_a_service(world, page):
    card = service.show(world.platform, world.operator, SOUND["name"])["card"]
    page.sign_in(world.tokens["bank"])
    page.click("#nav-models")
    page.click(f"#model-link-{SOUND['name']}")
    verdict = page.wait_for("#card-verdict").text
    assert verdict == ZH["modelstate." + card["verdict"]] == ZH["modelstate.passed"]
    for finding in [*card["structure"], *card["attacks"]["findings"]]:
        assert page.el(f"#figure-{finding['rule']}").text == str(finding["figure"])
        assert page.el(f"#verdict-{finding['rule']}").text == ZH["check.passed"]
    page.shot("operator-model")

    page.type("#service-name", "sme_grades")
    page.type("#bands", "a 0.05\nb 0.15\nc 0.35\nd 1.0")
    page.click("#service-propose")
    page.wait_for("#done")  # htmx swapped the answer in, no page load
    page.wait_for("#service-state-sme_grades", ZH["svcstate.defined"])  # and the list, oob
    assert page.has("#card-verdict")  # still the model's page
    listed = services.list_services(world.platform, world.city)
    assert [(s["name"], s["state"]) for s in listed] == [("sme_grades", "defined")]
