"""Redis lost under load, for each `on_redis_loss` mode, with the numbers docs/CLUSTER.md
promises: three guard processes, an uneven 1.5x overload, Redis SIGKILLed and restarted
empty on the same port. The simulated WAS's own counts are the oracle.

- keep: the WAS stays within 5 % of its load before the loss, never above the ceiling.
- closed: nothing new reaches the WAS from TTL after the loss (the local lease deadline).
- open: admissions go on with no cluster limit (the WAS may exceed the ceiling), every
  decision on the expired lease is counted, and the cluster is exact again after restart.
All three are back to normal within recovery_window + the reconnect backoff + 2 heartbeats.
"""

from __future__ import annotations

import asyncio

from tests.cluster.redis_server import RedisServer
from tests.cluster.test_cluster_guards import (
    BACKOFF_MAX,
    CEILING,
    HEARTBEAT,
    HOLD_MS,
    RECOVERY_WINDOW,
    TTL,
    Cluster,
    after,
    at_least,
    at_most,
    cluster_doc,
    start_cluster,
    uneven,
)
from tests.support.polling import poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas

BACK_TO_NORMAL = RECOVERY_WINDOW + BACKOFF_MAX + 2 * HEARTBEAT + 0.3  # + 0.3: a shared CPU


async def sample_active(cluster: Cluster, seconds: float) -> list[int]:
    """The WAS's concurrency every 50 ms for ``seconds`` (a measurement, not a wait)."""
    samples = []
    for _ in range(round(seconds / 0.05)):
        await asyncio.sleep(0.05)
        samples.append(cluster.was_active())
    return samples


async def admitted(cluster: Cluster) -> int:
    docs = await asyncio.gather(*(g.status() for g in cluster.guards))
    return sum(r["counts"].get("admitted", 0) for d in docs for r in d["rules"])


async def restart_and_recover(cluster: Cluster) -> tuple[float, list[dict[str, object]]]:
    """Restart Redis empty; seconds until every instance holds a valid lease again."""
    loop = asyncio.get_running_loop()
    cluster.redis.start()
    restarted = loop.time()

    async def all_recovered() -> bool:
        docs = [await cluster_doc(g) for g in cluster.guards]
        return all(d["recoveries"] >= 1 and d["lease_valid"] for d in docs)

    await poll_async(all_recovered, 5.0, "instances did not re-assert on the new Redis")
    elapsed = loop.time() - restarted
    return elapsed, [await cluster_doc(g) for g in cluster.guards]


async def test_keep_holds_the_load_and_the_ceiling_while_redis_is_gone(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    cluster = await start_cluster(redis_server, start_was, spawn_guard, "keep")
    load = uneven(cluster, 150.0)
    load.start()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        before = await sample_active(cluster, 1.0)
        redis_server.kill()
        during = await sample_active(cluster, TTL + 0.5)  # past every lease's expiry
        elapsed, docs = await restart_and_recover(cluster)
        await poll_async(lambda: at_least(cluster, CEILING - 2), 2.0, "no load after restart")
    finally:
        await load.stop()
    mean_before, mean_during = sum(before) / len(before), sum(during) / len(during)
    print(f"keep: WAS {mean_before:.1f} before, {mean_during:.1f} while Redis was gone;")
    print(f"      leases valid {elapsed:.2f} s after restart")
    assert mean_during >= 0.95 * mean_before
    assert cluster.was_peak() <= CEILING
    assert elapsed <= BACK_TO_NORMAL
    assert sum(int(str(d["degraded_decisions"])) for d in docs) > 0


async def test_closed_admits_nothing_from_the_lease_deadline(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    cluster = await start_cluster(redis_server, start_was, spawn_guard, "closed")
    load = uneven(cluster, 150.0)
    load.start()
    loop = asyncio.get_running_loop()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        redis_server.kill()
        killed = loop.time()
        # Every lease was last renewed before the kill: valid at most until killed + TTL.
        await poll_async(lambda: after(loop, killed + TTL), TTL + 1.0)
        arrived = cluster.was_arrivals()
        await poll_async(lambda: after(loop, killed + TTL + 0.5), 1.0)
        still_arrived = cluster.was_arrivals()
        drained = cluster.was_active()
        elapsed, docs = await restart_and_recover(cluster)
        await poll_async(lambda: at_least(cluster, CEILING - 2), 2.0, "no load after restart")
        back = loop.time() - killed
    finally:
        await load.stop()
    print(f"closed: leases valid {elapsed:.2f} s after restart, load back {back:.2f} s after kill")
    assert still_arrived == arrived  # nothing new reached the WAS after the deadline
    assert drained == 0  # and what was in it finished (holds of 0.2 s < 0.5 s)
    assert cluster.was_peak() <= CEILING
    assert elapsed <= BACK_TO_NORMAL
    assert sum(int(str(d["degraded_decisions"])) for d in docs) > 0


async def test_open_admits_without_a_cluster_limit_then_is_exact_again(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    cluster = await start_cluster(redis_server, start_was, spawn_guard, "open")
    load = uneven(cluster, 150.0)  # instance 0 alone offers 24 > 20 concurrent
    load.start()
    loop = asyncio.get_running_loop()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        redis_server.kill()
        killed = loop.time()
        await poll_async(lambda: after(loop, killed + TTL), TTL + 1.0)
        cluster.reset_peak()
        admitted_at_expiry = await admitted(cluster)
        await poll_async(lambda: at_least(cluster, CEILING + 1), 3.0, "open kept a limit")

        async def still_admitting() -> bool:  # 100 /s offered: 30 in well under a second
            return await admitted(cluster) >= admitted_at_expiry + 30

        await poll_async(still_admitting, 1.0, "open stopped admitting without a lease")
        admitted_later = await admitted(cluster)
        elapsed, docs = await restart_and_recover(cluster)

        # Back to exact: instances re-asserted what they used; Redis grants nothing until
        # the sum drains under the ceiling, then fair shares.
        async def exact() -> bool:
            return int((await cluster_doc(cluster.guards[0]))["totals"]["site"]) <= CEILING

        await poll_async(exact, HOLD_MS / 1000 + BACK_TO_NORMAL, "never back under the ceiling")
        exact_after = loop.time() - killed
        await poll_async(lambda: at_most(cluster, CEILING), 1.0, "the WAS never drained")
        cluster.reset_peak()
        after_restart = await sample_active(cluster, 1.0)
    finally:
        await load.stop()
    degraded = sum(int(str(d["degraded_decisions"])) for d in docs)
    print(f"open: {admitted_later - admitted_at_expiry} admitted with no lease, {degraded}")
    print(f"      degraded decisions; exact {exact_after:.2f} s after the kill")
    assert degraded >= admitted_later - admitted_at_expiry
    assert elapsed <= BACK_TO_NORMAL
    assert cluster.was_peak() <= CEILING  # exact again
    assert max(after_restart) >= CEILING - 2  # and still using the ceiling
