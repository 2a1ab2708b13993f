"""The waiting room through the real proxy, headers only (an app, no cookie jar):
places in arrival order, polling, admission in order, passes across rules, replay,
rejected tokens, the per-pass cap, sold-out close, and nothing leaked at the end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from guard.core.room_token import Pass, Place
from guard.proxy.room_state import Room
from tests.support.polling import poll, poll_async
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

API = {"Accept": "application/json"}
ROOM = """
rooms:
  - {{name: sale, admit_rate: {rate}, place_hold: 3s, refresh_min: 100ms, refresh_max: 1s,
     pass_max_in_flight: 2{extra}}}
"""

Answer = tuple[int, dict[str, Any], dict[str, str]]


def room_of(guard: Guard) -> Room:
    return guard.runtime.rooms.rooms["sale"]


async def get(s: aiohttp.ClientSession, url: str, **headers: str) -> Answer:
    async with s.get(url, headers={**API, **headers}) as r:
        body = await r.json(content_type=None)
        return r.status, body, dict(r.headers)


def pass_id(guard: Guard, token: str) -> int:
    room = room_of(guard)
    got = room.tokens.read_pass(token, time.time(), room.pass_idle)
    assert isinstance(got, Pass), got
    return got.pass_id


async def full_room(start_was: StartWas, start_guard: StartGuard) -> tuple[Guard, Any]:
    was = await start_was()
    rules = (
        "rules:\n"
        "  - {name: event, path: /__was/hold, max_active: 1, room: sale}\n"
        "  - {name: cart, path: /cart/**, room: sale}\n"
        "  - {name: headers, path: /__was/echo-headers, room: sale}\n"
    )
    guard = await start_guard(backends_yaml(was) + rules + ROOM.format(rate="4/s", extra=""))
    return guard, was


async def test_api_clients_queue_in_order_and_keep_their_journey(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await full_room(start_was, start_guard)
    room = room_of(guard)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        first = asyncio.create_task(get(s, f"{guard.url}/__was/hold"))  # straight in
        await was.wait_active(1)
        queued = [await get(s, f"{guard.url}/__was/hold") for _ in range(3)]
        for position, (status, doc, headers) in enumerate(queued, 1):
            assert status == 429
            assert doc["status"] == "queued" and doc["position"] == position
            assert doc["room"] == "sale" and int(headers["Retry-After"]) >= 1
            assert headers["Cache-Control"] == "private, no-store"
            assert headers["Set-Cookie"].startswith("guard_place_sale=")
            assert "HttpOnly" in headers["Set-Cookie"] and "Secure" not in headers["Set-Cookie"]
        places = [h["X-Guard-Place"] for _, _, h in queued]
        polled = [
            await get(s, f"{guard.url}/__guard/queue?room=sale", **{"X-Guard-Place": p})
            for p in places
        ]
        assert [d["position"] for _, d, _ in polled] == [1, 2, 3]
        assert all(st == 200 and d["status"] == "queued" for st, d, _ in polled)

        await was.release()
        status, _, headers = await first
        assert status == 200 and "X-Guard-Pass" in headers  # the direct entry's pass
        assert headers["Cache-Control"] == "private, no-store"

        passes: dict[int, str] = {}
        seen: list[list[int]] = [[], [], []]

        async def admitted_all() -> bool:
            for i, place in enumerate(places):
                if i in passes:
                    continue
                _, doc, hdrs = await get(
                    s, f"{guard.url}/__guard/queue?room=sale", **{"X-Guard-Place": place}
                )
                if doc["status"] == "admitted":
                    passes[i] = hdrs["X-Guard-Pass"]
                else:
                    seen[i].append(doc["position"])
                # Admission in order: whoever is admitted, everyone ahead already was.
                assert sorted(passes) == list(range(len(passes))), passes.keys()
            return len(passes) == 3

        await poll_async(admitted_all, 10.0, "the line did not move")
        assert all(p == sorted(p, reverse=True) for p in seen)  # positions never rise
        assert seen[2][0] > seen[2][-1] or len(seen[2]) == 1  # and they fall

        # The pass goes on to another rule of the room, and X-Guard-* never reach the WAS.
        status, doc, _ = await get(s, f"{guard.url}/cart/x", **{"X-Guard-Pass": passes[0]})
        assert status == 200 and doc["raw_path"] == "/cart/x"
        status, doc, _ = await get(
            s, f"{guard.url}/__was/echo-headers", **{"X-Guard-Pass": passes[0]}
        )
        assert status == 200
        assert not [h for h, _ in doc["headers"] if h.lower().startswith("x-guard")]

        # Replaying an admitted place elsewhere yields the same pass, not a new one.
        converted = room.counts.get("converted", 0)
        _, doc, hdrs = await get(
            s, f"{guard.url}/__guard/queue?room=sale", **{"X-Guard-Place": places[1]}
        )
        assert doc["status"] == "admitted"
        assert pass_id(guard, hdrs["X-Guard-Pass"]) == pass_id(guard, passes[1])
        assert room.counts.get("converted", 0) == converted and room.counts["replayed"] >= 1
    await guard.wait_idle()
    assert len(room.passes) == 0


async def test_rejected_tokens_are_counted_and_get_a_fresh_place(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await full_room(start_was, start_guard)
    room = room_of(guard)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        held = asyncio.create_task(get(s, f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        _, _, headers = await get(s, f"{guard.url}/__was/hold")
        good = headers["X-Guard-Place"]
        forged = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
        old = int(time.time()) - 3600
        expired = room.tokens.sign_place(Place(1, old, old))
        for token, reason in ((forged, "bad_mac"), (expired, "expired"), ("junk", "malformed")):
            status, doc, hdrs = await get(s, f"{guard.url}/__was/hold", **{"X-Guard-Place": token})
            assert status == 429 and doc["status"] == "queued"
            assert doc["position"] == room.controller.store.issued() - int(
                room.controller.store.watermark()
            )
            assert hdrs["X-Guard-Place"] != token
            assert room.rejected[f"place:{reason}"] == 1
        status, doc, _ = await get(s, f"{guard.url}/cart/x", **{"X-Guard-Pass": forged})
        assert status == 429 and doc["status"] == "queued" and room.rejected["pass:malformed"] == 1
        status, doc, _ = await get(
            s, f"{guard.url}/__guard/queue?room=sale", **{"X-Guard-Place": forged}
        )
        assert status == 200 and doc["status"] == "queued" and room.rejected["place:bad_mac"] == 2
        await was.release()
        assert (await held)[0] == 200
    await guard.wait_idle()


async def test_one_pass_carries_at_most_its_in_flight_cap(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    rules = "rules:\n  - {name: event, path: /__was/hold, max_active: 10, room: sale}\n"
    rules += "  - {name: cart, path: /cart/**, room: sale}\n"
    guard = await start_guard(backends_yaml(was) + rules + ROOM.format(rate="50/s", extra=""))
    room = room_of(guard)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        status, _, headers = await get(s, f"{guard.url}/cart/in")
        assert status == 200
        token = headers["X-Guard-Pass"]
        held = [
            asyncio.create_task(get(s, f"{guard.url}/__was/hold", **{"X-Guard-Pass": token}))
            for _ in range(2)
        ]
        await was.wait_active(2)
        assert room.passes.in_flight(pass_id(guard, token)) == 2
        status, doc, headers = await get(s, f"{guard.url}/cart/x", **{"X-Guard-Pass": token})
        assert (status, doc["error"], headers["Retry-After"]) == (429, "pass_busy", "1")
        await was.release()
        assert [(await t)[0] for t in held] == [200, 200]
        status, _, _ = await get(s, f"{guard.url}/cart/x", **{"X-Guard-Pass": token})
        assert status == 200
    await guard.wait_idle()
    await poll(lambda: len(room.passes) == 0, 5.0, lambda: "a pass lease leaked")


async def test_sold_out_header_closes_the_room_and_never_reaches_the_client(
    start_guard: StartGuard,
) -> None:
    async def page(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "public, max-age=60"}
        if request.path == "/soldout":
            headers["X-Guard-Room"] = "sold-out"
        return web.json_response({"path": request.path}, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        backends = (
            f"backends:\n  - {{name: shop, url: 'http://127.0.0.1:{port}', max_active: 10}}\n"
        )
        rules = "rules:\n  - {name: all, path: /**, room: sale}\n"
        guard = await start_guard(
            backends + rules + ROOM.format(rate="50/s", extra=", sold_out_header: true")
        )
        room = room_of(guard)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
            status, _, headers = await get(s, f"{guard.url}/page")
            assert status == 200 and headers["Cache-Control"] == "private, no-store"  # not public
            token = headers["X-Guard-Pass"]
            status, _, headers = await get(s, f"{guard.url}/soldout", **{"X-Guard-Pass": token})
            assert status == 200 and "X-Guard-Room" not in headers
            assert headers["Cache-Control"] == "public, max-age=60"  # no cookie set: untouched
            assert room.controller.state(time.time()) == "closed"
            status, doc, headers = await get(s, f"{guard.url}/page")
            assert status == 429 and doc["status"] == "closed" and "Set-Cookie" not in headers
            status, _, _ = await get(s, f"{guard.url}/page", **{"X-Guard-Pass": token})
            assert status == 200  # an admitted shopper keeps the pass
        await guard.wait_idle()
    finally:
        await runner.cleanup()
