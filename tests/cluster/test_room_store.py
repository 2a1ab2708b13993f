"""The waiting room's shared line on a real Redis: ClusterRoomStore + guard/cluster/lua/room.lua.

Place numbers leased in blocks are unique and increasing per instance under concurrent
issue; the watermark script (driven on a fake Redis time) is monotonic and never passes the
highest number issued; an operator close reaches every instance at its next sync; a Redis
restarted empty never issues a number twice."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from guard.cluster.client import RedisLink
from guard.cluster.room_store import ClusterRoomStore, RoomKeys
from guard.cluster.room_sync import RoomSync
from guard.core.room_store import CLOSED, OPEN
from tests.cluster.redis_server import RedisServer
from tests.support.polling import poll

EPOCH = 1_700_000_000


def stores(n: int, room: str = "sale") -> list[ClusterRoomStore]:
    keys = RoomKeys("shop", room)
    return [ClusterRoomStore(keys, f"m{i}", time.monotonic, EPOCH + i) for i in range(n)]


def syncer(link: RedisLink, members: list[ClusterRoomStore], window: float = 0.3) -> RoomSync:
    return RoomSync(link, lambda: members, interval=0.05, recovery_window=window)


async def at(sync: RoomSync, store: ClusterRoomStore, now_ms: int, **proposal: Any) -> None:
    """One script call on a fake Redis time (the script's test override)."""
    if proposal:
        store.proposal = (proposal["brake"], proposal["alive"], proposal["rate"], 10.0)
    args = store.request(sync.params, False)
    args[20] = str(now_ms)
    keys = [store.keys.room, store.keys.members]
    store.apply(args, list(await sync.link.evalsha(sync.script, keys, args)))


@asynccontextmanager
async def run_syncs(url: str, members: list[ClusterRoomStore]) -> AsyncIterator[list[RedisLink]]:
    """A sync task per member, each with its own link (one per instance, as in guard)."""
    links = [RedisLink(url, timeout=0.5) for _ in members]
    runs = [
        asyncio.create_task(syncer(link, [s]).run()) for link, s in zip(links, members, strict=True)
    ]
    try:
        yield links
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for link in links:
            await link.close()


async def issue_until(members: list[ClusterRoomStore], total: int) -> list[list[int]]:
    """Every member issues as fast as it can (yielding to the syncs) until ``total``."""
    got: list[list[int]] = [[] for _ in members]
    deadline = time.monotonic() + 10
    while sum(map(len, got)) < total:
        assert time.monotonic() < deadline, f"only {sum(map(len, got))} numbers issued"
        for numbers, store in zip(got, members, strict=True):
            for _ in range(3):
                n = store.issue()
                if n:
                    numbers.append(n)
        await asyncio.sleep(0)
    return got


async def test_numbers_are_unique_and_increasing_per_instance(
    redis_server: RedisServer,
) -> None:
    members = stores(3)
    async with run_syncs(redis_server.url, members):
        got = await issue_until(members, 3000)
    flat = [n for numbers in got for n in numbers]
    assert len(flat) == len(set(flat)), "a place number was issued twice"
    for numbers in got:
        assert numbers and numbers == sorted(numbers)
    # All three adopted the first instance's line (one epoch), and blocks grew with the rate.
    assert len({s.epoch() for s in members}) == 1
    assert max(s.block_size() for s in members) > 1


async def test_watermark_moves_at_the_rate_and_never_passes_issued(
    redis_link: RedisLink,
) -> None:
    a, b = stores(2)
    sync = syncer(redis_link, [a, b], window=0.0)
    t = 1_000_000
    await at(sync, a, t, brake=1.0, alive=1.0, rate=0.0)  # creates the line
    await at(sync, b, t, brake=1.0, alive=1.0, rate=0.0)  # adopts it
    issued: list[int] = []
    for _ in range(40):  # past the (1 ms) recovery window: a number per call once asked
        t += 1
        await at(sync, a, t)
        n = a.issue()  # an empty hand asks for a block at the next call
        if n:
            issued.append(n)
        if len(issued) == 12:
            break
    assert all(issued) and issued == sorted(issued)
    seen: list[float] = []
    for step in range(1, 41):  # 4 s at 10/s, 100 ms steps, both instances ticking
        t += 100
        await at(sync, a, t, brake=1.0, alive=1.0, rate=10.0)
        await at(sync, b, t, brake=1.0, alive=0.0, rate=10.0)
        seen.append(b.advance(math.inf))
        assert seen[-1] <= a.issued(), "the watermark passed the highest number issued"
        if step <= 10:  # before it reaches the last number: exactly rate x elapsed
            assert abs(seen[-1] - (issued[0] - 1 + step)) < 1e-6 or seen[-1] >= issued[0]
    assert seen == sorted(seen), "the watermark went back"
    assert seen[-1] == a.issued()
    # A braked instance stops the line for everyone.
    more = a.issue() or 0
    for _ in range(3):
        t += 100
        await at(sync, a, t, brake=0.0, alive=1.0, rate=10.0)
    assert a.issued() >= more > 0 and b.advance(0.0) == seen[-1]


async def test_close_on_one_instance_reaches_the_others(redis_link: RedisLink) -> None:
    a, b, c = members = stores(3)
    sync = syncer(redis_link, members)
    await sync.round()
    assert {s.state() for s in members} == {OPEN}
    b.set_state(CLOSED)
    assert b.state() == CLOSED  # at once where it was set
    for store in (b, a, c):  # the next sync of each: everywhere
        await sync.sync(store)
    assert a.state() == CLOSED and c.state() == CLOSED
    a.set_state(OPEN)
    for store in (a, b, c):
        await sync.sync(store)
    assert {s.state() for s in members} == {OPEN}


async def test_redis_restarted_empty_never_issues_a_number_twice(
    redis_server: RedisServer,
) -> None:
    members = stores(2)
    async with run_syncs(redis_server.url, members) as links:
        before = await issue_until(members, 400)
        top = max(n for numbers in before for n in numbers)
        redis_server.kill()
        redis_server.start()  # empty, same port
        await poll(lambda: all(s.recovering for s in members), 5.0, lambda: "no recovery")
        after = await issue_until(members, 400)
        assert all(link.connects >= 2 for link in links)
    flat = [n for numbers in before + after for n in numbers]
    assert len(flat) == len(set(flat)), "a number was issued twice across the restart"
    assert min(n for numbers in after for n in numbers if n > top) > top
    assert len({s.epoch() for s in members}) == 1
