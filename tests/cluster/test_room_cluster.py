"""Two `guard run` processes on one Redis share one waiting line: places issued on instance
A are polled on instance B (`/__guard/queue` with the place header) and admitted in order."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import aiohttp

from tests.cluster.redis_server import RedisServer
from tests.support.polling import poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas, backends_yaml

API = {"Accept": "application/json"}
Answer = tuple[int, dict[str, Any], dict[str, str]]


async def get(s: aiohttp.ClientSession, url: str, **headers: str) -> Answer:
    async with s.get(url, headers={**API, **headers}) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def test_places_issued_on_one_instance_are_admitted_in_order_on_another(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard, tmp_path: Path
) -> None:
    was = await start_was()
    keys = tmp_path / "room.keys"
    keys.write_text(f"1:{secrets.token_hex(32)}\n")
    body = backends_yaml(was) + (
        "rules:\n"
        "  - {name: event, path: /__was/hold, max_active: 1, room: sale}\n"
        "  - {name: cart, path: /cart/**, room: sale}\n"
        "rooms:\n"
        f"  - {{name: sale, admit_rate: 4/s, key_file: {keys}, place_hold: 3s,\n"
        "     refresh_min: 100ms, refresh_max: 1s}\n"
        f"cluster: {{name: shop, redis: '{redis_server.url}',\n"
        "          heartbeat: 100ms, recovery_window: 200ms}\n"
    )
    a, b = await spawn_guard(body), await spawn_guard(body)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        held: list[asyncio.Task[Answer]] = []

        async def straight_in() -> bool:
            """Once A has synced, its first shopper goes straight in and holds the slot."""
            task = asyncio.create_task(get(s, f"{a.url}/__was/hold"))
            active = asyncio.create_task(was.wait_active(1, timeout=1.0))
            await asyncio.wait([task, active], return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                held.append(task)
                return True
            active.cancel()
            await asyncio.gather(active, return_exceptions=True)
            return False

        await poll_async(straight_in, 10.0, "A never let a shopper straight in")
        places: list[str] = []

        async def take_place() -> bool:
            """Three places on A; an arrival that finds A's hand of numbers empty gets the
            page without a place and comes again (docs/CLUSTER.md)."""
            status, _, headers = await get(s, f"{a.url}/__was/hold")
            assert status == 429
            if "X-Guard-Place" in headers:
                places.append(headers["X-Guard-Place"])
            return len(places) == 3

        await poll_async(take_place, 5.0, "A handed out no places")

        async def poll_b(place: str) -> Answer:
            return await get(s, f"{b.url}/__guard/queue?room=sale", **{"X-Guard-Place": place})

        async def b_sees_the_line() -> bool:
            docs = [(await poll_b(p))[1] for p in places]
            shown = [d.get("position") or 0 for d in docs]
            # In line, in order (positions count holes: numbers leased and never handed out).
            return all(d["status"] == "queued" for d in docs) and 0 < shown[0] < shown[1] < shown[2]

        await poll_async(b_sees_the_line, 5.0, "B does not see A's places in line")

        await was.release()
        status, _, headers = await held[0]
        assert status == 200 and "X-Guard-Pass" in headers
        passes: dict[int, str] = {}

        async def admitted_all() -> bool:
            for i, place in enumerate(places):
                if i not in passes:
                    status, doc, hdrs = await poll_b(place)
                    assert status == 200 and doc["status"] in ("queued", "admitted"), doc
                    if doc["status"] == "admitted":
                        passes[i] = hdrs["X-Guard-Pass"]
                # In order across instances: whoever is admitted, everyone ahead already was.
                assert sorted(passes) == list(range(len(passes))), passes.keys()
            return len(passes) == 3

        await poll_async(admitted_all, 10.0, "the line did not move on B")
        # A pass minted on B works on A.
        async with s.get(f"{a.url}/cart/x", headers={"X-Guard-Pass": passes[0]}) as r:
            assert r.status not in (429, 503) and "X-Guard-Place" not in r.headers
    assert a.running() and b.running()
