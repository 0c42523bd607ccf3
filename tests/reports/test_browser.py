"""report.html in a real browser: headless Chromium driven by chromedriver over W3C WebDriver.

Only the standard library speaks to chromedriver (``urllib``); no Selenium. The test needs the
Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and is skipped,
saying so, where they are missing. Checked on each page: no console errors, no network request
except the file itself and data: URLs, every figure decoded (naturalWidth > 0), and a
full-page screenshot is saved (also copied to /tmp for a person to look at).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reports.test_displays import (
    _loan,
    explain_text,
    loan_report,
    text_report,
    text_result,
)
from twopath.reports import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,1000"]
SCREENSHOT_COPY = {"sentiment": Path("/tmp/twopath_report_screenshot.png"),
                   "loan": Path("/tmp/twopath_report_screenshot_loan.png")}
HOSTILE = "Great <script>alert(1)</script> & fun"
BROWSER_PAGES = ("chrome://", "chrome-untrusted://", "about:")
PAGES = ("sentiment", "loan")

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"headless browser check needs {CHROMIUM} and {CHROMEDRIVER} "
           "(Debian: apt-get install -y chromium chromium-driver; .ci/run installs them)",
)


class WebDriver:
    """The few W3C WebDriver commands the checks need, over plain HTTP."""

    def __init__(self, port: int, profile: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.profile = profile
        self.session: str | None = None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null").get("value")
        except urllib.error.HTTPError as err:
            raise AssertionError(f"WebDriver {method} {path}: {err.code} {err.read()[:500]!r}") from None

    def command(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", body)

    def start(self) -> None:
        caps = {"browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={self.profile}"]},
                "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, timeout=120)
        self.session = value["sessionId"]
        # leave the start page (a chrome:// new-tab page in recent Chromium) before anything is checked
        self.command("POST", "/url", {"url": "about:blank"})

    def logs(self, kind: str) -> list[dict[str, Any]]:
        return self.command("POST", "/se/log", {"type": kind})

    def script(self, source: str) -> Any:
        return self.command("POST", "/execute/sync", {"script": source, "args": []})

    def full_page_png(self) -> bytes:
        size = self.script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];")
        clip = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        shot = self.command("POST", "/goog/cdp/execute", {"cmd": "Page.captureScreenshot", "params": {
            "format": "png", "captureBeyondViewport": True, "clip": clip}})
        return base64.b64decode(shot["data"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[WebDriver]:
    root = tmp_path_factory.mktemp("chromium")
    port = _free_port()
    log = (root / "chromedriver.log").open("w")
    proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    client = WebDriver(port, root / "profile")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.call("GET", "/status", timeout=2).get("ready"):
                    break
            except (OSError, AssertionError):
                pass
            assert proc.poll() is None, f"chromedriver exited: {(root / 'chromedriver.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "chromedriver did not become ready"
            time.sleep(0.1)
        client.start()
        yield client
    finally:
        if client.session:
            with contextlib.suppress(OSError, AssertionError):
                client.call("DELETE", f"/session/{client.session}", timeout=30)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _visit(driver: WebDriver, path: Path, shot: Path) -> dict[str, Any]:
    """Load one page; collect its logs, images and DOM facts; save a full-page screenshot."""
    driver.logs("browser")
    driver.logs("performance")  # drain what the start page logged
    url = path.resolve().as_uri()
    driver.command("POST", "/url", {"url": url})
    deadline = time.monotonic() + 30
    while not driver.script("return document.readyState === 'complete' && "
                            "[...document.images].every(i => i.complete);"):
        assert time.monotonic() < deadline, "page did not finish loading"
        time.sleep(0.1)
    facts = driver.script("""
        const doc = document.documentElement;
        return {
          title: document.title,
          images: [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth, height: i.naturalHeight,
                                                  src: i.getAttribute('src').slice(0, 30)})),
          scripts: document.getElementsByTagName('script').length,
          headings: [...document.querySelectorAll('h2, h3')].map(h => h.textContent),
          input: (document.querySelector('td') || {}).textContent,
          overflow: doc.scrollWidth - doc.clientWidth,
        };""")
    requests = []
    for entry in driver.logs("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        if message["params"].get("documentURL", "").startswith(BROWSER_PAGES):
            continue  # late loads of the browser's own start page, not of the report
        requests.append(message["params"]["request"]["url"])
    facts["url"] = url
    facts["requests"] = requests
    facts["console"] = [e for e in driver.logs("browser") if not e.get("message", "").startswith(BROWSER_PAGES)]
    png = driver.full_page_png()
    shot.write_bytes(png)
    facts["screenshot"] = shot
    return facts


@pytest.fixture(scope="module")
def pages(driver, tmp_path_factory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("reports")
    adapter, loan = _loan()
    reports = {"sentiment": text_report(text_result()), "loan": loan_report(adapter, loan),
               "hostile": text_report(explain_text(HOSTILE, example_id="hostile"))}
    out = {}
    for name, report in reports.items():
        paths = write_report(report, root / name, formats=("html",))
        out[name] = _visit(driver, paths["html"], root / f"{name}.png")
        out[name]["n_figures_in_html"] = paths["html"].read_text(encoding="utf-8").count("data:image/png;base64,")
        if name in SCREENSHOT_COPY:
            shutil.copyfile(out[name]["screenshot"], SCREENSHOT_COPY[name])
    return out


@pytest.mark.parametrize("name", PAGES)
def test_no_console_errors(pages, name):
    severe = [e for e in pages[name]["console"] if e.get("level") == "SEVERE"]
    assert severe == []


@pytest.mark.parametrize("name", PAGES)
def test_no_network_requests_beyond_the_file(pages, name):
    page = pages[name]
    assert page["url"] in page["requests"]  # the performance log did record the page itself
    others = [u for u in page["requests"] if u != page["url"] and not u.startswith("data:")]
    assert others == []


@pytest.mark.parametrize("name", PAGES)
def test_every_figure_loads(pages, name):
    page = pages[name]
    images = page["images"]
    assert len(images) == page["n_figures_in_html"] >= 8
    broken = [i["alt"] for i in images if i["width"] <= 0 or i["height"] <= 0]
    assert broken == []
    assert all(i["src"].startswith("data:image/png;base64,") for i in images)
    assert page["scripts"] == 0
    assert page["title"] == f"twopath report: {name}"


@pytest.mark.parametrize("name", PAGES)
def test_screenshot_saved(pages, name):
    shot = pages[name]["screenshot"]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT_COPY[name].read_bytes() == data


def test_hostile_text_shows_as_text(pages):
    page = pages["hostile"]
    assert page["scripts"] == 0  # nothing was parsed as markup, so nothing ran (an alert would block the driver)
    assert page["input"] == HOSTILE
    assert not [e for e in page["console"] if e.get("level") == "SEVERE"]
