"""Operating a waiting room through the real proxy and admin port: close / open / pause /
resume, /status and the guard_room_* metrics, one outcome per request (queued, polls, busy
passes), dry runs of rules and rooms, the sold-out header stripped everywhere, and the
return time ("come back at 10:07")."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from tests.integration.test_metrics_ratios import promtool
from tests.integration.test_room_api import API, ROOM, full_room, get, room_of
from tests.support.faults import metric
from tests.support.polling import poll_async
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml, read_access_log


async def admin(guard: Guard, method: str, path: str, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{guard.admin_url}{path}", headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


def outcome_counts(doc: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for rule in doc["rules"]:
        for outcome, n in rule["counts"].items():
            total[outcome] = total.get(outcome, 0) + n
    return total


async def test_operators_close_open_pause_and_resume_a_room(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await full_room(start_was, start_guard)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        held = asyncio.create_task(get(s, f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        status, doc, headers = await get(s, f"{guard.url}/__was/hold")
        assert (status, doc["status"], doc["position"]) == (429, "queued", 1)
        place = headers["X-Guard-Place"]

        status, rooms = await admin(guard, "GET", "/rooms")
        assert status == 200 and [r["name"] for r in rooms["rooms"]] == ["sale"]
        assert rooms["rooms"][0]["state"] == "queueing"

        status, body = await admin(guard, "POST", "/rooms/sale/pause")
        assert status == 200 and body["state"] == "paused"
        _, doc, _ = await get(s, f"{guard.url}/__guard/queue?room=sale", **{"X-Guard-Place": place})
        assert doc["status"] == "paused" and doc["position"] == 1
        assert (await admin(guard, "POST", "/rooms/sale/resume"))[1]["state"] == "queueing"
        assert (await admin(guard, "POST", "/rooms/sale/close"))[1]["state"] == "closed"
        _, doc, _ = await get(s, f"{guard.url}/__guard/queue?room=sale", **{"X-Guard-Place": place})
        assert doc["status"] == "closed"
        status, doc, headers = await get(s, f"{guard.url}/__was/hold")
        assert doc["status"] == "closed" and "X-Guard-Place" not in headers
        assert (await admin(guard, "POST", "/rooms/sale/open"))[1]["state"] == "queueing"

        assert (await admin(guard, "POST", "/rooms/nope/close"))[0] == 404
        assert (await admin(guard, "POST", "/rooms/sale/explode"))[0] == 404
        # The admin port's CSRF protection covers these routes: a page cannot close a sale.
        status, _ = await admin(guard, "POST", "/rooms/sale/close", Origin="https://evil.example")
        assert status == 403
        assert room_of(guard).controller.store.state() == "open"

        kinds = [(e.kind, e.subject) for e in guard.runtime.events.recent()]
        for action in ("pause", "resume", "close", "open"):
            assert (f"room_{action}", "sale") in kinds

        status_doc = await guard.status()
        (view,) = status_doc["rooms"]
        for key in ("state", "issued", "watermark", "waiting", "admit_rate", "eta_seconds",
                    "passes_in_flight", "rejected", "counts"):  # fmt: skip
            assert key in view, key
        assert view["issued"] >= 2 and view["waiting"] >= 1

        text = await guard.metrics()
        assert metric(text, "guard_room_state", room="sale", state="queueing") == 1
        assert metric(text, "guard_room_state", room="sale", state="closed") == 0
        assert metric(text, "guard_room_places_issued_total", room="sale") == 1
        assert metric(text, "guard_room_waiting", room="sale") >= 1
        for name in ("guard_room_admit_rate", "guard_room_eta_seconds"):
            assert metric(text, name, room="sale") >= 0
        assert metric(text, "guard_room_passes_in_flight", room="sale") == 1
        assert "guard_room_admitted_total" in text
        assert (
            metric(
                text,
                "guard_room_tokens_rejected_total",
                room="sale",
                kind="place",
                reason="bad_mac",
            )
            == 0
        )
        lint = promtool("check", "metrics", stdin=text)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        await was.release()
        assert (await held)[0] == 200
    await guard.wait_idle()


async def test_every_request_gets_exactly_one_outcome_in_a_room(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await full_room(start_was, start_guard)
    sent = 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        held = asyncio.create_task(get(s, f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        sent += 1
        _, _, headers = await get(s, f"{guard.url}/__was/hold")
        sent += 1
        for _ in range(3):
            await get(
                s,
                f"{guard.url}/__guard/queue?room=sale",
                **{"X-Guard-Place": headers["X-Guard-Place"]},
            )
            sent += 1
        await get(s, f"{guard.url}/__guard/queue?room=nope")
        sent += 1
        await was.release()
        await held
    await guard.wait_idle()
    counts = outcome_counts(await guard.status())
    assert counts["queued"] == 1 and counts["queue_poll"] == 3 and counts["admitted"] == 1
    assert sum(counts.values()) == sent, counts
    logged = [line["outcome"] for line in read_access_log(guard)]
    assert sorted(logged) == sorted(
        ["admitted", "queued", "queue_poll", "queue_poll", "queue_poll", "bad_request"]
    )


async def test_a_busy_pass_is_counted_as_pass_busy(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    rules = "rules:\n  - {name: event, path: /__was/hold, max_active: 10, room: sale}\n"
    guard = await start_guard(backends_yaml(was) + rules + ROOM.format(rate="50/s", extra=""))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        first = asyncio.create_task(get(s, f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        await was.release()
        token = (await first)[2]["X-Guard-Pass"]
        held = [
            asyncio.create_task(get(s, f"{guard.url}/__was/hold", **{"X-Guard-Pass": token}))
            for _ in range(2)
        ]
        await was.wait_active(2)
        status, _, _ = await get(s, f"{guard.url}/__was/hold", **{"X-Guard-Pass": token})
        assert status == 429
        await was.release()
        await asyncio.gather(*held)
    await guard.wait_idle()
    counts = outcome_counts(await guard.status())
    assert counts["pass_busy"] == 1 and counts["admitted"] == 3


async def test_a_dry_run_rule_refuses_nobody_and_counts_would_refuse(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    rules = "rules:\n  - {name: event, path: /__was/hold, max_active: 1, dry_run: true}\n"
    guard = await start_guard(backends_yaml(was) + rules)
    async with aiohttp.ClientSession() as s:
        calls = [asyncio.create_task(get(s, f"{guard.url}/__was/hold")) for _ in range(3)]
        await was.wait_active(3)  # all three at the WAS, over the rule's ceiling of 1
        await was.release()
        assert [(await c)[0] for c in calls] == [200, 200, 200]
    await guard.wait_idle()
    text = await guard.metrics()
    assert metric(text, "guard_requests_total", rule="event", outcome="would_refuse") == 2
    assert metric(text, "guard_requests_total", rule="event", outcome="admitted") == 1
    assert metric(text, "guard_requests_total", rule="event", outcome="over_capacity") == 0
    logged = sorted(line["outcome"] for line in read_access_log(guard))
    assert logged == ["admitted", "would_refuse", "would_refuse"]


async def test_a_dry_run_room_queues_nobody_and_counts_would_queue(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    rules = "rules:\n  - {name: event, path: /__was/hold, max_active: 5, room: sale}\n"
    guard = await start_guard(
        backends_yaml(was) + rules + ROOM.format(rate="1/m", extra=", dry_run: true")
    )
    async with aiohttp.ClientSession() as s:
        calls = [asyncio.create_task(get(s, f"{guard.url}/__was/hold")) for _ in range(3)]
        await was.wait_active(3)
        await was.release()
        answers = [await c for c in calls]
        assert [a[0] for a in answers] == [200, 200, 200]
        assert not [a for a in answers if "Set-Cookie" in a[2]]  # no places, no passes
    await guard.wait_idle()
    counts = outcome_counts(await guard.status())
    assert counts["would_queue"] == 2 and counts["admitted"] == 1, counts  # burst of 1
    assert room_of(guard).counts["would_queue"] == 2


async def test_the_sold_out_header_never_leaves_guard_even_from_a_plain_rule(
    start_guard: StartGuard,
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"X-Guard-Room": "sold-out"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        guard = await start_guard(
            f"backends:\n  - {{name: shop, url: 'http://127.0.0.1:{port}', max_active: 10}}\n"
            "rules:\n  - {name: home, path: /**}\n"
        )
        async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/x", headers=API) as r:
            assert r.status == 200 and "X-Guard-Room" not in r.headers
    finally:
        await runner.cleanup()


async def test_a_long_wait_offers_a_return_time_through_the_api(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    rules = "rules:\n  - {name: event, path: /__was/hold, max_active: 1, room: sale}\n"
    extra = ", return_after: 5s"  # second in line at 6/m: an ETA of ~20 s
    guard = await start_guard(backends_yaml(was) + rules + ROOM.format(rate="6/m", extra=extra))
    room = room_of(guard)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        held = asyncio.create_task(get(s, f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        await get(s, f"{guard.url}/__was/hold")
        _, _, headers = await get(s, f"{guard.url}/__was/hold")
        place = headers["X-Guard-Place"]
        queue = f"{guard.url}/__guard/queue?room=sale"

        async def eta_known() -> bool:
            doc = (await get(s, queue, **{"X-Guard-Place": place}))[1]
            return doc["eta_seconds"] is not None

        await poll_async(eta_known, 5.0, "no ETA")
        _, doc, _ = await get(s, queue, **{"X-Guard-Place": place})
        assert doc["return_offered"] is True and doc["return_url"].endswith("&return=1")
        status, doc, headers = await get(s, queue + "&return=1", **{"X-Guard-Place": place})
        assert status == 200 and doc["status"] == "queued" and doc["return_at"]
        kept = headers["X-Guard-Place"]
        got = room.tokens.read_place(kept, time.time(), room.place_hold)
        assert not isinstance(got, str) and got.return_at > time.time() + 15
        assert doc["return_at"] is not None
        # Held beyond place_hold (3 s): checked at a wall clock past the hold.
        later = room.tokens.read_place(kept, time.time() + 10, room.place_hold)
        assert not isinstance(later, str)
        assert room.counts["returns"] == 1
        await was.release()
        await held
    await guard.wait_idle()
