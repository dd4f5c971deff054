"""The pages in a real browser: Debian's Chromium, headless, driven by selenium (chromium-driver),
against the real daemon in the simulated world during and after a blackout (time-scaled as
test_detection.py).

Chromium and its driver run inside the vantage's namespace (the daemon listens on its
loopback; the namespace has no route but to 198.18.0.0/15, and the world's packet audit checks
that nothing else left). Every selenium call is made from one thread that entered that
namespace, so that the driver's own HTTP connection is made there too.

Screenshots are kept under the test's tmp path (or $PAGES_ARTIFACTS): status-up, status-down,
event-open, event-closed (light and dark), event-phone. UPDATE_DOCS_SCREENSHOT=1 copies the
closed event's page to docs/event-page.png (the README's picture).

Without chromium, chromium-driver or selenium the test is skipped, unless REQUIRE_TOOLS=1 (or
REQUIRE_NETNS=1), where it fails: CI installs them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import pytest

from monitor.detect.model import parse_time
from monitor.sim import netns, scenarios
from monitor.sim.daemonproc import DaemonProcess
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SCALE = float(os.environ.get("DETECTION_TIME_SCALE", "0.2"))
INTERVAL = scenarios.DEFAULT_INTERVAL * SCALE
REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "tests" / "assets" / "axe.min.js"
CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
        if p and os.access(p, os.X_OK)
    ),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver")
REFRESH = 15  # monitor.pages.render.REFRESH_SECONDS
T = TypeVar("T")


def browser_unavailable() -> str | None:
    if CHROMIUM is None:
        return "chromium is not installed (apt install chromium chromium-driver)"
    if CHROMEDRIVER is None:
        return "chromedriver is not installed (apt install chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser_ok() -> None:
    reason = browser_unavailable()
    if reason:
        if os.environ.get("REQUIRE_TOOLS") == "1" or os.environ.get("REQUIRE_NETNS") == "1":
            pytest.fail(f"REQUIRE_TOOLS/REQUIRE_NETNS set but {reason}", pytrace=False)
        pytest.skip(reason)


class Browser:
    """Headless Chromium in a namespace; `do(fn)` runs fn(driver) on the namespace's thread."""

    def __init__(self, ns: str, downloads: Path, profile: Path) -> None:
        self.pool = ThreadPoolExecutor(1, initializer=netns._setns, initargs=(ns,))
        self.downloads = downloads
        self.driver: Any = self.pool.submit(self._start, profile).result(60)

    def _start(self, profile: Path) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        o = webdriver.ChromeOptions()
        assert CHROMIUM is not None and CHROMEDRIVER is not None
        o.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",  # root in a namespace
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            f"--user-data-dir={profile}",
            # Nothing but the page: no proxies, no Google services, no background fetches.
            "--no-proxy-server",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--disable-domain-reliability",
            "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
        ):
            o.add_argument(arg)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        o.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(self.downloads),
                "download.prompt_for_download": False,
            },
        )
        # An explicit driver path: selenium never tries to fetch one.
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
        d.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(self.downloads)},
        )
        return d

    def do(self, fn: Callable[[Any], T], timeout: float = 120) -> T:
        return self.pool.submit(fn, self.driver).result(timeout)

    def get(self, url: str) -> None:
        self.do(lambda d: d.get(url))

    def html(self) -> str:
        return str(self.do(lambda d: d.page_source))

    def console_errors(self) -> list[dict[str, Any]]:
        logs = self.do(lambda d: d.get_log("browser"))
        return [e for e in logs if e.get("level") == "SEVERE"]

    def wait(self, js: str, within: float, what: str) -> None:
        """Until the script (an expression) is true in the page."""
        deadline = time.time() + within
        while not self.do(lambda d: d.execute_script(f"return !!({js});")):
            if time.time() > deadline:
                raise AssertionError(f"{what}: not within {within:.0f}s")
            time.sleep(0.5)

    def screenshot(self, path: Path, width: int = 1280) -> None:
        def shot(d: Any) -> None:
            d.set_window_size(width, 1000)
            h = d.execute_script("return document.documentElement.scrollHeight")
            d.set_window_size(width, min(int(h) + 40, 6000))
            d.save_screenshot(str(path))

        self.do(shot)

    def dark(self, on: bool) -> None:
        features = [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]
        self.do(lambda d: d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features}))

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's violations of impact serious or critical on the current page."""
        src = AXE.read_text(encoding="utf-8")

        def run(d: Any) -> list[dict[str, Any]]:
            d.set_script_timeout(60)
            d.execute_script(src)
            found: list[dict[str, Any]] = d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "axe.run(document, {resultTypes: ['violations']})"
                ".then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: "
                "'critical', help: String(e), nodes: []}]));"
            )
            return found

        found = self.do(run)
        return [
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "nodes": [n.get("target") for n in v["nodes"]][:5],
            }
            for v in found
            if v.get("impact") in ("serious", "critical")
        ]

    def close(self) -> None:
        try:
            self.do(lambda d: d.quit(), timeout=30)
        finally:
            self.pool.shutdown(wait=False)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("PAGES_ARTIFACTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser(browser_ok: None, world: World, tmp_path: Path, artifacts: Path) -> Iterator[Browser]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    b = Browser(world.vantages[0], downloads, tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()
        print(f"--- screenshots in {artifacts} ---")


def entity_state(name: str) -> str:
    """JS: the state badge of an entity's card on the status page."""
    return (
        "Array.from(document.querySelectorAll('section.entity')).filter("
        f"s => s.querySelector('.name').textContent === {json.dumps(name)})"
        ".map(s => s.querySelector('h2 .badge').textContent)[0]"
    )


def wait_file(path: Path, within: float = 20) -> bytes:
    deadline = time.time() + within
    while not path.exists() or path.stat().st_size == 0:
        if time.time() > deadline:
            raise AssertionError(f"{path.name} not downloaded within {within:.0f}s")
        time.sleep(0.2)
    time.sleep(0.3)  # Chrome renames the .crdownload when done: read the finished file
    return path.read_bytes()


def times_on_page(page: str) -> list[float]:
    return [parse_time(t) for t in re.findall(r'<time datetime="([^"]+)"', page)]


def check_down_run(page: str, svg_id: str, start: float, end: float) -> None:
    """The first chart whose id starts with `svg_id` draws the state down from about `start`
    to about `end`: within its step (and a scaled interval) of them."""
    svg = re.search(rf'<svg[^>]*id="{svg_id}[^"]*"[^>]*data-step="(\d+)".*?</svg>', page, re.S)
    assert svg is not None, f"no chart {svg_id}"
    step = int(svg.group(1))
    runs = re.findall(r'data-state="down" data-start="([^"]+)" data-end="([^"]+)"', svg.group(0))
    assert runs, f"no down run in {svg_id}"
    a, b = parse_time(runs[0][0]), parse_time(runs[-1][1])
    slack = step + INTERVAL
    assert start - slack <= a <= start + INTERVAL, (runs, step, start)
    assert end - INTERVAL <= b <= end + slack, (runs, step, end)


def test_pages_in_chromium_during_and_after_a_blackout(
    world: World, daemon: Callable[..., DaemonProcess], browser: Browser, artifacts: Path
) -> None:
    """In Chromium: the status page turns the entity down then up by itself (its refresh),
    the event page tells the event with the right start and end, the chart exports as SVG and
    PNG, no console error on any page, axe finds nothing serious or critical (light and dark);
    the 24 h timeline draws the down run at the event's time when history is kept."""
    d = daemon(**scenarios.scaled_config(SCALE))
    r = scenarios.Runner(world, d, SCALE)
    r.warm()
    base = d.url
    browser.get(base + "/")
    browser.wait(f"{entity_state(r.entity)} === 'up'", 10, "status page: entity up")
    browser.screenshot(artifacts / "status-up.png")

    cut = world.blackout()
    o = scenarios.Outcome("pages", SCALE)
    r.measure_open(o, cut.at)
    # No reload: the page's own refresh brings the change.
    browser.wait(f"{entity_state(r.entity)} === 'down'", REFRESH + 10, "status page: entity down")
    page = browser.html()
    (ev_open,) = r.events()
    assert f'href="/outages/{ev_open["id"]}"' in page, "the open event is linked"
    browser.screenshot(artifacts / "status-down.png")
    assert browser.axe() == [], "status page during the blackout"

    browser.get(f"{base}/outages/{ev_open['id']}")
    page = browser.html()
    assert "Still open after" in page
    browser.screenshot(artifacts / "event-open.png")

    browser.get(base + "/")
    r.hold(2)
    rep = world.repair_blackout()
    r.measure_close(o, rep.at)
    browser.wait(f"{entity_state(r.entity)} === 'up'", REFRESH + 10, "status page: entity up again")
    assert browser.console_errors() == []

    # The event closes merge_gap after its end (scaled): then the page tells it whole.
    r.wait(
        lambda m: not any(p["kind"] == "recovered" for p in r.events()[0]["signals"]["phases"]),
        120 * SCALE + 10,
        "event closed",
    )
    (ev,) = r.events()
    assert ev["end"] is not None
    start, end = parse_time(ev["start"]), parse_time(ev["end"])
    assert abs(start - cut.at) <= INTERVAL and abs(end - rep.at) <= INTERVAL

    history_kept = d.get(f"/api/v1/history?entity={r.entity}&since={ev['start']}").status == 200
    status_page = browser.html()
    if history_kept:
        # The 24 h strip of the entity's card: the down run covers the event, as precisely as
        # the points' step allows.
        card = re.search(
            rf'<span class="name">{re.escape(r.entity)}</span>.*?</section>', status_page, re.S
        )
        assert card is not None
        check_down_run(card.group(0), "tl-", start, end)
    else:
        assert "No history yet" in status_page or "no history yet" in status_page

    browser.get(f"{base}/outages/{ev['id']}")
    page = browser.html()
    (artifacts / "event-closed.html").write_text(page, encoding="utf-8")
    shown = times_on_page(page)
    assert shown[0] == pytest.approx(start, abs=0.001) and shown[1] == pytest.approx(
        end, abs=0.001
    ), "the facts: start and end as stored"
    assert "First failed probe of the blackout event" in page and "Back up: ended" in page
    assert f'href="/api/v1/outages/{ev["id"]}"' in page
    browser.screenshot(artifacts / "event-closed.png")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(artifacts / "event-closed.png", REPO / "docs" / "event-page.png")
    assert browser.axe() == [], "event page, light"
    browser.dark(True)
    assert browser.axe() == [], "event page, dark"
    browser.screenshot(artifacts / "event-closed-dark.png")
    browser.dark(False)
    browser.screenshot(artifacts / "event-phone.png", width=390)

    if history_kept:
        check_down_run(page, "event-chart", start, end)
        browser.do(lambda drv: drv.find_element("css selector", "button[data-export=svg]").click())
        svg = wait_file(browser.downloads / f"outage-{ev['id']}.svg")
        root = ElementTree.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        browser.do(lambda drv: drv.find_element("css selector", "button[data-export=png]").click())
        png = wait_file(browser.downloads / f"outage-{ev['id']}.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    else:
        assert "No history yet for this time range" in page
    assert browser.console_errors() == []
