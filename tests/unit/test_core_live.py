"""The live view's core bookkeeping: buckets, the swap at tick, the slowest list, the HLL."""

from __future__ import annotations

import random

import pytest

from guard.core.live import (
    BUCKET_UPPER_US,
    BUCKETS,
    SLOWEST,
    LiveRecorder,
    _exact_index,
    bucket_index,
)
from guard.core.live_hll import HyperLogLog, key_hash


def finish(rec: LiveRecorder, seconds: float, status: int = 200, **kw: str) -> None:
    rule, backend = kw.get("rule", "event"), kw.get("backend", "was-1")
    rec.finished(rule, backend, "admitted", status, seconds, b"GET", "/p", "10.0.0.1")


@pytest.mark.parametrize(
    ("us", "index"),
    [
        (-5, 0),
        (0, 0),
        (1023, 0),  # below 1,024 µs: the first bucket
        (1024, 1),
        (1279, 1),
        (1280, 2),  # a quarter of the octave further
        (2047, 4),
        (2048, 5),  # the next octave starts
        (3_000_000, 46),  # 3 s: octave 2^21 µs, second quarter
        ((1 << 26) - 1, 64),  # the last value below the overflow bucket (~67.1 s)
        (1 << 26, 65),
        (10**12, 65),
    ],
)
def test_bucket_index_edges(us: int, index: int) -> None:
    assert bucket_index(us) == index


def test_the_lookup_table_agrees_with_the_exact_index() -> None:
    for us in [*range(0, 70_000, 13), *range(0, (1 << 26) + 5000, 4099), (1 << 26) - 1]:
        assert bucket_index(us) == _exact_index(us), us


def test_every_duration_lies_below_its_bucket_upper_edge_and_above_the_previous() -> None:
    assert len(BUCKET_UPPER_US) == BUCKETS
    for us in [*range(0, 5000, 7), *range(5000, 1 << 27, 99_991)]:
        i = bucket_index(us)
        assert us < BUCKET_UPPER_US[i]
        assert i == 0 or us >= BUCKET_UPPER_US[i - 1]
    widths = [BUCKET_UPPER_US[i] / BUCKET_UPPER_US[i - 1] for i in range(2, BUCKETS - 1)]
    assert max(widths) <= 1.25  # log-linear: never more than a quarter wider


def test_counts_land_per_rule_and_backend_and_errors_separately() -> None:
    rec = LiveRecorder()
    finish(rec, 0.3)
    finish(rec, 0.3, status=502)
    finish(rec, 1.5, rule="checkout", backend="was-2")
    counts = rec.tick()
    b = bucket_index(300_000)
    assert counts.by_rule()["event"].hits[b] == 2
    assert counts.by_rule()["event"].errors[b] == 1
    assert counts.by_backend()["was-1"].hits[b] == 2
    assert counts.by_rule()["checkout"].hits[bucket_index(1_500_000)] == 1
    assert counts.by_backend()["was-2"].total() == 1


def test_refusals_feed_the_distinct_client_sketch_not_the_cells() -> None:
    rec = LiveRecorder()
    for _ in range(50):
        rec.finished("event", None, "over_capacity", 503, 0.0, b"GET", "/p", "10.0.0.9")
    rec.finished("event", None, "over_rate", 503, 0.0, b"GET", "/p", "10.0.0.8")
    rec.finished("event", None, "bad_request", 400, 0.0, b"GET", "/p", "10.0.0.7")
    counts = rec.tick()
    assert round(counts.refused.estimate()) == 2
    assert counts.pairs == {}


def test_tick_swaps_in_zeroed_cells_and_reuses_them() -> None:
    rec = LiveRecorder()
    finish(rec, 0.01)
    first = rec.tick()
    cells = first.pairs["event"]["was-1"]
    assert cells.total() == 1
    rec.recycle(first)
    finish(rec, 0.02)  # lands in the spare, not in what the ticker is reading
    assert cells.total() == 0
    second = rec.tick()
    assert second.by_rule()["event"].total() == 1
    rec.recycle(second)
    third = rec.tick()
    assert third is first  # the same objects go round: no allocation per tick
    assert third.pairs["event"]["was-1"] is cells and cells.total() == 0


def test_tick_without_recycle_still_starts_from_zero() -> None:
    rec = LiveRecorder()
    finish(rec, 0.01)
    rec.tick()
    finish(rec, 0.01)
    assert rec.tick().by_rule()["event"].total() == 1


def test_the_slowest_sixteen_of_a_tick_slowest_first() -> None:
    rec = LiveRecorder()
    durations = [i / 1000 for i in range(1, 501)]
    random.Random(7).shuffle(durations)
    for d in durations:
        finish(rec, d)
    slow = rec.tick().slow
    assert len(slow) == SLOWEST
    assert [s[0] for s in slow] == [i / 1000 for i in range(500, 500 - SLOWEST, -1)]
    assert slow[0][1:] == ("event", "was-1", 200, b"GET", "/p")
    rec.recycle(rec.tick())
    finish(rec, 0.001)  # a new tick starts with an empty list and no floor
    assert [s[0] for s in rec.tick().slow] == [0.001]


def test_forget_drops_names_a_reload_removed() -> None:
    rec = LiveRecorder()
    finish(rec, 0.1, rule="old", backend="gone")
    finish(rec, 0.1)
    rec.recycle(rec.tick())
    rec.forget({"event"}, {"was-1"})
    finish(rec, 0.1)
    counts = rec.tick()
    assert set(counts.by_rule()) == {"event"} and set(counts.by_backend()) == {"was-1"}


def test_hll_error_within_bounds_on_100k_distinct() -> None:
    sketch = HyperLogLog()
    n = 100_000
    for i in range(n):
        sketch.add(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    for i in range(0, n, 3):  # repeats change nothing
        sketch.add(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    # standard error 1.6 %: 5 % is three standard errors
    assert abs(sketch.estimate() - n) / n < 0.05


def test_hll_small_counts_are_near_exact_and_empty_is_zero() -> None:
    sketch = HyperLogLog()
    assert sketch.estimate() == 0.0 and sketch.empty()
    for i in range(100):
        sketch.add(f"203.0.113.{i}")
    assert abs(sketch.estimate() - 100) <= 3


def test_hll_merge_is_the_union_and_the_hash_is_stable() -> None:
    a, b = HyperLogLog(), HyperLogLog()
    for i in range(20_000):
        (a if i % 2 else b).add(f"client-{i}")
    for i in range(5_000):
        a.add(f"client-{i}")  # overlap: counted once in the union
    a.merge(b)
    assert abs(a.estimate() - 20_000) / 20_000 < 0.05
    assert key_hash("10.0.0.1") == 0xCB5329A1  # pinned: workers' sketches must merge
    copy = HyperLogLog(bytes(a.registers))
    assert copy.estimate() == a.estimate()
    a.clear()
    assert a.empty()
    with pytest.raises(ValueError):
        HyperLogLog(b"\x00" * 10)
