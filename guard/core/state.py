"""Everything that must outlive one Admission: counters, backend health, buckets, stats.

An Admission is rebuilt on every reload over the same State, and every long-lived object
is looked up here by name. So a reload keeps active counts (a ticket admitted before the
reload decrements the very Counter objects the new Admission reads), backend health,
outcome counts and the token buckets of rules whose rate and burst did not change.

The State protocol is the seam for a shared implementation; MemoryState is the in-process
default, guard.cluster.state.ClusterState the cluster mode's (leased ceilings and rates).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Protocol

from guard.core.bucket import ClientBuckets, TokenBucket
from guard.core.stats import RuleStats

CounterKey = tuple[str, ...]
"""("site",), ("backend", name), ("rule", name), ("pair", backend, rule), and the lifetime
count ("rerouted", backend) of sticky requests sent elsewhere. Tuples, not
joined strings, so no name can collide with another whatever characters it holds."""


class Counter:
    """An active-transaction count. A mutable cell so tickets can hold it directly."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class Health:
    """Passive health of a backend.

    mark_failure() takes it out of rotation for ``cooldown`` seconds. After the cooldown
    usable() is True again, so the backend is tried again, but ``up`` (what metrics and
    /status show) stays False until a request or health check succeeds (mark_success()).
    """

    __slots__ = ("down_until", "observer", "up")

    def __init__(self) -> None:
        self.up = True
        self.down_until = 0.0
        # Told of every up/down transition with its reason (the runtime logs it); None: nobody.
        self.observer: Callable[[bool, str], None] | None = None

    def mark_failure(self, now: float, cooldown: float, reason: str = "passive: failure") -> None:
        was_up = self.up
        self.up = False
        self.down_until = now + cooldown
        if was_up and self.observer is not None:
            self.observer(False, reason)

    def mark_success(self, reason: str = "passive: backend answered") -> None:
        was_up = self.up
        self.up = True
        self.down_until = 0.0
        if not was_up and self.observer is not None:
            self.observer(True, reason)

    def usable(self, now: float) -> bool:
        return self.up or now >= self.down_until


class State(Protocol):
    upstream_errors: dict[tuple[str, str], int]
    """(backend name, kind) -> count."""

    def counter(self, key: CounterKey) -> Counter:
        """The same object for the same key for the process lifetime."""
        ...

    def health(self, name: str) -> Health: ...

    def ceiling(self, key: CounterKey, configured: int) -> int:
        """The value a ceiling of a new Admission starts at. In memory: ``configured``
        (this worker's share). In cluster mode: the limit leased for that scope so far (a
        reload keeps it; the lease manager then sets the Admission's ceilings in place)."""
        ...

    def bucket(self, key: str, rate: float, burst: int, now: float) -> TokenBucket:
        """The bucket kept under ``key`` while (rate, burst) is unchanged, else a new full one."""
        ...

    def client_buckets(
        self, key: str, rate: float, burst: int, max_entries: int
    ) -> ClientBuckets: ...

    def rule_stats(self, name: str) -> RuleStats: ...

    def follow_renames(self, scope: str, identities: Mapping[str, Hashable]) -> None:
        """The names of one scope ("backend" or "rule") in the config being built, each with
        its identity. A new name whose identity an old name of the last config had, that old
        name being gone now, takes over the old name's live objects (see MemoryState)."""
        ...


class MemoryState:
    """The in-memory State: dictionaries that grow only with the names ever configured."""

    def __init__(self) -> None:
        self._counters: dict[CounterKey, Counter] = {}
        self._health: dict[str, Health] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._client_buckets: dict[str, ClientBuckets] = {}
        self._stats: dict[str, RuleStats] = {}
        self._identities: dict[str, dict[str, Hashable]] = {}  # scope -> name -> identity
        self.upstream_errors: dict[tuple[str, str], int] = {}

    def counter(self, key: CounterKey) -> Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = Counter()
        return counter

    def health(self, name: str) -> Health:
        health = self._health.get(name)
        if health is None:
            health = self._health[name] = Health()
        return health

    def ceiling(self, key: CounterKey, configured: int) -> int:
        return configured

    def bucket(self, key: str, rate: float, burst: int, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = self._buckets[key] = TokenBucket(rate, burst, now)
        return bucket

    def client_buckets(self, key: str, rate: float, burst: int, max_entries: int) -> ClientBuckets:
        buckets = self._client_buckets.get(key)
        if buckets is None or buckets.rate != rate or buckets.burst != burst:
            buckets = self._client_buckets[key] = ClientBuckets(rate, burst, max_entries)
        else:
            # Same limits, new bound: keep the clients' buckets; a smaller bound trims
            # the least recently seen on the next new client.
            buckets.max_entries = max_entries
        return buckets

    def rule_stats(self, name: str) -> RuleStats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = RuleStats()
        return stats

    def follow_renames(self, scope: str, identities: Mapping[str, Hashable]) -> None:
        """Carry a renamed backend (same URL) or rule (same pattern and methods) over.

        The renamed entry takes over its old name's counters, (backend, rule) pairs, health
        and token buckets: the very objects the tickets in flight hold, so their releases
        still count, and a ceiling never forgets a request across a rename. Outcome stats
        stay with the old name (metric series are per name). No identity match, or a new
        name whose own counter still has requests in flight: nothing moves, and the old
        counter drains on its own.
        """
        previous = self._identities.get(scope, {})
        gone = {ident: old for old, ident in previous.items() if old not in identities}
        for name, ident in identities.items():
            old = gone.pop(ident, None) if name not in previous else None
            if old is not None and self.counter((scope, name)).value == 0:
                self._rename(scope, old, name)
        self._identities[scope] = dict(identities)

    def _rename(self, scope: str, old: str, new: str) -> None:
        counters = self._counters
        side = 1 if scope == "backend" else 2  # where the name sits in a ("pair", b, r) key
        named = {(scope, old), ("rerouted", old)} if scope == "backend" else {(scope, old)}
        for key in list(counters):
            if key in named:
                counters[(key[0], new)] = counters.pop(key)
            elif key[0] == "pair" and key[side] == old:
                renamed = (key[0], new, key[2]) if side == 1 else (key[0], key[1], new)
                counters[renamed] = counters.pop(key)
        if scope == "backend" and old in self._health:
            self._health[new] = self._health.pop(old)
        if scope == "rule":
            if old in self._buckets:
                self._buckets[new] = self._buckets.pop(old)
            if old in self._client_buckets:
                self._client_buckets[new] = self._client_buckets.pop(old)
