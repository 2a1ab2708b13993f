"""The live view's waiting-room panel data: each tick frame carries ``rooms`` from the
runtime's room views (the numbers of /status), and ``waiting_shoppers``, the distinct
shoppers estimated to be waiting in line."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from guard.live_merge import merge_ticks
from tests.integration.test_live_stream import frames
from tests.support.polling import poll_async
from tests.support.servers import Guard, StartGuard, StartWas, Was, backends_yaml

LIVE = "live: {tick: 0.2s}\n"
RULES = """rules:
  - {name: event, path: /__was/hold, max_active: 1, room: sale}
rooms:
  - {name: sale, admit_rate: 1/s, place_hold: 30s, refresh_min: 100ms, refresh_max: 1s}
"""
API = {"Accept": "application/json"}
PANEL = ("state", "waiting", "waiting_estimated", "admit_rate", "eta_seconds", "passes_in_flight")
QUEUED = 3


def panel(room: dict[str, Any]) -> dict[str, Any]:
    """The numbers the page draws, as the frame and /status spell them."""
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in room.items() if k in PANEL}


async def a_full_room(start_was: StartWas, start_guard: StartGuard) -> tuple[Guard, Was]:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + LIVE + RULES)
    return guard, was


async def test_frames_carry_the_rooms_numbers_of_status(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await a_full_room(start_was, start_guard)
    hold = f"{guard.url}/__was/hold"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        holder = asyncio.create_task(s.get(hold, headers=API))
        await was.wait_active(1)
        for _ in range(QUEUED):  # three shoppers, each a place of its own (no cookie kept)
            async with s.get(hold, headers=API) as r:
                assert r.status == 429 and (await r.json())["status"] == "queued"
        seen: dict[str, Any] = {}

        async def same_as_status() -> bool:
            nonlocal seen
            doc, status = await frames(guard), await guard.status()
            if not doc["frames"]:
                return False
            seen = {"frame": doc["frames"][-1], "status": status["rooms"]}
            return [panel(r) for r in seen["frame"]["rooms"]] == [panel(r) for r in status["rooms"]]

        await poll_async(same_as_status, 5.0, lambda: f"frame and /status differ: {seen}")
        frame, (room,) = seen["frame"], seen["status"]
        assert room["waiting"] == QUEUED and frame["rooms"][0]["name"] == "sale"
        assert frame["waiting_shoppers"] == round(room["waiting_estimated"]) > 0
        await was.release()
        (await holder).release()


def test_the_fleet_merge_sums_the_rooms() -> None:
    """Not a server test: the merge of ``workers: N`` (rooms need one process today, so a
    fleet frame has at most one worker's rooms; the merge still sums what can be summed)."""
    one = {"name": "sale", "state": "queueing", "waiting": 3, "waiting_estimated": 2.5,
           "admit_rate": 1.0, "admitted": 2, "eta_seconds": 3.0, "passes_in_flight": 1}  # fmt: skip
    other = {**one, "waiting": 1, "waiting_estimated": 1.0, "eta_seconds": 5.0, "admitted": 1}
    scope = {"active": 0, "max": None, "ages": [0, 0, 0], "done": 0, "hit": []}
    base = {"v": 1, "t": 1.0, "dt": 1.0, "site": scope, "backends": [], "rules": [],
            "slow": [], "oldest": [], "reloads": {}, "sha": "x"}  # fmt: skip
    merged = merge_ticks(
        [{**base, "rooms": [one], "waiting_shoppers": 3}, {**base, "rooms": [other]}], 7
    )
    (room,) = merged["rooms"]
    assert room["waiting"] == 4 and room["waiting_estimated"] == 3.5 and room["admitted"] == 3
    assert room["passes_in_flight"] == 2 and room["eta_seconds"] == 5.0
    assert room["state"] == "queueing" and merged["waiting_shoppers"] == 3
    assert merge_ticks([base, base], 8)["rooms"] == []
