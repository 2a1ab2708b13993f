"""Worker shares, outcome/duration statistics and the snapshot's shape."""

from __future__ import annotations

import math

import pytest

from guard.core import DEFAULT_BOUNDS, Admission, FakeClock, MemoryState, RuleStats, share_of
from tests.unit.test_core_fakes import backend, build, config, rule


@pytest.mark.parametrize("total", [0, 1, 2, 3, 7, 10, 100, 101])
@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
def test_shares_sum_to_the_configured_value(total: int, workers: int) -> None:
    shares = [share_of(total, i, workers) for i in range(workers)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def test_each_worker_gets_its_share_of_every_limit() -> None:
    cfg = config(
        backend("a", 10),
        backend("b", 3),
        max_active=7,
        rules=(rule("event", "/event", max_active=5, rate="90/s", burst=10),),
    )
    clock = FakeClock()
    workers = [Admission(cfg, MemoryState(), clock, (i, 4)) for i in range(4)]
    assert sum(w.site_max_active or 0 for w in workers) == 7
    assert [sum(w.backends[k].max_active for w in workers) for k in range(2)] == [10, 3]
    rules = [w.match("GET", "/event") for w in workers]
    assert sum(r.max_active or 0 for r in rules) == 5
    assert math.isclose(sum(r.rate_per_second or 0 for r in rules), 90.0)
    assert sum(r.burst for r in rules) == 10
    assert [r.burst for r in rules] == [3, 3, 2, 2]


def test_burst_share_is_at_least_one() -> None:
    cfg = config(rules=(rule("event", "/event", rate="1/s"),))
    admission, _, _ = build(cfg, share=(3, 4))
    assert admission.match("GET", "/event").burst == 1


def test_rule_stats_histogram() -> None:
    stats = RuleStats()
    for seconds in [0.001, 0.005, 0.006, 0.3, 11.0]:
        stats.observe(seconds)
    bounds, cumulative, total, count = stats.histogram()
    assert bounds == DEFAULT_BOUNDS and bounds[0] == 0.005 and math.isinf(bounds[-1])
    assert len(cumulative) == len(bounds)
    assert cumulative[0] == 2  # le=0.005 includes 0.005 itself
    assert cumulative[1] == 3
    assert cumulative[bounds.index(0.5)] == 4
    assert cumulative[-2] == 4 and cumulative[-1] == 5 == count
    assert math.isclose(total, 11.312)


def test_snapshot_shape() -> None:
    cfg = config(
        backend("a", 4),
        backend("b", 2, drain=True),
        max_active=5,
        rules=(rule("event", "/event/**", max_active=3, rate="200/s"),),
    )
    admission, _, _ = build(cfg)
    event = admission.match("GET", "/event/1")
    result = admission.admit(event, "10.0.0.1")
    admission.record(event, "admitted")
    admission.record(admission.default_rule, "bad_request")
    admission.observe(event, 0.02)
    admission.upstream_error("a", "connect")
    admission.upstream_error("a", "connect")
    assert result is not None

    snap = admission.snapshot()
    assert set(snap) == {"site", "backends", "rules", "pairs", "durations", "upstream_errors"}
    assert snap["site"] == {"active": 1, "max_active": 5}
    assert snap["backends"] == [
        {"name": "a", "url": cfg.backends[0].url, "active": 1, "max_active": 4, "up": True,
         "draining": False},
        {"name": "b", "url": cfg.backends[1].url, "active": 0, "max_active": 2, "up": True,
         "draining": True},
    ]  # fmt: skip
    event_snap, default_snap = snap["rules"]
    assert event_snap["name"] == "event" and default_snap["name"] == "default"
    assert (event_snap["active"], event_snap["max_active"], event_snap["rate"]) == (1, 3, "200/s")
    assert (default_snap["max_active"], default_snap["rate"]) == (None, None)
    assert event_snap["outcomes"] == {
        "admitted": 1,
        "over_capacity": 0,
        "over_rate": 0,
        "blocked": 0,
        "bad_request": 0,
    }
    assert default_snap["outcomes"]["bad_request"] == 1
    assert {(p["backend"], p["rule"]): p["active"] for p in snap["pairs"]} == {
        ("a", "event"): 1,
        ("a", "default"): 0,
        ("b", "event"): 0,
        ("b", "default"): 0,
    }
    _, cumulative, total, count = snap["durations"]["event"]
    assert (total, count, cumulative[-1]) == (0.02, 1, 1)
    assert snap["durations"]["default"][3] == 0
    assert snap["upstream_errors"] == [{"backend": "a", "kind": "connect", "count": 2}]
    # Snapshots are copies: later changes do not leak into one already taken.
    admission.record(event, "admitted")
    assert event_snap["outcomes"]["admitted"] == 1
