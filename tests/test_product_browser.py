"""A product's ``report.html`` in a real browser (issue 26): headless Chromium opens the
file as an analyst does (from disk, double-clicked), and the report shows its text, the
Chinese county names and the chart, under its own Content-Security-Policy, with no
error in the browser's console.

The product is the one :mod:`tests.test_product_files` releases (firms in four Jining
counties, one county suppressed). Skipped, with the reason, when no Chromium,
chromedriver or selenium is found (see :mod:`tests.browser`).
"""

from __future__ import annotations

import pytest

from tests.browser import Page, skip_reason
from tests.test_product_files import (
    COUNTIES,
    released,  # noqa: F401  (the module's fixture)
)

REASON = skip_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]


def test_the_html_report_renders_from_disk_with_its_chart(released, tmp_path):  # noqa: F811
    product = released["plain"]
    page = Page("file://" + str(product.folder), tmp_path / "shots")
    try:
        page.open("/report.html")
        page.wait_for("h1", f"Product {product.product_id}")
        assert page.driver.title == f"Product {product.product_id}"
        text = page.text
        for county in COUNTIES:
            assert county in text, county
        assert "2 of 8 numbers are suppressed" in text
        assert "Rows are numbered from 1" in text
        drawn = page.driver.execute_script(
            "const i = document.querySelector('img');"
            "return i && i.complete ? [i.naturalWidth, i.naturalHeight, i.alt] : null;"
        )
        assert drawn and drawn[0] > 100 and drawn[1] > 100, drawn
        assert drawn[2] == "n by county"
        page.shot("product-report")
        logs = page.driver.get_log("browser")
        assert not [e for e in logs if e.get("level") == "SEVERE"], logs
        assert not page.csp_violations()
    finally:
        page.close()
