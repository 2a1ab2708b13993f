"""`workers: N`: the supervisor's /live shows the fleet, merged from every worker's frames."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.support.polling import poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas


async def test_supervisor_merges_the_workers_frames(
    start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    was = await start_was()
    g = await spawn_guard(
        f"""
        workers: 2
        live: {{tick: 0.2s}}
        backends:
          - {{name: was-1, url: '{was.url}', max_active: 5}}
        rules:
          - {{name: event, path: /event/**, max_active: 3}}
        """
    )
    sent = 12
    for i in range(sent):  # a fresh connection each: the kernel spreads them over the workers
        async with aiohttp.ClientSession() as own, own.get(f"{g.url}/event/{i}?ms=20") as r:
            assert r.status == 200
    doc: dict[str, Any] = {}

    async def all_counted() -> bool:
        nonlocal doc
        async with aiohttp.ClientSession() as s, s.get(f"{g.admin_url}/live/frames") as r:
            if r.status != 200:
                return False
            doc = dict(await r.json())
        rules = [r for f in doc["frames"] for r in f["rules"] if r["name"] == "event"]
        done = sum(c[1] for r in rules for c in r["hit"])  # a completion may tick later
        return sum(r["out"].get("admitted", 0) for r in rules) == sent and done == sent

    await poll_async(all_counted, 15.0, lambda: f"the fleet's frames never counted {sent}")
    hello = doc["hello"]
    assert hello["workers"] == 2
    assert hello["backends"][0]["max"] == 5  # the workers' shares add up to the ceiling
    assert [r["max"] for r in hello["rules"]] == [3, None]
    frames = doc["frames"]
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[-1]["seq"] + 1))
    # merged frames hold both workers' ticks (one that ticked late is published on its own)
    assert any(f["workers"] == 2 for f in frames)
    hits = sum(c[1] for f in frames for r in f["rules"] if r["name"] == "event" for c in r["hit"])
    assert hits == sent
    async with aiohttp.ClientSession() as s, s.get(f"{g.admin_url}/live") as r:
        assert r.status == 200 and "live.js" in await r.text()
