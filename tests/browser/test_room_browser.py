"""The waiting room in a real browser (Debian's Chromium, driven by Playwright): a full
room, two shoppers join, each page shows its position falling as capacity frees, the
earlier one is admitted first and goes on to checkout with its pass without queueing.

Chromium must be installed (`.ci/run` installs it): this test fails without it, it never
skips. A screenshot of the queue page is kept under the test's tmp folder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page, async_playwright

from guard.config.rooms import shipped
from tests.support.polling import poll_async
from tests.support.servers import WAITING, StartGuard, StartWas, backends_yaml

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
CONFIG = """
rules:
  - {name: event, path: /__was/**, max_active: 1, room: sale}
  - {name: checkout, path: /checkout/**, room: sale}
rooms:
  - {name: sale, admit_rate: 1/s, place_hold: 20s, refresh_min: 200ms, refresh_max: 1s}
"""


async def card(page: Page, name: str) -> str:
    value = await page.get_attribute("#guard-queue", f"data-{name}", timeout=5_000)
    assert value is not None, name
    return value


async def join(browser: Browser, url: str) -> Page:
    """A shopper in a browser of its own (its own cookies) opening the full event page."""
    context = await browser.new_context(locale="ko-KR")
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("#guard-queue")
    return page


async def test_a_browser_waits_its_turn_and_keeps_its_journey(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: apt-get install chromium"
    was = await start_was()
    # The shipped stylesheet, so that the screenshot shows the page as shoppers see it.
    (tmp_path / "waiting.html").write_text(WAITING)
    (tmp_path / "waiting.css").write_bytes(shipped("waiting.css").read_bytes())
    guard = await start_guard(backends_yaml(was) + CONFIG)
    hold, event = f"{guard.url}/__was/hold", f"{guard.url}/__was/event"
    api = {"Accept": "application/json"}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s,
        async_playwright() as pw,
    ):
        # The room is full: one slow request at the WAS holds the ceiling, two app clients
        # already wait (and never come back: the line must not wait for them).
        holder = asyncio.create_task(s.get(hold, headers=api))
        await was.wait_active(1)
        for _ in range(2):
            async with s.get(hold, headers=api) as r:
                assert r.status == 429
        launch = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        async with await launch as browser:
            first = await join(browser, event)
            second = await join(browser, event)
            assert (await card(first, "status"), await card(first, "position")) == ("queued", "3")
            assert await card(second, "position") == "4"
            assert "순서대로 입장하고 있습니다" in await first.inner_text("h1")
            shot = tmp_path / "queue.png"
            await first.screenshot(path=str(shot), full_page=True)
            if os.environ.get("GUARD_QUEUE_SCREENSHOT"):  # refresh docs/queue.png on purpose
                shutil.copy(shot, os.environ["GUARD_QUEUE_SCREENSHOT"])

            # Each page's next load is its admission (the queue page reloads itself).
            admitted: list[str] = []
            first.on("load", lambda _: admitted.append("first"))
            second.on("load", lambda _: admitted.append("second"))

            # Capacity frees: the line moves, the positions on the pages fall.
            await was.release()
            (await holder).release()
            seen: list[int] = []

            async def position_fell() -> bool:
                seen.append(int(await card(first, "position")))
                return seen[-1] < 3

            await poll_async(position_fell, 10.0, lambda: f"the position did not fall: {seen}")
            assert seen == sorted(seen, reverse=True)  # never up

            # Both get in, the earlier one first, each onto the event page with a pass.
            for page in (first, second):
                await page.wait_for_selector("#guard-queue", state="detached", timeout=15_000)
                assert "<td>was-1</td>" in await page.content()  # the WAS's own page
            assert admitted == ["first", "second"]
            cookies = {c["name"] for c in await first.context.cookies()}
            assert "guard_pass_sale" in cookies and "guard_place_sale" not in cookies

            # The pass goes on to checkout, another rule of the room, without queueing.
            response = await first.goto(f"{guard.url}/checkout/pay")
            assert response is not None and response.status == 200
            assert await first.query_selector("#guard-queue") is None

    await was.release()
    await guard.wait_idle()
