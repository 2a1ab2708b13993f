"""The waiting room for browsers and across reloads and restarts: the queue page (template,
CSP, noscript, cookies), a reload keeping the line, a state file carrying it over."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp

from guard.runtime import Runtime
from tests.support.servers import StartGuard, StartWas, backends_yaml, write_config

BROWSER = {"Accept": "text/html,application/xhtml+xml"}
RULES = "rules:\n  - {name: event, path: /__was/hold, max_active: 1, room: sale}\n"
ROOM = (
    "rooms:\n  - {name: sale, admit_rate: 1/m, place_hold: 3s, refresh_min: 1s,"
    " refresh_max: 1s%s}\n"
)


async def test_browser_gets_the_queue_page_with_its_cookie(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + RULES + ROOM % "")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # a browser
        held = asyncio.create_task(s.get(f"{guard.url}/__was/hold", headers=BROWSER))
        await was.wait_active(1)
        async with s.get(f"{guard.url}/__was/hold", headers=BROWSER) as r:
            page = await r.text()
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
            assert r.headers["Cache-Control"] == "private, no-store"
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert "X-Guard-Place" not in r.headers  # a browser's token stays HttpOnly
        assert re.search(r'<noscript><meta http-equiv="refresh" content="[12]"></noscript>', page)
        assert 'data-room="sale"' in page and '<strong id="position">1</strong>' in page
        assert "{{" not in page and "<script>" not in page
        async with s.get(f"{guard.url}/__guard/static/queue.js") as r:
            assert r.status == 200 and "/__guard/queue?room=" in await r.text()
        # A second tab shares the place (the cookie), it does not take another.
        async with s.get(f"{guard.url}/__was/hold", headers=BROWSER) as r:
            assert '<strong id="position">1</strong>' in await r.text()
        async with s.get(f"{guard.url}/__guard/queue?room=sale") as r:
            doc = await r.json()
            assert (doc["status"], doc["position"]) == ("queued", 1)
        async with s.get(f"{guard.url}/__guard/queue?room=nope") as r:
            assert r.status == 404
        await was.release()
        (await held).release()
    await guard.wait_idle()


async def test_reload_keeps_the_line(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + RULES + ROOM % "")
    room = guard.runtime.rooms.rooms["sale"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        held = asyncio.create_task(s.get(f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        async with s.get(f"{guard.url}/__was/hold") as r:
            place = r.headers["X-Guard-Place"]
        text = guard.config_path.read_text().replace("admit_rate: 1/m", "admit_rate: 2/m")
        guard.config_path.write_text(text)
        assert (await guard.runtime.reload()).ok
        assert guard.runtime.rooms.rooms["sale"] is room  # same line, same counters
        async with s.get(
            f"{guard.url}/__guard/queue?room=sale", headers={"X-Guard-Place": place}
        ) as r:
            assert (await r.json())["position"] == 1
        async with s.get(f"{guard.url}/__was/hold") as r:
            assert (await r.json())["position"] == 2  # numbering goes on
        await was.release()
        (await held).release()
    await guard.wait_idle()


async def test_state_file_carries_the_line_over_a_restart(
    tmp_path: Path, start_was: StartWas
) -> None:
    was = await start_was()
    body = "listen: 127.0.0.1:0\nwaiting_page: waiting.html\naccess_log: {format: 'off'}\n"
    keys = tmp_path / "room.keys"
    keys.write_text("1:" + "ab" * 32 + "\n")
    extra = ", key_file: room.keys, state_file: sale.state"
    path = write_config(tmp_path, body + backends_yaml(was) + RULES + ROOM % extra)
    first = Runtime(path)
    store = first.rooms.rooms["sale"].controller.store
    for _ in range(5):
        store.issue()
    await first.start()
    await first.stop()  # saves the state file
    saved = json.loads((tmp_path / "sale.state").read_text())
    assert saved["counters"]["issued"] == 5
    second = Runtime(path)
    restored = second.rooms.rooms["sale"].controller.store
    assert restored.epoch() == store.epoch()
    assert restored.issued() >= 5 + 1000  # past anything issued after the last save
