"""Redis paused (SIGSTOP) under load, then resumed (SIGCONT), for `closed` and `open`
(`keep`: test_cluster_guards). A stopped Redis accepts connections and answers nothing: every
lease call runs into its deadline, the local lease expires, and the fail mode takes over.
The simulated WAS's own counts are the oracle; probes measure what a request waits at guard.

- closed: nothing new reaches the WAS from the lease deadline on, the WAS drains, full use
  again after SIGCONT; never above the ceiling.
- open: admissions go on (the whole ceiling per instance), every such decision is counted;
  after SIGCONT the cluster is exact again.
- both: no request waits on Redis (a refusal or an admission is answered in about its hold,
  never in about the pause).
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field

import aiohttp

from tests.cluster.redis_server import RedisServer
from tests.cluster.test_cluster_guards import (
    CEILING,
    HOLD_MS,
    TTL,
    Cluster,
    after,
    at_least,
    at_most,
    cluster_doc,
    start_cluster,
    uneven,
)
from tests.cluster.test_cluster_redis_loss import BACK_TO_NORMAL, admitted, sample_active
from tests.support.polling import poll_async
from tests.support.processes import SpawnGuard
from tests.support.servers import StartWas

PAUSE = TTL + 0.6  # past every local lease deadline, with time to watch the fail mode


@dataclass
class Probes:
    """One request to every instance every 50 ms; the seconds each waited beyond its hold."""

    urls: list[str]
    waits: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            while loop.time() < until:
                await asyncio.gather(*(self._one(session, url) for url in self.urls))
                await asyncio.sleep(0.05)  # pacing the probes, not waiting for a condition

    async def _one(self, session: aiohttp.ClientSession, url: str) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with session.get(f"{url}/work?ms={HOLD_MS}") as r:
            await r.read()
        took = loop.time() - began
        self.statuses.append(r.status)
        self.waits.append(took - HOLD_MS / 1000 if r.status == 200 else took)

    def check_nobody_waited_on_redis(self) -> None:
        print(
            f"      waits beyond the hold: median {statistics.median(self.waits) * 1000:.1f} ms,"
            f" max {max(self.waits) * 1000:.1f} ms over {len(self.waits)} probes"
        )
        # A request that awaited Redis would wait the pause (or at least redis_timeout, 0.1 s).
        assert statistics.median(self.waits) < 0.05
        assert max(self.waits) < 0.5


async def pause_with_probes(cluster: Cluster) -> tuple[float, asyncio.Task[None], Probes]:
    loop = asyncio.get_running_loop()
    cluster.redis.pause()
    paused = loop.time()
    probes = Probes([g.url for g in cluster.guards])
    return paused, asyncio.create_task(probes.run(paused + PAUSE)), probes


async def resume_and_renew(cluster: Cluster) -> float:
    """SIGCONT; seconds until every instance holds a valid lease again."""
    loop = asyncio.get_running_loop()
    cluster.redis.resume()
    resumed = loop.time()

    async def all_valid() -> bool:
        docs = [await cluster_doc(g) for g in cluster.guards]
        return all(d["lease_valid"] for d in docs)

    await poll_async(all_valid, 5.0, "instances never renewed on the resumed Redis")
    return loop.time() - resumed


async def test_closed_admits_nothing_while_redis_is_paused_then_recovers(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    cluster = await start_cluster(redis_server, start_was, spawn_guard, "closed")
    load = uneven(cluster, 150.0)
    load.start()
    loop = asyncio.get_running_loop()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        paused, probing, probes = await pause_with_probes(cluster)
        # Every lease was last renewed before the pause: valid at most until paused + TTL.
        await poll_async(lambda: after(loop, paused + TTL), TTL + 1.0)
        arrived = cluster.was_arrivals()
        await poll_async(lambda: after(loop, paused + PAUSE), PAUSE)
        still_arrived, drained = cluster.was_arrivals(), cluster.was_active()
        await probing
        renewed = await resume_and_renew(cluster)
        await poll_async(lambda: at_least(cluster, CEILING - 2), 2.0, "no load after SIGCONT")
    finally:
        await load.stop()
    print(f"closed: leases valid {renewed:.2f} s after SIGCONT")
    probes.check_nobody_waited_on_redis()
    assert still_arrived == arrived  # nothing new reached the WAS after the deadline
    assert drained == 0  # and what was in it finished (holds of 0.2 s < 0.6 s)
    assert {429, 503} & set(probes.statuses)  # refused, answered at once (checked above)
    assert cluster.was_peak() <= CEILING
    assert renewed <= BACK_TO_NORMAL


async def test_open_keeps_admitting_while_redis_is_paused_then_is_exact_again(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    cluster = await start_cluster(redis_server, start_was, spawn_guard, "open")
    load = uneven(cluster, 150.0)  # instance 0 alone offers 24 > 20 concurrent
    load.start()
    loop = asyncio.get_running_loop()
    try:
        await poll_async(lambda: at_least(cluster, CEILING - 2), 5.0, "WAS never filled up")
        paused, probing, probes = await pause_with_probes(cluster)
        await poll_async(lambda: after(loop, paused + TTL), TTL + 1.0)
        cluster.reset_peak()
        admitted_at_expiry = await admitted(cluster)
        await poll_async(lambda: after(loop, paused + PAUSE), PAUSE)
        admitted_paused = await admitted(cluster) - admitted_at_expiry
        peak_paused = cluster.was_peak()
        await probing
        renewed = await resume_and_renew(cluster)
        docs = [await cluster_doc(g) for g in cluster.guards]

        async def exact() -> bool:  # no "totals": the view's own Redis link is reconnecting
            totals = (await cluster_doc(cluster.guards[0])).get("totals", {})
            return "site" in totals and int(totals["site"]) <= CEILING

        await poll_async(exact, HOLD_MS / 1000 + BACK_TO_NORMAL, "never back under the ceiling")
        await poll_async(lambda: at_most(cluster, CEILING), 1.0, "the WAS never drained")
        cluster.reset_peak()
        after_resume = await sample_active(cluster, 1.0)
    finally:
        await load.stop()
    degraded = sum(int(str(d["degraded_decisions"])) for d in docs)
    print(f"open: {admitted_paused} admitted in the last {PAUSE - TTL:.1f} s of the pause,")
    print(f"      WAS peak {peak_paused}, {degraded} degraded decisions,")
    print(f"      leases valid {renewed:.2f} s after SIGCONT")
    probes.check_nobody_waited_on_redis()
    assert admitted_paused >= 30  # 150 /s offered: still admitting (>= 50 /s)
    assert peak_paused > CEILING  # no cluster limit, as documented
    assert degraded >= admitted_paused
    assert renewed <= BACK_TO_NORMAL
    assert cluster.was_peak() <= CEILING  # exact again
    assert max(after_resume) >= CEILING - 2  # and still using the ceiling
