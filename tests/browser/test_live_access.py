"""The live page's protection in Debian's headless Chromium (issue 12 item 3): with an
``admin_token_file`` the page works through ``?token=`` and the cookie it sets (the SSE
stream authenticates by the cookie: EventSource sends no headers), and a page of another
origin (a second local server, another port) can neither reload guard nor read the stream,
even from a browser whose operator is logged in (the cookie goes to every port)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.browser.test_live_page import FLAGS, chromium
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

TOKEN = "live-T0ken_value"
LIVE = "live: {tick: 0.2s}\n"
# The foreign page: inline script is fine here, it is not guard's page.
FOREIGN = """<!doctype html><html><body><script>
window.result = {reload: "pending", events: 0, errors: 0, state: -1};
const admin = "%s";
fetch(admin + "/reload", {method: "POST", mode: "no-cors"})
  .then(() => { result.reload = "sent"; }, () => { result.reload = "failed"; });
const es = new EventSource(admin + "/live/stream", {withCredentials: true});
for (const kind of ["hello", "tick", "message"])
  es.addEventListener(kind, () => { result.events += 1; });
es.onerror = () => { result.errors += 1; result.state = es.readyState; };
</script></body></html>"""


@pytest.fixture
async def context() -> AsyncIterator[BrowserContext]:
    executable = chromium()
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(
            executable_path=executable, args=FLAGS, headless=True
        )
        yield await browser.new_context()
        await browser.close()


async def token_guard(start_was: StartWas, start_guard: StartGuard, tmp_path: Path) -> Guard:
    (tmp_path / "admin.token").write_text(TOKEN + "\n")
    (tmp_path / "admin.token").chmod(0o600)
    was = await start_was()
    return await start_guard(backends_yaml(was) + LIVE + "admin_token_file: admin.token\n")


async def log_in(context: BrowserContext, guard: Guard) -> None:
    """What an operator does: open /live?token=…; the page then streams by the cookie."""
    page = await context.new_page()
    bare = await page.goto(f"{guard.admin_url}/live")
    assert bare is not None and bare.status == 401
    response = await page.goto(f"{guard.admin_url}/live?token={TOKEN}")
    assert response is not None and response.status == 200
    assert response.request.redirected_from is not None and page.url.endswith("/live")
    (cookie,) = await context.cookies(guard.admin_url)
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "guard_admin", True, "Strict"
    )  # fmt: skip
    await page.wait_for_selector("#conn[data-state=live]", timeout=5000)
    first = (await page.evaluate("guardLive.stats"))["lastSeq"]
    await page.wait_for_function(f"() => guardLive.stats.lastSeq >= {first + 3}", timeout=5000)
    assert await page.evaluate("guardLive.hello.config.sha256") == (guard.runtime.loaded.sha256)


async def test_the_token_flow_logs_the_page_in_and_its_stream_ticks(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path, context: BrowserContext
) -> None:
    guard = await token_guard(start_was, start_guard, tmp_path)
    await log_in(context, guard)


async def test_a_foreign_origin_neither_reloads_nor_streams(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path, context: BrowserContext
) -> None:
    guard = await token_guard(start_was, start_guard, tmp_path)
    await log_in(context, guard)  # the cookie is in the browser: the worst case
    app = web.Application()
    body = FOREIGN % guard.admin_url

    async def foreign_page(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    app.router.add_get("/", foreign_page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        assert port != guard.admin_port
        page = await context.new_page()
        wire = await Wire.watch(context, page)
        await page.goto(f"http://127.0.0.1:{port}/")
        # EventSource gives up for good (readyState 2) on an answer it will not read.
        await page.wait_for_function(
            "() => result.state === 2 && result.reload !== 'pending'", timeout=5000
        )
        result = await page.evaluate("result")
        assert result["events"] == 0 and result["errors"] >= 1
        # Chromium hides a cross-origin answer from the page; DevTools sees the wire.
        stream = wire.find("/live/stream")
        assert stream["status"] == 403, stream
        sent = stream["sent"]
        assert sent["Origin"] == f"http://127.0.0.1:{port}" and "guard_admin=" in sent["Cookie"]
        assert wire.find("/reload")["status"] == 403
        assert guard.runtime.reload_counts["success"] == 0
        assert guard.runtime.live_view is not None and len(guard.runtime.live_view.viewers) == 1
    finally:
        await runner.cleanup()
    status = await guard_status(guard)
    assert status["reloads"]["success"] == 0


class Wire:
    """What went over the wire (DevTools' Network domain): the headers Chromium really
    sent, the cookie included, and the status guard answered, also where CORS hides it."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.sent: dict[str, dict[str, str]] = {}
        self.status: dict[str, int] = {}

    @staticmethod
    async def watch(context: BrowserContext, page: Page) -> Wire:
        wire = Wire()
        cdp = await context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", wire._request)
        cdp.on("Network.requestWillBeSentExtraInfo", wire._sent)
        cdp.on("Network.responseReceivedExtraInfo", wire._answered)
        await cdp.send("Network.enable")
        return wire

    def _request(self, event: dict[str, Any]) -> None:
        self.urls[event["requestId"]] = event["request"]["url"]

    def _sent(self, event: dict[str, Any]) -> None:
        self.sent[event["requestId"]] = event["headers"]

    def _answered(self, event: dict[str, Any]) -> None:
        self.status[event["requestId"]] = event["statusCode"]

    def find(self, path: str) -> dict[str, Any]:
        (rid,) = [rid for rid, url in self.urls.items() if url.endswith(path)]
        return {"status": self.status.get(rid), "sent": self.sent.get(rid, {})}


async def guard_status(guard: Guard) -> dict[str, object]:
    """/status with the token (the test's own client is an operator)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{guard.admin_url}/status", headers=headers) as r,
    ):
        assert r.status == 200
        return dict(await r.json())
