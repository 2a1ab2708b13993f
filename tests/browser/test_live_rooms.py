"""The live page's waiting-room panel in Debian's headless Chromium: hidden without rooms,
drawn from the frames' ``rooms`` with a room, its numbers those of /status; the shoppers
waiting (the room's distinct-place estimate) in a tile next to the shoppers refused."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page

from tests.browser.test_live_page import DOCS_SHOT, Watched, browser
from tests.integration.test_live_rooms import API, LIVE, QUEUED, RULES
from tests.support.polling import poll_async
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

__all__ = ["browser"]  # the fixture, shared with the page's other tests
ROW = '#rooms-body tr[data-room="sale"]'
ATTRIBUTES = {
    "state": "data-state",
    "waiting": "data-waiting",
    "waiting_estimated": "data-waiting-estimated",
    "admit_rate": "data-admit-rate",
    "eta_seconds": "data-eta",
    "passes_in_flight": "data-passes",
}


async def drawn(page: Page) -> dict[str, Any]:
    """The panel's numbers, as the DOM has them (the same form as panel_of)."""
    row = page.locator(ROW)
    out: dict[str, Any] = {}
    for key, attribute in ATTRIBUTES.items():
        value = await row.get_attribute(attribute)
        out[key] = value if key == "state" or value in (None, "") else round(float(value), 2)
    return out


def panel_of(room: dict[str, Any]) -> dict[str, Any]:
    return {k: v if k == "state" or v is None else round(float(v), 2) for k, v in room.items()
            if k in ATTRIBUTES}  # fmt: skip


async def test_the_rooms_panel_shows_the_numbers_of_status(
    start_was: StartWas, start_guard: StartGuard, browser: Browser, tmp_path: Path
) -> None:
    was = await start_was()
    guard: Guard = await start_guard(backends_yaml(was) + LIVE + RULES)
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    watched = Watched(page)
    await page.route("**/*", watched.route)
    await page.goto(f"{guard.admin_url}/live")
    await page.wait_for_selector("#conn[data-state=live]", timeout=5000)
    hold = f"{guard.url}/__was/hold"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        holder = asyncio.create_task(s.get(hold, headers=API))
        await was.wait_active(1)
        for _ in range(QUEUED):
            async with s.get(hold, headers=API) as r:
                assert r.status == 429
        await page.wait_for_selector(f"{ROW}[data-waiting='{QUEUED}']", timeout=5000)
        seen: dict[str, Any] = {}

        async def same_as_status() -> bool:
            (room,) = (await guard.status())["rooms"]
            seen.update(page=await drawn(page), status=panel_of(room))
            return seen["page"] == seen["status"]

        await poll_async(same_as_status, 5.0, lambda: f"the panel differs from /status: {seen}")
        (room,) = (await guard.status())["rooms"]
        shoppers = await page.locator("#kpi-waiting").get_attribute("data-value")
        assert shoppers == str(round(room["waiting_estimated"])) and int(shoppers) > 0
        assert await page.locator("#kpi-waiting-tile").is_visible()
        await page.screenshot(path=str(tmp_path / "live-rooms.png"), full_page=True)
        if os.environ.get("GUARD_UPDATE_SCREENSHOT"):
            shutil.copy(tmp_path / "live-rooms.png", DOCS_SHOT.with_name("live-rooms.png"))
        await was.release()
        (await holder).release()
    assert watched.errors == [] and watched.blocked == []


async def test_without_rooms_the_panel_stays_hidden(
    start_was: StartWas, start_guard: StartGuard, browser: Browser
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + LIVE)
    page = await browser.new_page()
    await page.goto(f"{guard.admin_url}/live")
    await page.wait_for_function("() => guardLive.stats.lastSeq >= 2", timeout=5000)
    assert await page.evaluate("guardLive.frame.rooms") == []
    assert not await page.locator("#rooms").is_visible()
    assert not await page.locator("#kpi-waiting-tile").is_visible()
