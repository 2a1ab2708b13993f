"""The live page in Debian's headless Chromium (Playwright's Python package, no browser
download), against a real guard and simulated WAS under load.

Gates are on the DOM and on data (``data-*`` attributes, ``window.guardLive``) and a
painted-pixel probe; screenshots are kept for people, never compared. Without
/usr/bin/chromium these tests fail (``.ci/run`` installs it); they are never skipped."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Route, async_playwright

from guard.core.live import bucket_index
from tests.support.servers import Guard, StartGuard, StartWas, Was, backends_yaml

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
LIVE = "live: {tick: 0.2s, age_bands: [0.3s, 0.8s]}\n"
RULES = """rules:
  - {name: hold, path: /__was/hold, max_active: 3}
  - {name: event, path: /event/**, max_active: 4}
"""
HELD = 3
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "live.png"


def chromium() -> str:
    """Debian's Chromium; missing, the test fails (never skips): `.ci/run` installs it."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    return CHROMIUM


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=executable, args=FLAGS, headless=True)
        yield b
        await b.close()


class Watched:
    """A page whose console errors, page errors and off-host requests are recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.blocked: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", self._failed)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def _failed(self, request: Request) -> None:
        if not request.url.endswith("/live/stream"):  # a stream cut by the test is fine
            self.errors.append(f"request failed: {request.url}")

    async def route(self, route: Route) -> None:
        if route.request.url.startswith("http://127.0.0.1:"):
            await route.continue_()
        else:  # the page must work offline: nothing may leave the machine
            self.blocked.append(route.request.url)
            await route.abort()


async def open_page(browser: Browser, guard: Guard) -> tuple[Watched, Any]:
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    watched = Watched(page)
    await page.route("**/*", watched.route)
    response = await page.goto(f"{guard.admin_url}/live")
    assert response is not None and response.status == 200
    await page.wait_for_selector("#conn[data-state=live]", timeout=5000)
    return watched, response


async def start(start_was: StartWas, start_guard: StartGuard) -> tuple[Was, Guard]:
    was = await start_was(workers=20)
    guard = await start_guard(backends_yaml(was, max_active=6) + LIVE + RULES)
    return was, guard


async def test_page_shows_live_equalizer_outcomes_and_hitmap(
    start_was: StartWas, start_guard: StartGuard, browser: Browser, tmp_path: Path
) -> None:
    was, guard = await start(start_was, start_guard)
    watched, response = await open_page(browser, guard)
    page = watched.page
    csp = response.headers["content-security-policy"]
    assert csp.startswith("default-src 'self'") and "frame-ancestors 'none'" in csp
    row = '.eq-row[data-scope=backend][data-name="was-1"]'
    async with aiohttp.ClientSession() as s:
        held = [
            asyncio.create_task(s.get(f"{guard.url}/__was/hold").__aenter__()) for _ in range(HELD)
        ]
        await was.wait_active(HELD)
        status = await guard.status()
        active = next(b["active"] for b in status["backends"] if b["name"] == "was-1")
        assert active == HELD
        await page.wait_for_selector(f"{row}[data-active='{active}']", timeout=3000)
        # The held requests age: orange past 0.3 s, red past 0.8 s.
        await page.wait_for_function(
            f"() => document.querySelectorAll('{row} .cell.band1').length === {HELD}", timeout=3000
        )
        await page.wait_for_function(
            f"() => document.querySelectorAll('{row} .cell.band2').length === {HELD}", timeout=3000
        )
        assert await page.locator(f"{row} .cell").count() == 6  # max_active cells, drawn
        assert await page.locator("#oldest tbody tr").count() == HELD
        # Over the rule's ceiling (3): refusals show as outcomes per second.
        for _ in range(3):
            headers = {"Accept": "application/json"}
            async with s.get(f"{guard.url}/__was/hold", headers=headers) as r:
                assert r.status == 503
        await page.wait_for_function(
            "() => guardLive.frames.some(f => f.rules.some(r => (r.out.over_capacity || 0) > 0))",
            timeout=3000,
        )
        await was.release()
        for task in held:
            (await task).release()
        await page.wait_for_selector(f"{row}[data-active='0']", timeout=3000)
        for ms in (300, 1500):
            async with s.get(f"{guard.url}/event/a?ms={ms}") as r:
                assert r.status == 200
    await assert_hitmap(page)
    assert int(await page.locator("#kpi-refused").get_attribute("data-value") or 0) >= 0
    await page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    if os.environ.get("GUARD_UPDATE_SCREENSHOT"):
        shutil.copy(tmp_path / "live.png", DOCS_SHOT)
    assert watched.errors == [] and watched.blocked == []


async def assert_hitmap(page: Page) -> None:
    """The 0.3 s and 1.5 s requests land in their exact buckets, and the canvas shows them."""
    want = [bucket_index(300_000), bucket_index(1_500_000)]
    await page.wait_for_function(
        f"() => {{ const c = guardLive.cells('rule:event');"
        f" return {want}.every(b => c[b] && c[b].hits >= 1); }}",
        timeout=4000,
    )
    await page.select_option("#hitmap-scope", "rule:event")
    painted = await page.evaluate(
        """() => {
        const canvas = document.querySelector('#chart-hitmap canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;  // bluish pixels: the hit cells (axes and guides are grey, orange, red)
        for (let i = 0; i < data.length; i += 4)
            if (data[i + 3] > 0 && data[i + 2] > 150 && data[i] < 150) n++;
        return n;
    }"""
    )
    assert painted > 20, f"the hitmap painted {painted} cell pixels"
    assert (await page.evaluate("guardLive.stats"))["hitmapRects"] >= 2


async def test_page_recovers_after_a_reload(
    start_was: StartWas, start_guard: StartGuard, browser: Browser
) -> None:
    _, guard = await start(start_was, start_guard)
    watched, _ = await open_page(browser, guard)
    page = watched.page
    old = (await guard.status())["config"]["sha256"]
    assert await page.locator("#sha").get_attribute("data-sha") == old
    text = guard.config_path.read_text().replace("max_active: 4", "max_active: 5")
    guard.config_path.write_text(text)
    new = hashlib.sha256(text.encode()).hexdigest()
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{guard.admin_url}/reload") as r,
    ):
        assert r.status == 200
    await page.wait_for_selector(f"#sha[data-sha='{new}']", timeout=3000)
    assert await page.locator("#sha").inner_text() == new[:12]
    await page.wait_for_selector("#events li[data-kind=reload]", timeout=3000)
    await page.wait_for_selector('.eq-row[data-name="event"][data-max="5"]', timeout=3000)
    stats = await page.evaluate("guardLive.stats")
    assert stats["hellos"] >= 2 and stats["dups"] == 0 and stats["gaps"] == 0
    await page.wait_for_selector("#conn[data-state=live]")
    assert watched.errors == [] and watched.blocked == []
