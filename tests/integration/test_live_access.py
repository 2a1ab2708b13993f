"""Who gets the live view (issue 12 item 3): its operators, not a page on another origin nor
one behind a rebinding DNS name. The checks are the admin port's (guard/admin_access.py);
these tests hold them on the live routes, the stream above all: an SSE stream is a read
that a foreign page must not get, and a viewer slot it must not take."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.support.rawhttp import RawResponse, exchange
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

LIVE = "live: {tick: 0.2s, max_viewers: 2}\n"
TOKEN = "live-T0ken_value"
LIVE_PATHS = ["/live", "/live/frames", "/live/stream", "/live/static/live.js"]


async def ask(guard: Guard, path: str, *headers: str, host: str | None = None) -> RawResponse:
    """One GET, raw: a refusal is a complete answer (a served stream would never end)."""
    host = host if host is not None else f"127.0.0.1:{guard.admin_port}"
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
    return await exchange(guard.admin_port, ("\r\n".join(lines) + "\r\n\r\n").encode())


async def live_guard(start_was: StartWas, start_guard: StartGuard, extra: str = "") -> Guard:
    was = await start_was()
    return await start_guard(backends_yaml(was) + LIVE + extra)


async def first_event(guard: Guard, **headers: str) -> tuple[int, str]:
    """The stream's status and its first event's kind (the stream is left at once)."""
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{guard.admin_url}/live/stream", headers=headers) as r,
    ):
        if r.status != 200:
            return r.status, ""
        while not (line := (await r.content.readline()).decode()).startswith("event: "):
            pass
        return r.status, line.strip()[7:]


@pytest.mark.parametrize("path", LIVE_PATHS)
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}"])
async def test_a_rebinding_host_gets_nothing_of_the_live_view(
    start_was: StartWas, start_guard: StartGuard, path: str, host: str
) -> None:
    guard = await live_guard(start_was, start_guard)
    res = await ask(guard, path, host=host.format(port=guard.admin_port))
    assert res.status == 403 and res.complete
    assert b"event:" not in res.body and b"hello" not in res.body
    assert guard.runtime.live_view is not None and not guard.runtime.live_view.viewers


@pytest.mark.parametrize("path", ["/live/stream", "/live/frames", "/live/static/live.js"])
@pytest.mark.parametrize(
    "headers",
    [
        ("Origin: http://127.0.0.1:1",),  # another port of the same machine
        ("Origin: http://evil.example",),
        ("Origin: null",),  # a sandboxed frame, a file:// page
        ("Sec-Fetch-Site: same-site", "Sec-Fetch-Mode: cors"),  # what Chromium sends
        ("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors"),
    ],
)
async def test_a_foreign_origin_gets_no_stream_nor_frames(
    start_was: StartWas, start_guard: StartGuard, path: str, headers: tuple[str, ...]
) -> None:
    guard = await live_guard(start_was, start_guard)
    res = await ask(guard, path, *headers)
    assert res.status == 403 and b"forbidden_origin" in res.body
    assert guard.runtime.live_view is not None and not guard.runtime.live_view.viewers


async def test_the_own_origin_and_curl_get_the_stream(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await live_guard(start_was, start_guard)
    assert await first_event(guard) == (200, "hello")  # curl: no Origin
    own = {"Origin": guard.admin_url, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    assert await first_event(guard, **own) == (200, "hello")


async def test_an_operator_following_a_link_from_elsewhere_gets_the_page(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """A top-level navigation (a bookmark, a link in a runbook) is how an operator arrives;
    the other site cannot read the answer, and the page's own reads are same-origin."""
    guard = await live_guard(start_was, start_guard)
    nav = ("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document")
    res = await ask(guard, "/live", *nav)
    assert res.status == 200 and b"live.js" in res.body
    embedded = ("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Origin: null")
    assert (await ask(guard, "/live", *embedded)).status == 403


async def test_with_a_token_the_stream_authenticates_by_the_cookie(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    (tmp_path / "admin.token").write_text(TOKEN + "\n")
    (tmp_path / "admin.token").chmod(0o600)
    guard = await live_guard(start_was, start_guard, "admin_token_file: admin.token\n")
    for path in LIVE_PATHS:
        assert (await ask(guard, path)).status == 401, path
    login = await ask(guard, f"/live?token={TOKEN}")
    assert login.status == 302 and login.header("Location") == "/live"
    cookie = (login.header("Set-Cookie") or "").split(";")[0]
    assert cookie == f"guard_admin={TOKEN}"
    assert await first_event(guard, Cookie=cookie) == (200, "hello")
    assert (await first_event(guard, Cookie="guard_admin=wrong"))[0] == 401
    # The cookie goes with every request of the host, whatever the port: from another
    # origin it must still get nothing.
    foreign = {"Cookie": cookie, "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
    assert (await first_event(guard, **foreign))[0] == 403
