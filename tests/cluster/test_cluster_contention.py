"""The LEASE script when headrooms, not demands, fill the cap: a member whose growth is cut
short for lack of free slots marks the scope contended, and every member is then held to
its demand share, so a quiet member's idle headroom goes back to the busy one."""

from __future__ import annotations

from guard.cluster.client import RedisLink
from tests.cluster.test_lease_script import WINDOW, ask, call


async def test_contention_moves_idle_headroom_to_the_busy_member(redis_link: RedisLink) -> None:
    cap, now, h = 24, 1_000_000, 8
    await call(redis_link, "busy", now)
    now += WINDOW
    # Σ demand 20 < 24: not overloaded by demand. The quiet member holds used + H = 10.
    quiet = await call(redis_link, "quiet", now, ask(cap, 2, 2 + h, demand=2))
    assert quiet.grants["site"].alloc == 10 and not quiet.grants["site"].overloaded
    busy = await call(redis_link, "busy", now + 1, ask(cap, 14, 14 + h, demand=18))
    grant = busy.grants["site"]
    assert grant.alloc == 14  # cut short: only 14 were free
    assert grant.overloaded  # ... so the scope is contended
    # The quiet member now sees the contention and shrinks to its share ceil(24 * 2 / 20).
    quiet = await call(redis_link, "quiet", now + 2, ask(cap, 2, 2 + h, demand=2))
    assert quiet.grants["site"].overloaded and quiet.grants["site"].fair == 3
    want = min(2 + h, max(quiet.grants["site"].fair, 2))  # guard.core.lease.want
    quiet = await call(redis_link, "quiet", now + 3, ask(cap, 2, want, demand=2))
    assert quiet.grants["site"].alloc == 3
    # The busy member grows into what was freed, up to its share ceil(24 * 18 / 20) = 22.
    busy = await call(redis_link, "busy", now + 4, ask(cap, 14, 22, demand=18))
    assert busy.grants["site"].alloc == 21 and busy.grants["site"].total == cap
    # The contention passes one lease TTL after the last cut.
    later = await call(redis_link, "quiet", now + 4 + 1001, ask(cap, 2, 3, demand=2))
    assert not later.grants["site"].overloaded
