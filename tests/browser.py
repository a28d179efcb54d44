"""Headless Chromium for the console's browser tests (Debian's ``chromium`` and
``chromium-driver``, driven by selenium).

:func:`find_browser` says where the browser and its driver are, or why the browser
tests cannot run; :func:`skip_reason` is that reason for ``pytest.skip`` and the
report header. :class:`Page` wraps one browser window: sign in, fill, click, wait,
screenshot into the test's folder, and the console's messages (a CSP violation shows
there). ``UPDATE_CONSOLE_SCREENSHOTS=1`` also writes the README's small screenshots
to docs/console/.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver (as root), and pip install selenium"
DOCS_SHOTS = ROOT / "docs" / "console"
UPDATE_SHOTS = os.environ.get("UPDATE_CONSOLE_SCREENSHOTS") == "1"
WAIT_S = 20


@dataclass(frozen=True)
class Found:
    browser: str | None
    driver: str | None
    problem: str | None


def _first(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (
            name if os.path.isabs(name) and os.access(name, os.X_OK) else None
        )
        if path:
            return path
    return None


def find_browser() -> Found:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return Found(None, None, f"selenium is not installed ({INSTALL})")
    browser, driver = _first(BROWSERS), _first(DRIVERS)
    if browser is None or driver is None:
        missing = "chromium" if browser is None else "chromedriver"
        return Found(browser, driver, f"no {missing} found on PATH ({INSTALL})")
    return Found(browser, driver, None)


def skip_reason() -> str | None:
    found = find_browser()
    return None if found.problem is None else f"console browser tests skipped: {found.problem}"


class Page:
    """One headless Chromium window on the console at ``base``."""

    def __init__(self, base: str, shots: Path, *, width: int = 1280, height: int = 860):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        found = find_browser()
        assert found.browser and found.driver, found.problem
        options = webdriver.ChromeOptions()
        options.binary_location = found.browser
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--window-size={width},{height}",
            "--lang=zh-CN",
            "--force-device-scale-factor=1",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(found.driver), options=options)
        self.driver.set_page_load_timeout(WAIT_S)
        self.base = base.rstrip("/")
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    # --- acting -------------------------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def el(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        from selenium.webdriver.common.by import By

        return bool(self.driver.find_elements(By.CSS_SELECTOR, css))

    def type(self, css: str, text: str) -> None:
        box = self.el(css)
        box.clear()
        box.send_keys(text)

    def click(self, css: str) -> None:
        self.el(css).click()

    def wait_for(self, css: str, text: str | None = None, timeout: float = WAIT_S):
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        # A form's answer replaces the page while the wait polls it: a node read from the
        # page before ("does not belong to the document", stale) is a miss, polled again.
        wait = WebDriverWait(self.driver, timeout, ignored_exceptions=(WebDriverException,))
        if text is None:
            return wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        return wait.until(lambda _driver: self.el(css))

    def sign_in(self, token: str) -> None:
        self.open("/console/login")
        self.type("#token", token)
        self.click("#login")
        self.wait_for("#me")

    def sign_out(self) -> None:
        self.click("#logout")
        self.wait_for("#login-form")

    @property
    def text(self) -> str:
        return self.el("body").text

    # --- evidence -----------------------------------------------------------------------

    def shot(self, name: str, *, readme: bool = False) -> Path:
        """A screenshot of the whole page into the test's folder (and, when asked for,
        a small copy for the README under docs/console/)."""
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        width = self.driver.get_window_size()["width"]
        self.driver.set_window_size(width, min(max(int(height) + 120, 600), 4000))
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if readme and UPDATE_SHOTS:
            small(path, DOCS_SHOTS / f"{name}.png")
        return path

    def csp_violations(self) -> list[str]:
        logs = self.driver.get_log("browser")
        return [e["message"] for e in logs if "Content Security Policy" in e.get("message", "")]

    def close(self) -> None:
        self.driver.quit()


def small(source: Path, target: Path, width: int = 960, height_cap: int = 1100) -> None:
    """A README-sized copy: scaled to ``width``, cut at ``height_cap``, 128 colours."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        ratio = width / image.width
        scaled = image.convert("RGB").resize((width, int(image.height * ratio)), Image.LANCZOS)
        cropped = scaled.crop((0, 0, width, min(scaled.height, height_cap)))
        cropped.quantize(colors=128).save(target, optimize=True)
    target.parent.chmod(0o755)  # the platform's umask made them private
    target.chmod(0o644)
