"""ClusterState: the in-memory State whose ceilings and rule buckets the lease manager sets.

Scopes (the names in Redis): ``site``, ``rule:<name>``, ``backend:<name>`` for ceilings,
``rate:<rule>`` (milli-tokens per second) and ``burst:<rule>`` (tokens) for rule rates.
A new Admission starts every ceiling at the limit leased so far (``ceiling()``), so a reload
neither loses a lease nor invents one; the manager then sets the live objects in place
(``apply``). Per-client buckets stay local at the full rate (README "Cluster mode").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from guard.core.admission import Admission
from guard.core.bucket import TokenBucket
from guard.core.state import CounterKey, MemoryState


def scope_of(key: CounterKey) -> str:
    return "site" if key == ("site",) else f"{key[0]}:{key[1]}"


@dataclass
class RateCell:
    """A rule-wide bucket under a cluster rate: the configured rate and burst (the caps)
    and the live bucket whose rate and burst are this instance's shares."""

    rate: float
    burst: int
    bucket: TokenBucket


class ClusterState:
    """A State (guard.core.state): MemoryState's objects, but ceilings and rule buckets
    from the leases. Delegates rather than subclasses (MemoryState is compiled)."""

    def __init__(self) -> None:
        self.memory = memory = MemoryState()
        self.upstream_errors = memory.upstream_errors
        self.counter = memory.counter
        self.health = memory.health
        self.client_buckets = memory.client_buckets
        self.rule_stats = memory.rule_stats
        self.follow_renames = memory.follow_renames
        self.limits: dict[str, int] = {}  # scope -> local limit applied now
        self.caps: dict[str, int] = {}  # ceiling scope -> configured cluster-wide ceiling
        self.rates: dict[str, RateCell] = {}  # rule name -> its rate cell

    def ceiling(self, key: CounterKey, configured: int) -> int:
        scope = scope_of(key)
        self.caps[scope] = configured
        return min(configured, self.limits.get(scope, 0))

    def bucket(self, key: str, rate: float, burst: int, now: float) -> TokenBucket:
        cell = self.rates.get(key)
        if cell is None or (cell.rate, cell.burst) != (rate, burst):
            bucket = TokenBucket(rate, burst, now)
            share_rate = self.limits.get(f"rate:{key}", 0) / 1000.0
            share_burst = self.limits.get(f"burst:{key}", 0)
            set_rate(bucket, min(rate, share_rate), min(burst, share_burst), now)
            bucket.tokens = float(bucket.burst)
            cell = self.rates[key] = RateCell(rate, burst, bucket)
        return cell.bucket

    def prune(self, admission: Admission) -> None:
        """Forget the scopes the current config no longer has (after a reload)."""
        live = {"site"} if admission.site_max_active is not None else set()
        live |= {f"rule:{r.name}" for r in admission.rules if r.max_active is not None}
        live |= {f"backend:{b.name}" for b in admission.backends}
        for scope in set(self.caps) - live:
            del self.caps[scope]
        rated = {r.name for r in admission.rules if r.bucket is not None}
        for name in set(self.rates) - rated:
            del self.rates[name]


def set_rate(bucket: TokenBucket, rate_per_s: float, burst: int, now: float) -> None:
    """A rule bucket's share: tokens above a smaller burst are dropped at once, so the
    tokens held across all instances never exceed the cluster's burst. The time since the
    bucket's last refill is settled at the old rate first: the bucket refills lazily, and
    a new (larger) share must not be paid for the time another instance held it."""
    bucket.has_token(now)
    bucket.rate = rate_per_s
    bucket.burst = burst
    if bucket.tokens > burst:
        bucket.tokens = float(burst)


def apply(admission: Admission, state: ClusterState, scope: str, limit: int) -> None:
    """Set one scope's local limit on the live Admission (and for the next one)."""
    state.limits[scope] = limit
    kind, _, name = scope.partition(":")
    if kind == "site":
        if admission.site_max_active is not None:
            admission.site_max_active = limit
    elif kind == "rule":
        for rule in admission.rules:
            if rule.name == name and rule.max_active is not None:
                rule.max_active = limit
    elif kind == "backend":
        for slot in admission.backends:
            if slot.name == name:
                slot.max_active = limit
    elif kind in ("rate", "burst"):
        cell = state.rates.get(name)
        if cell is not None:
            rate = state.limits.get(f"rate:{name}", 0) / 1000.0
            burst = state.limits.get(f"burst:{name}", 0)
            now = admission.clock()
            set_rate(cell.bucket, min(cell.rate, rate), min(cell.burst, burst), now)


def rate_cap(cell: RateCell) -> int:
    return math.floor(cell.rate * 1000)
