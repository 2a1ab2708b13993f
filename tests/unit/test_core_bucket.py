"""Token buckets over a fake clock: refill, burst, and the bounded per-client LRU."""

from __future__ import annotations

import pytest

from guard.core import ClientBuckets, FakeClock, TokenBucket


def drain(bucket: TokenBucket, now: float) -> int:
    taken = 0
    while bucket.has_token(now):
        bucket.take()
        taken += 1
    return taken


def test_starts_full_and_refuses_past_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    assert drain(bucket, 0.0) == 5
    assert not bucket.has_token(0.0)


def test_refills_at_rate_and_caps_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=5, now=clock())  # binary-exact steps below
    drain(bucket, clock())
    clock.advance(0.625)  # 2.5 tokens
    assert drain(bucket, clock()) == 2
    clock.advance(0.125)  # the 0.5 left plus 0.5
    assert drain(bucket, clock()) == 1
    clock.advance(3600)
    assert drain(bucket, clock()) == 5


def test_looking_consumes_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    for _ in range(10):
        assert bucket.has_token(0.0)
    bucket.take()
    assert not bucket.has_token(0.0)
    assert bucket.has_token(1.0)


def test_slow_rate_per_minute() -> None:
    bucket = TokenBucket(rate=30 / 60, burst=1, now=0.0)
    assert drain(bucket, 0.0) == 1
    assert not bucket.has_token(1.9)
    assert bucket.has_token(2.0)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=-1.0, burst=1, now=0.0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1.0, burst=0, now=0.0)
    with pytest.raises(ValueError):
        ClientBuckets(rate=1.0, burst=1, max_entries=0)


def test_client_buckets_are_separate() -> None:
    buckets = ClientBuckets(rate=1.0, burst=2, max_entries=10)
    assert drain(buckets.get("10.0.0.1", 0.0), 0.0) == 2
    assert drain(buckets.get("10.0.0.2", 0.0), 0.0) == 2
    assert not buckets.get("10.0.0.1", 0.0).has_token(0.0)
    assert buckets.get("10.0.0.1", 0.0) is buckets.get("10.0.0.1", 0.0)


def test_client_buckets_bound_evicts_least_recently_seen() -> None:
    buckets = ClientBuckets(rate=1.0, burst=1, max_entries=2)
    buckets.get("a", 0.0)
    buckets.get("b", 0.0)
    buckets.get("a", 0.0)  # a is now the most recently seen
    buckets.get("c", 0.0)
    assert len(buckets) == 2
    assert "a" in buckets and "c" in buckets and "b" not in buckets
    for i in range(1000):
        buckets.get(f"flood-{i}", 0.0)
    assert len(buckets) == 2


def test_evicting_an_idle_bucket_loses_nothing() -> None:
    buckets = ClientBuckets(rate=2.0, burst=4, max_entries=1)
    drain(buckets.get("a", 0.0), 0.0)
    buckets.get("b", 2.0)  # a idle for burst/rate = 2 s: full again, evicted
    assert "a" not in buckets
    assert drain(buckets.get("a", 2.0), 2.0) == 4  # same as if it had been kept


def test_smaller_bound_trims_on_next_client() -> None:
    buckets = ClientBuckets(rate=1.0, burst=1, max_entries=5)
    for key in "abcde":
        buckets.get(key, 0.0)
    buckets.max_entries = 2
    buckets.get("f", 0.0)
    assert len(buckets) == 2 and "e" in buckets and "f" in buckets
