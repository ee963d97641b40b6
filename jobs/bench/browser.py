"""A local page opened in Debian's headless Chromium, driven by selenium.

Through Debian's matching chromedriver (no browser download): what the page logged, what it
requested, what it shows, how long it took to load. The report's tests and its bench section
use it.

`chromium` and `chromium-driver` come from .ci/system-packages, selenium from the dev lock; a
machine without them skips the tests that need a browser, with the reason (`missing`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Where a page may load from without leaving the file: itself, and inline data.
LOCAL_SCHEMES = ("file:", "data:", "about:")


def missing() -> str | None:
    """Why no page can be opened here, or None."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return "no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium (the dev lock has it: make install)"
    return None


@dataclass
class Page:
    console: list[dict] = field(default_factory=list)  # the browser log's entries
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    texts: dict[str, str] = field(default_factory=dict)  # element id -> its text
    rows: dict[str, list[str]] = field(default_factory=dict)  # table id -> each row's data-*
    ids: set[str] = field(default_factory=set)  # every element id on the page
    load_ms: float = 0.0  # navigation start to the load event's end

    @property
    def errors(self) -> list[dict]:
        return [e for e in self.console if e.get("level") == "SEVERE"]

    @property
    def remote(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]


def open_page(path: Path, screenshot: Path | None = None) -> Page:
    """Load a local HTML file in headless Chromium and read back what it did and shows."""
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        driver.get(path.resolve().as_uri())
        page = Page()
        page.console = driver.get_log("browser")
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                page.requests.append(message["params"]["request"]["url"])
        page.load_ms = float(
            driver.execute_script(
                "var t = performance.getEntriesByType('navigation')[0];"
                "return t ? t.loadEventEnd - t.startTime : -1;"
            )
        )
        for element in driver.find_elements(By.CSS_SELECTOR, "[id]"):
            ident = element.get_attribute("id")
            page.ids.add(ident)
            if element.tag_name in ("p", "pre", "table"):
                page.texts[ident] = element.text
        for table in driver.find_elements(By.CSS_SELECTOR, "table[id]"):
            page.rows[table.get_attribute("id")] = [
                row.get_attribute("data-trial") or row.get_attribute("data-run") or ""
                for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
            ]
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
        return page
    finally:
        driver.quit()


def blank(png: Path) -> bool:
    """Whether a screenshot shows (almost) nothing: under 1% of its pixels differ from its
    most common shade (the background)."""
    from PIL import Image

    with Image.open(png) as image:
        histogram = image.convert("L").histogram()
    background = max(range(256), key=histogram.__getitem__)
    total = sum(histogram)
    near = sum(histogram[max(0, background - 16) : background + 17])
    return total - near < 0.01 * total
