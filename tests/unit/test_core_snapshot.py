"""Worker shares, outcome/duration statistics, the typed snapshot, its JSON and merge()."""

from __future__ import annotations

import json
import math

import pytest

from guard.core import (
    DEFAULT_BOUNDS,
    OUTCOMES,
    Admission,
    BackendView,
    DurationView,
    FakeClock,
    MemoryState,
    PairView,
    RuleStats,
    RuleView,
    SiteView,
    Snapshot,
    UpstreamErrorView,
    merge,
    share_of,
)
from tests.unit.test_core_fakes import FakeConfig, backend, build, config, rule


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


def busy_admission() -> tuple[Admission, FakeConfig]:
    """An admission with one request in flight on "a", counted outcomes, a duration and
    two upstream errors; returns it and the config."""
    cfg = config(
        backend("a", 4),
        backend("b", 2, drain=True),
        max_active=5,
        rules=(rule("event", "/event/**", max_active=3, rate="200/s"),),
    )
    admission, _, _ = build(cfg)
    event = admission.match("GET", "/event/1")
    assert admission.admit(event, "10.0.0.1") is not None
    admission.record(event, "admitted")
    admission.record(admission.default_rule, "bad_request")
    admission.observe(event, 0.02)
    admission.upstream_error("a", "connect")
    admission.upstream_error("a", "connect")
    return admission, cfg


def test_snapshot_holds_the_counters_in_config_order() -> None:
    admission, _ = busy_admission()
    snap = admission.snapshot()
    assert snap.site == SiteView(active=1, max_active=5)
    assert [(b.name, b.active, b.max_active, b.up, b.draining) for b in snap.backends] == [
        ("a", 1, 4, True, False),
        ("b", 0, 2, True, True),
    ]
    event, default = snap.rules
    assert (event.name, event.active, event.max_active, event.rate) == ("event", 1, 3, "200/s")
    assert (default.name, default.max_active, default.rate) == ("default", None, None)
    assert dict(event.outcomes) == {o: int(o == "admitted") for o in OUTCOMES}
    assert default.outcomes["bad_request"] == 1
    assert {(p.backend, p.rule): p.active for p in snap.pairs} == {
        ("a", "event"): 1,
        ("a", "default"): 0,
        ("b", "event"): 0,
        ("b", "default"): 0,
    }
    durations = {d.rule: d for d in snap.durations}
    assert durations["event"].bounds == DEFAULT_BOUNDS
    assert (durations["event"].sum, durations["event"].count) == (0.02, 1)
    assert durations["event"].cumulative[-1] == 1 and durations["default"].count == 0
    assert snap.upstream_errors == (UpstreamErrorView("a", "connect", 2),)
    assert snap.workers == 1


def test_snapshot_is_a_copy() -> None:
    admission, _ = busy_admission()
    snap = admission.snapshot()
    event = admission.match("GET", "/event/1")
    admission.record(event, "admitted")
    admission.admit(event, "10.0.0.1")
    assert snap.rules[0].outcomes["admitted"] == 1
    assert snap.site.active == 1
    with pytest.raises(AttributeError):
        snap.site.active = 9  # type: ignore[misc]


def test_json_keeps_the_status_field_names() -> None:
    admission, cfg = busy_admission()
    doc = admission.snapshot().to_json()
    assert doc["site"] == {"active": 1, "max_active": 5}
    assert doc["backends"][1] == {
        "name": "b",
        "url": cfg.backends[1].url,
        "active": 0,
        "max_active": 2,
        "up": True,
        "draining": True,
        "orphaned": 0,
        "sticky_rerouted": 0,
    }
    assert doc["rules"][0] == {
        "name": "event",
        "active": 1,
        "max_active": 3,
        "rate": "200/s",
        "counts": {o: int(o == "admitted") for o in OUTCOMES},
    }
    assert doc["pairs"][0] == {"backend": "a", "rule": "event", "active": 1}
    assert doc["upstream_errors"] == [{"backend": "a", "kind": "connect", "count": 2}]
    event_durations = doc["durations"][0]
    assert event_durations["rule"] == "event"
    assert event_durations["bounds"] == list(DEFAULT_BOUNDS[:-1])  # no +Inf: JSON has none
    assert (event_durations["sum"], event_durations["count"]) == (0.02, 1)
    # Strict JSON: no Infinity/NaN anywhere, so any client (jq, browsers) can parse it.
    json.dumps(doc, allow_nan=False)


def test_json_round_trip() -> None:
    admission, _ = busy_admission()
    snap = admission.snapshot()
    again = Snapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert again == snap
    assert math.isinf(again.durations[0].bounds[-1])


def test_from_json_ignores_the_status_extras() -> None:
    admission, _ = busy_admission()
    doc = {**admission.snapshot().to_json(), "config": {"sha256": "ab"}, "reloads": {}}
    assert Snapshot.from_json(doc) == admission.snapshot()


BOUNDS = (0.1, 1.0, math.inf)


def worker(
    active: int, max_active: int | None, up: bool, outcomes: dict[str, int], errors: int
) -> Snapshot:
    """One worker's snapshot of a config with backend "a" and rules "event", "default"."""
    return Snapshot(
        site=SiteView(active, max_active),
        backends=(BackendView("a", "http://a", active, 2, up, False),),
        rules=(
            RuleView("event", active, max_active, "10/s", outcomes),
            RuleView("default", 0, None, None, {"bad_request": 1}),
        ),
        pairs=(PairView("a", "event", active), PairView("a", "default", 0)),
        durations=(DurationView("event", BOUNDS, (1, 2, active + 2), 0.5, active + 2),),
        upstream_errors=(UpstreamErrorView("a", "reset", errors),) if errors else (),
    )


def test_merge_sums_counts_gauges_and_ceilings() -> None:
    one = worker(2, 3, False, {"admitted": 5, "over_rate": 1}, errors=1)
    two = worker(1, 2, True, {"admitted": 4, "blocked": 2}, errors=0)
    fleet = merge([one, two])
    assert fleet.workers == 2
    assert fleet.site == SiteView(active=3, max_active=5)
    assert fleet.backends == (BackendView("a", "http://a", 3, 4, True, False),)  # up: any
    event, default = fleet.rules
    assert (event.active, event.max_active, event.rate) == (3, 5, "10/s")
    assert dict(event.outcomes) == {"admitted": 9, "over_rate": 1, "blocked": 2}
    assert dict(default.outcomes) == {"bad_request": 2} and default.max_active is None
    assert fleet.pairs == (PairView("a", "event", 3), PairView("a", "default", 0))
    assert fleet.durations == (DurationView("event", BOUNDS, (2, 4, 7), 1.0, 7),)
    assert fleet.upstream_errors == (UpstreamErrorView("a", "reset", 1),)


def test_merge_of_one_is_itself_and_of_none_an_error() -> None:
    one = worker(2, 3, True, {"admitted": 5}, errors=1)
    assert merge([one]) == one
    with pytest.raises(ValueError, match="at least one"):
        merge([])


def test_merge_matches_by_name_across_a_reload() -> None:
    """Workers caught between two configs: each entry sums the workers that have it, and a
    ceiling that one of them no longer sets is no ceiling."""
    old = worker(1, 3, True, {"admitted": 1}, errors=0)
    new = Snapshot(
        site=SiteView(1, None),
        backends=(BackendView("b", "http://b", 1, 5, True, False),),
        rules=(RuleView("default", 1, None, None, {"admitted": 1}),),
        pairs=(PairView("b", "default", 1),),
        durations=(),
        upstream_errors=(),
    )
    fleet = merge([old, new])
    assert fleet.site == SiteView(active=2, max_active=None)
    assert [b.name for b in fleet.backends] == ["a", "b"]
    assert [(r.name, r.active) for r in fleet.rules] == [("event", 1), ("default", 1)]
    assert dict(fleet.rules[1].outcomes) == {"bad_request": 1, "admitted": 1}


def test_merge_refuses_histograms_of_different_bounds() -> None:
    one = worker(1, 3, True, {}, errors=0)
    other = Snapshot(
        one.site,
        one.backends,
        one.rules,
        one.pairs,
        (DurationView("event", (1.0, math.inf), (0, 0), 0.0, 0),),
        (),
    )
    with pytest.raises(ValueError, match="different bounds"):
        merge([one, other])


def test_merged_json_reads_back_for_each_worker_count() -> None:
    admission, _ = busy_admission()
    snap = admission.snapshot()
    fleet = merge([Snapshot.from_json(snap.to_json()) for _ in range(3)])
    assert Snapshot.from_json(fleet.to_json()) == fleet
    assert fleet.workers == 3 and fleet.site.active == 3
    assert fleet.durations[0].count == 3
