"""Reloading a cluster ceiling on every instance (20 -> 12) under an uneven overload: the sum
of allocations in Redis falls to the new ceiling as requests drain, and once every instance
has reloaded nothing is granted above it (checked in Redis and at the WAS)."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.cluster.redis_server import RedisServer
from tests.cluster.test_cluster_guards import (
    CEILING,
    HEARTBEAT,
    HOLD_MS,
    at_least,
    at_most,
    cluster_doc,
    start_cluster,
    uneven,
)
from tests.support.polling import poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas

LOWER = 12


async def test_a_lower_ceiling_reloaded_everywhere_holds_in_redis_and_at_the_was(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    cluster = await start_cluster(redis_server, start_was, spawn_guard)
    load = uneven(cluster, 150.0)
    load.start()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        async with aiohttp.ClientSession() as s:
            for g in cluster.guards:
                text = g.config_path.read_text()
                lowered = text.replace(f"max_active: {CEILING}\n", f"max_active: {LOWER}\n", 1)
                g.config_path.write_text(lowered)
                async with s.post(f"{g.admin_url}/reload") as r:
                    assert r.status == 200, await r.text()

        async def site_total() -> int:
            return int((await cluster_doc(cluster.guards[0]))["totals"]["site"])

        async def drained_to_lower() -> bool:
            return await site_total() <= LOWER

        loop = asyncio.get_running_loop()
        reloaded = loop.time()
        # Requests held 0.2 s drain; shrinks go out at the next heartbeat at the latest.
        drain = HOLD_MS / 1000 + 4 * HEARTBEAT + 1.0
        await poll_async(drained_to_lower, drain, "Σ alloc stayed above the new ceiling")
        drained_after = loop.time() - reloaded
        await poll_async(lambda: at_most(cluster, LOWER), 1.0, "the WAS never drained")
        cluster.reset_peak()
        totals, active = [], []
        for _ in range(20):  # 2 s of the steady state after the reload, sampled
            await asyncio.sleep(0.1)
            totals.append(await site_total())
            active.append(cluster.was_active())
        docs = [await cluster_doc(g) for g in cluster.guards]
    finally:
        await load.stop()
    print(f"Σ alloc <= {LOWER} {drained_after:.2f} s after the reloads; totals {max(totals)}")
    print(f"WAS mean {sum(active) / len(active):.1f}, peak {cluster.was_peak()}")
    assert max(totals) <= LOWER
    assert cluster.was_peak() <= LOWER
    assert all(d["limits"]["site"] <= LOWER for d in docs)
    assert sum(active) / len(active) >= 0.75 * LOWER  # the lower ceiling is still used
