"""The LEASE script on a real Redis: its invariants under random calls from several members,
reaping, recovery after a wipe, and fair shares. Time is driven by hand (now_ms)."""

from __future__ import annotations

import random
from pathlib import Path

from guard.cluster.client import RedisLink
from guard.cluster.scripts import Keys, LeaseReply, ScopeAsk, lease
from guard.core import lease as lease_arith
from tests.cluster.redis_server import RedisServer

KEYS = Keys.of("test")
TTL, WINDOW = 1000, 500


async def call(
    link: RedisLink, member: str, now: int, *asks: ScopeAsk, fresh: bool = False
) -> LeaseReply:
    return await lease(
        link, KEYS, member, asks, ttl_ms=TTL, window_ms=WINDOW, fresh=fresh, now_ms=now
    )


def ask(
    cap: int, used: int, want: int, demand: int = 1, claim: int = 0, scope: str = "site"
) -> ScopeAsk:
    return ScopeAsk(scope, cap, used, want, demand, claim)


async def held_by_member(link: RedisLink, scope: str) -> dict[str, int]:
    fields = await link.call("HGETALL", KEYS.held)
    suffix = f"|{scope}"
    return {
        k[: -len(suffix)]: int(v)
        for k, v in fields.items()
        if k.endswith(suffix) and not k.endswith(f"|d{suffix}")
    }


async def total(link: RedisLink, scope: str = "site") -> int:
    return int(await link.call("HGET", KEYS.tot, scope) or 0)


async def test_random_calls_keep_the_invariants(redis_link: RedisLink) -> None:
    rng = random.Random(7)
    cap, now = 100, 1_000_000
    used = {f"m{i}": 0 for i in range(4)}
    alloc = dict.fromkeys(used, 0)
    await call(redis_link, "m0", now)  # the first call opens the recovery window
    now += WINDOW
    for _ in range(400):
        now += rng.randint(1, 60)
        member = rng.choice(list(used))
        # In use never exceeds the allocation (admission enforces used <= limit <= alloc).
        used[member] = rng.randint(0, alloc[member])
        want = max(used[member], used[member] + rng.randint(-10, 40))
        before = await total(redis_link)
        reply = await call(redis_link, member, now, ask(cap, used[member], want, rng.randint(1, 9)))
        grant = reply.grants["site"]
        assert grant.alloc >= used[member]
        free_before = cap - (before - alloc[member])
        assert grant.alloc <= max(alloc[member], want, free_before)
        if grant.alloc > alloc[member]:  # growth only from what nobody held
            assert grant.alloc - alloc[member] <= cap - before
        alloc[member] = grant.alloc
        held = await held_by_member(redis_link, "site")
        assert await total(redis_link) == sum(held.values()) == grant.total
        assert sum(held.values()) <= cap
        assert {m: a for m, a in held.items() if a} == {m: a for m, a in alloc.items() if a}


async def test_a_silent_member_is_reaped_by_the_next_call(redis_link: RedisLink) -> None:
    now = 1_000_000
    await call(redis_link, "a", now)
    now += WINDOW
    await call(redis_link, "a", now, ask(100, 0, 30, demand=5))
    await call(redis_link, "b", now, ask(100, 0, 50, demand=3))
    assert await total(redis_link) == 80
    now += TTL // 2
    await call(redis_link, "b", now, ask(100, 0, 50, demand=3))  # b renews, a stays silent
    now += TTL // 2 + 1
    reply = await call(redis_link, "b", now, ask(100, 0, 90, demand=3))
    assert reply.reaped == 1 and reply.members == 1
    assert reply.grants["site"].alloc == 90  # a's 30 came back
    assert await held_by_member(redis_link, "site") == {"b": 90}
    assert int(await redis_link.call("HGET", KEYS.dem, "site")) == 3
    assert await redis_link.call("ZRANGE", KEYS.members, 0, -1) == ["b"]


async def test_a_wiped_redis_grants_nothing_until_holders_reasserted(
    redis_link: RedisLink,
) -> None:
    now = 1_000_000
    await call(redis_link, "a", now)
    now += WINDOW
    await call(redis_link, "a", now, ask(100, 10, 60, claim=0))
    await call(redis_link, "b", now, ask(100, 5, 40))
    await redis_link.call("FLUSHALL")
    now += 10
    # b asks first after the wipe: the window is open, it keeps only what it re-asserts.
    b = await call(redis_link, "b", now, ask(100, 5, 90, claim=40))
    assert b.recovering and b.grants["site"].alloc == 40
    a = await call(redis_link, "a", now + 1, ask(100, 10, 60, claim=60))
    assert a.grants["site"].alloc == 60 and a.grants["site"].total == 100
    after = await call(redis_link, "b", now + WINDOW, ask(100, 5, 90, claim=40))
    assert not after.recovering and after.grants["site"].alloc == 40  # nothing free


async def test_fresh_reopens_the_window_on_an_existing_meta(redis_link: RedisLink) -> None:
    now = 1_000_000
    first = await call(redis_link, "a", now)
    now += WINDOW
    assert (await call(redis_link, "a", now, ask(100, 0, 10))).grants["site"].alloc == 10
    reply = await call(redis_link, "a", now + 1, ask(100, 0, 50, claim=10), fresh=True)
    assert reply.recovering and reply.epoch == first.epoch + 1
    assert reply.grants["site"].alloc == 10


async def test_overload_converges_to_demand_shares(redis_link: RedisLink) -> None:
    cap, now = 1000, 1_000_000
    demands = {"a": 1200, "b": 225, "c": 75}  # offered slots: 1.5x the ceiling, 80/15/5
    alloc = dict.fromkeys(demands, 0)
    fair = dict.fromkeys(demands, cap)
    await call(redis_link, "a", now)
    now += WINDOW
    for beat in range(8):  # calls: every member uses all it has and asks H = 200 more
        for m, d in demands.items():
            now += 10
            used = min(alloc[m], fair[m])
            want = min(used + 200, max(fair[m], used))
            reply = await call(redis_link, m, now, ask(cap, used, want if beat else 200, d))
            alloc[m], fair[m] = reply.grants["site"].alloc, reply.grants["site"].fair
            assert reply.grants["site"].overloaded or beat == 0
            assert reply.grants["site"].total <= cap
    assert fair == {"a": 800, "b": 150, "c": 50}
    assert alloc == fair


async def test_headrooms_alone_split_an_underloaded_ceiling_into_demand_pools(
    redis_link: RedisLink,
) -> None:
    """Why the bench case `cluster` refuses 11-14 % at 0.9x (docs/CLUSTER.md, Known costs):
    at C = 48, 3 members, 0.9x load split 70/20/10 the demands are 30 / 9 / 4 (sum 43 < 48),
    but each asks used + H with H = HMIN = 8: 67 > 48. The growth cut short marks the scope
    contended, contended counts as overloaded, and from then on every member is held to
    ceil(C x d / sum d) = 34 / 11 / 5 (a short by the rounding: 32 / 11 / 5), a static split
    whose small pools lose like Erlang B: 10.0 / 10.6 / 22.7 %, 11.4 % in all (one pool of
    48: 5.6 %). The bench measured 13 / 14 / 23 %, 11-14 % in all (one guard: 4-7 %)."""
    cap, now, h = 48, 1_000_000, 8
    demands = {"a": 30, "b": 9, "c": 4}
    await call(redis_link, "a", now)
    now += WINDOW
    limits = dict.fromkeys(demands, 0)
    fair, overloaded = dict.fromkeys(demands, cap), False
    for _ in range(6):  # rounds of calls, each member using what its demand and limit allow
        for m, d in demands.items():
            now += 10
            used = min(d, limits[m])
            want = lease_arith.want(used, h, fair[m], overloaded, cap)
            grant = (await call(redis_link, m, now, ask(cap, used, want, d))).grants["site"]
            limits[m] = lease_arith.local_limit(grant.alloc, grant.fair, grant.overloaded)
            fair[m], overloaded = grant.fair, grant.overloaded
            assert grant.total <= cap
    assert sum(demands.values()) < cap  # not overloaded by demand ...
    assert grant.overloaded  # ... but by the headrooms (contended)
    assert fair == {"a": 34, "b": 11, "c": 5}
    assert limits == {"a": 32, "b": 11, "c": 5}


async def test_a_scope_dropped_by_a_member_is_released(redis_link: RedisLink) -> None:
    now = 1_000_000
    await call(redis_link, "a", now)
    now += WINDOW
    await call(redis_link, "a", now, ask(100, 0, 20), ask(50, 0, 10, scope="rule:x"))
    assert await total(redis_link, "rule:x") == 10
    await call(redis_link, "a", now + 1, ask(100, 0, 20))
    assert await total(redis_link, "rule:x") == 0
    assert await held_by_member(redis_link, "rule:x") == {}


async def test_every_key_expires_when_the_cluster_is_abandoned(redis_link: RedisLink) -> None:
    await call(redis_link, "a", 1_000_000, ask(100, 0, 20))
    for key in KEYS.all():
        ttl = int(await redis_link.call("PTTL", key))
        assert 0 < ttl <= 86_400_000, key


def test_check_cluster_tries_the_connection(redis_server: RedisServer, tmp_path: Path) -> None:
    import subprocess
    import sys

    def check(url: str) -> subprocess.CompletedProcess[str]:
        cfg = tmp_path / "g.yaml"
        cfg.write_text(
            "backends: [{name: a, url: 'http://127.0.0.1:9', max_active: 5}]\n"
            f"cluster: {{name: shop, redis: '{url}'}}\n"
        )
        cmd = [sys.executable, "-m", "guard.cli", "check", "--cluster", "-c", str(cfg)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    ok = check(redis_server.url)
    assert ok.returncode == 0 and "LEASE script loaded" in ok.stdout, ok.stderr
    redis_server.kill()
    down = check(redis_server.url)
    assert down.returncode == 1 and "cannot reach" in down.stderr
