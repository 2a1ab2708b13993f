"""`workers: N` in cluster mode: every worker process is a member of its own, leasing from
the one cluster-wide ceiling (no static split). Two guards with two workers each on one
Redis: four members, and the WAS never sees more than the ceiling under an uneven overload."""

from __future__ import annotations

import asyncio
import signal

import redis.asyncio as aioredis

from guard.cluster.scripts import Keys
from guard.tools.was import STATE
from tests.cluster.load import Load
from tests.cluster.redis_server import RedisServer
from tests.support.polling import poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas

CEILING, HOLD_MS = 20, 200


async def test_two_guards_of_two_workers_are_four_members_under_one_ceiling(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    was = await start_was("was", workers=500, service_time=0.0)
    body = f"""
    workers: 2
    max_active: {CEILING}
    timeouts: {{shutdown: 3s}}  # a drain seen once to last past 30 s under load: see CLUSTER.md
    backends:
      - {{name: app, url: "http://127.0.0.1:{was.port}", max_active: 1000}}
    cluster:
      name: t
      redis: {redis_server.url}
      lease_ttl: 1s
      heartbeat: 100ms
      redis_timeout: 100ms
      recovery_window: 300ms
    """
    guards = [await spawn_guard(body) for _ in range(2)]
    keys = Keys.of("t")
    redis = aioredis.from_url(redis_server.url, decode_responses=True)
    state = was.runner.app[STATE]

    async def members() -> list[str]:
        return [str(m) for m in await redis.zrange(keys.members, 0, -1)]

    async def four_members() -> bool:
        return len(await members()) == 4

    # 1.5x the capacity (C / hold = 100 /s), 80 / 20 over the two guards; each request on
    # its own connection, so the kernel spreads them over a guard's workers.
    load = Load({guards[0].url: 120.0, guards[1].url: 30.0}, HOLD_MS)
    load.start()
    try:
        await poll_async(four_members, 10.0, "not every worker joined the cluster")

        async def filled() -> bool:
            return state.active >= CEILING - 2

        await poll_async(filled, 5.0, "the WAS never filled up")
        samples = []
        for _ in range(20):  # 2 s of the steady state, sampled
            await asyncio.sleep(0.1)
            samples.append(state.active)
        held = await redis.hgetall(keys.held)
        total = int(await redis.hget(keys.tot, "site") or 0)
        listed = await members()
    finally:
        await load.stop()
        await redis.aclose()
        for g in guards:
            g.signal(signal.SIGTERM)
    pids = {m.split(":")[1] for m in listed}
    holders = {k.split("|")[0] for k in held if k.endswith("|site") and int(held[k]) > 0}
    mean = sum(samples) / len(samples)
    print(f"members {listed}; WAS mean {mean:.1f}, peak {state.max_seen_active}")
    assert len(pids) == 4  # four processes, each its own member
    assert len(holders) >= 3  # the slots are spread over the workers that get traffic
    assert total <= CEILING
    assert state.max_seen_active <= CEILING
    assert mean >= 0.75 * CEILING  # measured 0.85 with four members on a busy 2-core host
    for g in guards:
        assert await g.exit_code(30) == 0
