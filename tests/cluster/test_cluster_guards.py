"""Three `guard run` processes on one real Redis in front of one slow simulated WAS.

The WAS's own peak concurrency is the oracle: it never exceeds the cluster's ceiling,
whatever happens to an instance or to Redis."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from guard.tools.was import STATE
from tests.cluster.load import Load
from tests.cluster.redis_server import RedisServer
from tests.support.polling import poll_async
from tests.support.processes import GuardProcess, SpawnGuard
from tests.support.servers import StartWas, Was

CEILING = 20
HOLD_MS = 200  # capacity: CEILING / 0.2 s = 100 admissions/s
TTL, HEARTBEAT, RECOVERY_WINDOW = 1.0, 0.1, 0.3
BACKOFF_MAX = 1.0  # RedisLink's reconnect backoff ceiling


@dataclass
class Cluster:
    redis: RedisServer
    was: Was
    guards: list[GuardProcess]

    def was_peak(self) -> int:
        return int(self.was.runner.app[STATE].max_seen_active)

    def was_active(self) -> int:
        return int(self.was.runner.app[STATE].active)

    def was_arrivals(self) -> int:
        """Every request that reached the WAS: answered or still in it."""
        state = self.was.runner.app[STATE]
        return int(state.served + state.active)

    def reset_peak(self) -> None:
        state = self.was.runner.app[STATE]
        state.max_seen_active = state.active


def guard_body(redis_url: str, was_port: int, on_loss: str) -> str:
    return f"""
    max_active: {CEILING}
    backends:
      - {{name: app, url: "http://127.0.0.1:{was_port}", max_active: 1000}}
    cluster:
      name: t
      redis: {redis_url}
      lease_ttl: {TTL}s
      heartbeat: {int(HEARTBEAT * 1000)}ms
      redis_timeout: 100ms
      recovery_window: {int(RECOVERY_WINDOW * 1000)}ms
      on_redis_loss: {on_loss}
    """


async def start_cluster(
    redis: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard, on_loss: str = "keep"
) -> Cluster:
    was = await start_was("was", workers=500, service_time=0.0)
    body = guard_body(redis.url, was.port, on_loss)
    guards = [await spawn_guard(body) for _ in range(3)]
    return Cluster(redis, was, guards)


@pytest.fixture
async def cluster(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> AsyncIterator[Cluster]:
    yield await start_cluster(redis_server, start_was, spawn_guard)


def uneven(cluster: Cluster, total_rate: float) -> Load:
    urls = [g.url for g in cluster.guards]
    return Load(
        dict(zip(urls, (total_rate * 0.8, total_rate * 0.15, total_rate * 0.05), strict=True)),
        HOLD_MS,
    )


async def cluster_doc(g: GuardProcess) -> dict[str, Any]:
    return dict((await g.status())["cluster"])


async def test_uneven_overload_never_exceeds_the_ceiling_and_shares_fairly(
    cluster: Cluster,
) -> None:
    load = uneven(cluster, 150.0)  # 1.5x the capacity, 80/15/5 over the instances
    load.start()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        load.reset()
        samples = []
        for _ in range(30):  # 3 s of samples of the WAS's own count
            await asyncio.sleep(0.1)  # sampling interval, not a wait for a condition
            samples.append(cluster.was_active())
        tallies = list(load.tallies.values())
    finally:
        await load.stop()
    assert cluster.was_peak() <= CEILING
    utilisation = sum(samples) / len(samples) / CEILING
    shares = [t.admitted / t.sent for t in tallies if t.sent]
    print(f"utilisation {utilisation:.3f} shares {[round(s, 3) for s in shares]}")
    assert utilisation >= 0.85
    assert max(shares) - min(shares) <= 0.25, shares
    doc = await cluster_doc(cluster.guards[0])
    assert len(doc["members"]) == 3
    assert doc["totals"]["site"] <= CEILING


async def at_least(cluster: Cluster, n: int) -> bool:
    return cluster.was_active() >= n


async def test_a_killed_instance_slots_return_within_ttl(cluster: Cluster) -> None:
    busy, *_ = cluster.guards
    load = Load({g.url: 50.0 for g in cluster.guards}, HOLD_MS)
    load.start()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        victim = cluster.guards[2]
        victim.signal(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()

        async def dead_member_gone() -> bool:
            return len((await cluster_doc(busy))["members"]) == 2

        await poll_async(dead_member_gone, TTL + HEARTBEAT + 1.0, "dead member not reaped")

        async def survivors_hold_all() -> bool:
            return (await cluster_doc(busy))["totals"]["site"] >= CEILING - 2

        await poll_async(survivors_hold_all, 2.0, "survivors did not take the slots back")
        recovered = loop.time() - killed_at
    finally:
        await load.stop()
    print(f"slots back after {recovered:.2f} s")
    assert recovered <= TTL + HEARTBEAT + 0.5
    assert cluster.was_peak() <= CEILING


async def test_a_paused_redis_trips_the_deadline_and_keeps_the_ceiling(cluster: Cluster) -> None:
    load = uneven(cluster, 150.0)
    load.start()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        cluster.redis.pause()
        loop = asyncio.get_running_loop()
        paused_at = loop.time()

        async def redis_down() -> bool:
            return not (await cluster_doc(cluster.guards[0]))["redis_up"]

        await poll_async(redis_down, 2.0, "the deadline never tripped")
        await poll_async(lambda: after(loop, paused_at + 1.5), 3.0)
        assert cluster.was_active() >= CEILING // 2  # keep: still serving
        cluster.redis.resume()

        async def redis_up() -> bool:
            return bool((await cluster_doc(cluster.guards[0]))["redis_up"])

        await poll_async(redis_up, 3.0, "never reconnected")
    finally:
        await load.stop()
    assert cluster.was_peak() <= CEILING


async def after(loop: asyncio.AbstractEventLoop, when: float) -> bool:
    return loop.time() >= when


async def at_most(cluster: Cluster, n: int) -> bool:
    return cluster.was_active() <= n
