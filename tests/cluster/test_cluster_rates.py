"""A rule rate across three guard processes on one Redis: the cluster admits what one token
bucket would (R per second plus the burst B), within 1 %, under an uneven overload.

Counted twice: at guard (the rule's `admitted` outcomes on every instance) and at the
simulated WAS (every request that reached it), over a window in the steady state and over
the whole run (never above B + R·t)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from guard.tools.was import STATE
from tests.cluster.load import Load
from tests.cluster.redis_server import RedisServer
from tests.support.polling import poll_async
from tests.support.processes import GuardProcess, SpawnGuard
from tests.support.servers import StartWas

RATE, BURST = 150, 15  # tokens per second, tokens: one bucket's contract
OFFERED = 1.5 * RATE  # arrivals per second over the three instances, 80 / 15 / 5
HOLD_MS = 10  # the WAS answers fast: only the rate binds
WINDOW = 5.0  # seconds of steady state measured


def rate_body(redis_url: str, was_port: int) -> str:
    return f"""
    max_active: 1000
    backends:
      - {{name: app, url: "http://127.0.0.1:{was_port}", max_active: 1000}}
    rules:
      - {{name: buy, path: /**, rate: {RATE}/s, burst: {BURST}}}
    cluster:
      name: t
      redis: {redis_url}
      lease_ttl: 1s
      heartbeat: 100ms
      redis_timeout: 100ms
      recovery_window: 300ms
    """


async def admitted(g: GuardProcess) -> int:
    rule = next(r for r in (await g.status())["rules"] if r["name"] == "buy")
    return int(rule["counts"].get("admitted", 0))


async def test_a_rule_rate_across_three_instances_is_one_bucket(
    redis_server: RedisServer, start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    was = await start_was("was", workers=500, service_time=0.0)
    body = rate_body(redis_server.url, was.port)
    guards = [await spawn_guard(body) for _ in range(3)]
    state = was.runner.app[STATE]

    def at_was() -> int:  # every request that reached the WAS: done or still in it
        return state.served + state.active

    loop = asyncio.get_running_loop()
    split = (0.8, 0.15, 0.05)
    load = Load({g.url: OFFERED * s for g, s in zip(guards, split, strict=True)}, HOLD_MS)
    started = loop.time()
    load.start()
    try:

        async def all_admitting() -> bool:
            counts = await asyncio.gather(*(admitted(g) for g in guards))
            return min(counts) > 0

        await poll_async(all_admitting, 5.0, "an instance never admitted under its rate share")
        # Shares converge within a few heartbeats; then one window of the steady state.
        await poll_async(_until(loop, loop.time() + 1.0), 2.0)
        guard_0, was_0, t0 = await _snapshot(guards, at_was, loop)
        await poll_async(_until(loop, t0 + WINDOW), WINDOW + 1.0)
        guard_1, was_1, t1 = await _snapshot(guards, at_was, loop)
        shares = [(await g.status())["cluster"]["limits"] for g in guards]
    finally:
        await load.stop()
    print("limits", shares, {u: t.admitted for u, t in load.tallies.items()})
    ended = loop.time()
    window, ideal = t1 - t0, RATE * (t1 - t0)
    by_guard, by_was = guard_1 - guard_0, was_1 - was_0
    total_at_was = at_was()
    print(f"window {window:.2f} s: ideal {ideal:.0f}, guard {by_guard}, WAS {by_was}")
    print(f"whole run {ended - started:.2f} s: WAS {total_at_was}, bound {_bound(ended - started)}")
    assert abs(by_guard - ideal) <= 0.01 * ideal
    assert abs(by_was - ideal) <= 0.01 * ideal
    assert by_guard <= _bound(window)
    assert total_at_was <= _bound(ended - started)  # never above one bucket's contract


def _bound(seconds: float) -> float:
    return BURST + RATE * seconds


def _until(loop: asyncio.AbstractEventLoop, when: float) -> Callable[[], Awaitable[bool]]:
    async def passed() -> bool:
        return loop.time() >= when

    return passed


async def _snapshot(
    guards: list[GuardProcess], at_was: Callable[[], int], loop: asyncio.AbstractEventLoop
) -> tuple[int, int, float]:
    """Admissions at guard (all instances, read together) and at the WAS, at one moment."""
    before = loop.time()
    counts = await asyncio.gather(*(admitted(g) for g in guards))
    return sum(counts), at_was(), (before + loop.time()) / 2
