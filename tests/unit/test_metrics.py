"""guard.metrics: exposition from a fixed snapshot, parsed back with the official parser."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from guard.core import (
    OUTCOMES,
    BackendView,
    DurationView,
    PairView,
    RuleView,
    SiteView,
    Snapshot,
    UpstreamErrorView,
)
from guard.metrics import CONTENT_TYPE, make_registry, render

INF = float("inf")
BOUNDS = (0.005, 0.01, 0.1, 1.0, INF)


def snapshot(active: int = 3, site_max: int | None = 300) -> Snapshot:
    return Snapshot(
        site=SiteView(active, site_max),
        backends=(
            BackendView("was-1", "http://127.0.0.1:8081", active, 100, up=True, draining=False),
            BackendView("was-2", "http://127.0.0.1:8082", 0, 50, up=False, draining=True),
        ),
        rules=(
            RuleView(
                "event", active, 40, "200/s", {"admitted": 7, "over_capacity": 2, "over_rate": 1}
            ),
            RuleView("static", 0, None, None, {"admitted": 5}),
            RuleView("default", 0, None, None, {"bad_request": 4, "blocked": 1}),
        ),
        pairs=(PairView("was-1", "event", active), PairView("was-2", "event", 0)),
        durations=(
            DurationView("event", BOUNDS, (1, 3, 6, 7, 7), 1.25, 7),
            DurationView("static", BOUNDS, (5, 5, 5, 5, 5), 0.01, 5),
            DurationView("default", BOUNDS, (0, 0, 0, 0, 0), 0.0, 0),
        ),
        upstream_errors=(UpstreamErrorView("was-2", "connect", 9),),
    )


class SnapshotSource:
    """Stands in for ``admission.snapshot``: hands out a snapshot and counts the calls."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.calls = 0

    def __call__(self) -> Snapshot:
        self.calls += 1
        return self.snap


def scrape(
    snap: Snapshot, reloads: Mapping[str, int] | None = None, process: bool = False
) -> list[Sample]:
    registry = make_registry(lambda: snap, reloads or {}, process=process)
    body, content_type = render(registry)
    assert content_type == CONTENT_TYPE
    return [s for fam in text_string_to_metric_families(body.decode()) for s in fam.samples]


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def test_gauges_and_ceilings() -> None:
    samples = scrape(snapshot())
    assert values(samples, "guard_active_transactions") == {
        (("backend", "was-1"), ("rule", "event")): 3.0,
        (("backend", "was-2"), ("rule", "event")): 0.0,
    }
    # No series for rules without a ceiling.
    assert values(samples, "guard_max_active") == {
        (("name", "site"), ("scope", "site")): 300.0,
        (("name", "was-1"), ("scope", "backend")): 100.0,
        (("name", "was-2"), ("scope", "backend")): 50.0,
        (("name", "event"), ("scope", "rule")): 40.0,
    }
    assert values(samples, "guard_backend_up") == {
        (("backend", "was-1"),): 1.0,
        (("backend", "was-2"),): 0.0,
    }


def test_site_without_ceiling_has_no_series() -> None:
    samples = scrape(snapshot(site_max=None))
    scopes = {s.labels["scope"] for s in samples if s.name == "guard_max_active"}
    assert scopes == {"backend", "rule"}


def test_request_counters_cover_every_outcome() -> None:
    req = values(scrape(snapshot()), "guard_requests_total")
    assert len(req) == 3 * len(OUTCOMES)  # every rule x every outcome, zeros included
    assert req[(("outcome", "admitted"), ("rule", "event"))] == 7.0
    assert req[(("outcome", "over_capacity"), ("rule", "event"))] == 2.0
    assert req[(("outcome", "blocked"), ("rule", "event"))] == 0.0
    assert req[(("outcome", "bad_request"), ("rule", "default"))] == 4.0


def test_upstream_errors_and_reloads() -> None:
    samples = scrape(snapshot(), {"success": 2, "failure": 1})
    assert values(samples, "guard_upstream_errors_total") == {
        (("backend", "was-2"), ("kind", "connect")): 9.0
    }
    assert values(samples, "guard_config_reloads_total") == {
        (("result", "success"),): 2.0,
        (("result", "failure"),): 1.0,
    }
    # Both results exist before any reload happened.
    zero = values(scrape(snapshot()), "guard_config_reloads_total")
    assert set(zero.values()) == {0.0} and len(zero) == 2


def test_histogram_buckets_sum_count() -> None:
    samples = scrape(snapshot())
    buckets = {
        s.labels["le"]: s.value
        for s in samples
        if s.name == "guard_request_duration_seconds_bucket" and s.labels["rule"] == "event"
    }
    assert buckets == {"0.005": 1, "0.01": 3, "0.1": 6, "1.0": 7, "+Inf": 7}
    assert values(samples, "guard_request_duration_seconds_sum")[(("rule", "event"),)] == 1.25
    assert values(samples, "guard_request_duration_seconds_count")[(("rule", "event"),)] == 7


@pytest.mark.parametrize(
    ("bounds", "counts"),
    [((0.1, 1.0), (2, 3)), ((0.1, 1.0), (2, 3, 4))],
    ids=["no-inf", "inf-count-only"],
)
def test_histogram_implicit_inf_bucket(bounds: tuple[float, ...], counts: tuple[int, ...]) -> None:
    snap = dataclasses.replace(
        snapshot(), durations=(DurationView("event", bounds, counts, 0.5, 4),)
    )
    buckets = [
        (s.labels["le"], s.value)
        for s in scrape(snap)
        if s.name == "guard_request_duration_seconds_bucket"
    ]
    assert buckets == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]


def test_read_at_scrape_time_and_follows_reload() -> None:
    first, second = SnapshotSource(snapshot(active=3)), SnapshotSource(snapshot(active=1))
    current = [first]
    registry = make_registry(lambda: current[0](), {}, process=False)
    assert first.calls == 0  # registering does not take a snapshot

    def active() -> float:
        text = render(registry)[0].decode()
        fam = next(
            f for f in text_string_to_metric_families(text) if f.name == "guard_active_transactions"
        )
        return sum(s.value for s in fam.samples)

    assert active() == 3
    first.snap = snapshot(active=2)  # the core's counters moved; no event was sent
    assert active() == 2
    assert first.calls == 2  # one snapshot per scrape
    current[0] = second  # hot reload swapped the admission
    assert active() == 1


def test_label_values_only_from_config_and_fixed_words() -> None:
    samples = scrape(snapshot(), {"success": 1})
    names = {"was-1", "was-2", "event", "static", "default", "site"}
    fixed = {*OUTCOMES, "site", "backend", "rule", "connect", "success", "failure"}
    for s in samples:
        for key, value in s.labels.items():
            if key == "le":
                continue
            assert value in names | fixed, (s.name, key, value)
    # Cardinality is a function of the config only: ~rules x outcomes, not of traffic.
    assert len(samples) < 100


def test_process_metrics_in_private_registry() -> None:
    names = {s.name for s in scrape(snapshot(), process=True)}
    assert "process_cpu_seconds_total" in names or "process_resident_memory_bytes" in names
    # Two registries coexist (the default one is never used, so no duplicate-name error).
    scrape(snapshot(), process=True)


def test_accept_header_negotiates_openmetrics() -> None:
    registry = make_registry(snapshot, {}, process=False)
    body, content_type = render(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
