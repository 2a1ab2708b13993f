"""`workers: N`: several processes on one port, and the ceilings still hold for the fleet."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp

from tests.support.polling import poll, poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas


async def test_ceiling_holds_across_workers(start_was: StartWas, spawn_guard: SpawnGuard) -> None:
    was = await start_was()
    g = await spawn_guard(
        f"""
        workers: 2
        backends:
          - {{name: was-1, url: '{was.url}', max_active: 3}}
        """
    )
    port, admin = g.port, g.admin_port
    try:
        async with aiohttp.ClientSession() as s:

            async def one() -> int:
                # a fresh connection each: the kernel spreads them over the workers
                async with (
                    aiohttp.ClientSession() as own,
                    own.get(f"http://127.0.0.1:{port}/__was/hold") as r,
                ):
                    return r.status

            tasks = [asyncio.create_task(one()) for _ in range(12)]
            await poll(lambda: sum(t.done() for t in tasks) >= 9, 10)
            stats = await was.stats()
            assert stats["active"] <= 3 and stats["max_seen_active"] <= 3
            async with s.get(f"http://127.0.0.1:{admin}/status") as r:
                status = await r.json()
            assert status["workers"] == 2
            assert status["backends"][0]["max_active"] == 3  # the shares add up
            assert status["site"]["active"] == stats["active"]
            await was.release()
            results = await asyncio.gather(*tasks)
            assert set(results) <= {200, 503}
            assert results.count(200) == (await was.stats())["served"] <= 3

            async def merged() -> dict[str, Any]:
                async with s.get(f"http://127.0.0.1:{admin}/status") as r:
                    return dict(await r.json())

            async def all_counted() -> bool:
                return sum((await merged())["rules"][0]["counts"].values()) == len(results)

            # Every worker's counts, summed by the supervisor: one outcome per request.
            await poll_async(all_counted, 10, "the merged counts never reached 12")
            status = await merged()
            counts = status["rules"][0]["counts"]
            assert counts["admitted"] == results.count(200)
            assert counts["over_capacity"] == results.count(503)
            assert status["durations"][0]["count"] == results.count(200)
            assert status["site"]["active"] == 0
            assert status["pairs"] == [{"backend": "was-1", "rule": "default", "active": 0}]
            assert status["reloads"] == {"success": 0, "failure": 0}
    finally:
        await was.release()
        g.signal(signal.SIGTERM)
        assert await g.exit_code(30) == 0
