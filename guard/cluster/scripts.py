"""The LEASE script's keys, arguments and reply (the script itself: lua/lease.lua).

Every key of one guard cluster carries the hash tag ``{guard:<name>}``, so a script touches
one Redis Cluster slot, and every key is declared in KEYS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from guard.cluster.client import Arg, RedisLink, Script

LEASE: Final = Script.load("lease")
REAP_LIMIT: Final = 8  # expired members reaped per call: bounded work, the next call reaps more
IDLE_EXPIRE_MS: Final = 86_400_000  # an abandoned cluster's keys go after a day


@dataclass(frozen=True)
class Keys:
    members: str
    tot: str
    held: str
    dem: str
    meta: str

    @classmethod
    def of(cls, cluster: str) -> Keys:
        tag = f"{{guard:{cluster}}}"
        return cls(f"{tag}:members", f"{tag}:tot", f"{tag}:held", f"{tag}:dem", f"{tag}:meta")

    def all(self) -> list[str]:
        return [self.members, self.tot, self.held, self.dem, self.meta]


@dataclass(frozen=True)
class ScopeAsk:
    """One scope of a LEASE call. ``used``: in use now; ``want``: the allocation asked for;
    ``demand``: the weight for fair shares; ``claim``: what this member believes it holds
    (re-asserted after a Redis restart or failover)."""

    scope: str
    cap: int
    used: int
    want: int
    demand: int
    claim: int


@dataclass(frozen=True)
class ScopeGrant:
    alloc: int
    fair: int
    overloaded: bool
    total: int  # the sum of all members' allocations after this call


@dataclass(frozen=True)
class LeaseReply:
    now_ms: int  # Redis TIME
    recovering: bool
    epoch: int
    members: int
    reaped: int
    grants: dict[str, ScopeGrant]


async def lease(
    link: RedisLink,
    keys: Keys,
    member: str,
    asks: Sequence[ScopeAsk],
    *,
    ttl_ms: int,
    window_ms: int,
    fresh: bool = False,
    now_ms: int = 0,
) -> LeaseReply:
    """One LEASE call (see lua/lease.lua). ``now_ms`` > 0 overrides Redis TIME (tests)."""
    args: list[Arg] = [member, ttl_ms, window_ms, int(fresh), now_ms, REAP_LIMIT, IDLE_EXPIRE_MS]
    for a in asks:
        args += [a.scope, a.cap, a.used, a.want, a.demand, a.claim]
    raw = await link.evalsha(LEASE, keys.all(), args)
    head = [int(x) for x in raw[:5]]
    grants: dict[str, ScopeGrant] = {}
    for i, a in enumerate(asks):
        alloc, fair, over, total = (int(x) for x in raw[5 + 4 * i : 9 + 4 * i])
        grants[a.scope] = ScopeGrant(alloc, fair, bool(over), total)
    return LeaseReply(head[0], bool(head[1]), head[2], head[3], head[4], grants)
