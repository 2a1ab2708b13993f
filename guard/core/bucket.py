"""Token buckets, one per rule or one per client address of a rule."""

from __future__ import annotations

from collections import OrderedDict


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full.

    Refill is lazy: has_token() tops the bucket up for the time elapsed since the last look,
    so an idle bucket costs nothing. has_token() never consumes; take() does, so a request
    refused later (capacity) leaves the token in the bucket.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("a token bucket needs rate >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def has_token(self, now: float) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            tokens = self.tokens + elapsed * self.rate
            self.tokens = tokens if tokens < self.burst else float(self.burst)
            self.stamp = now
        return self.tokens >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0


class ClientBuckets:
    """One TokenBucket per client key, at most ``max_entries`` of them (an LRU).

    Eviction: when a new client would exceed the bound, the least recently seen client's
    bucket is dropped. A bucket idle for burst/rate seconds has refilled completely, so
    evicting it loses nothing: the client would get a full bucket either way. Only when more
    than ``max_entries`` clients are active within burst/rate seconds can an evicted client
    come back to a fresh bucket early, gaining at most ``burst`` tokens; that is the price of
    bounded memory under an address-rotating flood.
    """

    __slots__ = ("_buckets", "burst", "max_entries", "rate")

    def __init__(self, rate: float, burst: int, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.rate = rate
        self.burst = burst
        self.max_entries = max_entries
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def get(self, key: str, now: float) -> TokenBucket:
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is not None:
            buckets.move_to_end(key)
            return bucket
        bucket = buckets[key] = TokenBucket(self.rate, self.burst, now)
        while len(buckets) > self.max_entries:
            buckets.popitem(last=False)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets
