"""Prometheus metrics, all declared here, read from a core ``Snapshot`` at scrape time.

Nothing on the request path touches prometheus_client: the core keeps plain integer counters
and a histogram of its own (guard.core.stats), and this collector turns one snapshot into
metric families when Prometheus scrapes. Gauges therefore cannot drift from the counters the
admission decisions use, and a hot reload (a new Admission) is picked up by the next scrape
because the snapshot is taken through a callable at each scrape, never captured.

Label values come only from config names (rules, backends) and the fixed words of the
contract (scope, outcome, kind, result), so cardinality is bounded by the config's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.registry import Collector

from guard.core import OUTCOMES, Snapshot

__all__ = [
    "CONTENT_TYPE",
    "RELOAD_RESULTS",
    "UPSTREAM_ERROR_KINDS",
    "GuardCollector",
    "LiveCollector",
    "make_registry",
    "render",
]

UPSTREAM_ERROR_KINDS: tuple[str, ...] = ("connect", "timeout", "reset", "protocol")
RELOAD_RESULTS: tuple[str, ...] = ("success", "failure")

# The classic text format: every Prometheus version parses it. render() negotiates newer ones.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


ReloadCounts = Mapping[str, int] | Callable[[], Mapping[str, int]]


class GuardCollector(Collector):
    """Builds every guard_* family from one snapshot per scrape."""

    def __init__(self, get_snapshot: Callable[[], Snapshot], reload_counts: ReloadCounts) -> None:
        self._get_snapshot = get_snapshot
        # A callable lets the runtime replace its dict; a mapping is read live at each scrape.
        self._reload_counts: Callable[[], Mapping[str, int]] = (
            reload_counts if callable(reload_counts) else lambda: reload_counts
        )

    def describe(self) -> Iterable[Metric]:
        # Registration calls describe(); answering with empty families avoids a snapshot there.
        return list(_families())

    def collect(self) -> Iterable[Metric]:
        snap = self._get_snapshot()
        (active, ceiling, requests, errors, duration, up, reloads) = _families()

        if snap.site.max_active is not None:
            ceiling.add_metric(["site", "site"], snap.site.max_active)
        for b in snap.backends:
            ceiling.add_metric(["backend", b.name], b.max_active)
            up.add_metric([b.name], 1.0 if b.up else 0.0)
        for r in snap.rules:
            if r.max_active is not None:
                ceiling.add_metric(["rule", r.name], r.max_active)
            # Every outcome always (0 when nothing happened): rate() and alerts work from the
            # first scrape. Outcomes the core may add later are exported too (code words).
            for outcome in (*OUTCOMES, *sorted(r.outcomes.keys() - set(OUTCOMES))):
                requests.add_metric([r.name, outcome], r.outcomes.get(outcome, 0))
        for p in snap.pairs:
            active.add_metric([p.backend, p.rule], p.active)
        for e in snap.upstream_errors:
            errors.add_metric([e.backend, e.kind], e.count)
        for d in snap.durations:
            duration.add_metric([d.rule], _buckets(d.bounds, d.cumulative, d.count), d.sum)

        counts_now = self._reload_counts()
        for result in RELOAD_RESULTS:
            reloads.add_metric([result], counts_now.get(result, 0))

        return (active, ceiling, requests, errors, duration, up, reloads)


class LiveCollector(Collector):
    """The live view's gauges, read from its last tick (at most one tick stale)."""

    def __init__(self, refused: Callable[[], Mapping[str, float] | None]) -> None:
        self._refused = refused

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "guard_refused_clients_estimate",
            "Distinct clients refused (over_capacity, over_rate) in the window, estimated"
            " with a HyperLogLog (1.6 % standard error); window: tick or 1m.",
            labels=["window"],
        )
        for window, value in (self._refused() or {}).items():
            family.add_metric([window], value)
        return [family]


def _families() -> tuple[
    GaugeMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
    HistogramMetricFamily,
    GaugeMetricFamily,
    CounterMetricFamily,
]:
    """Fresh, empty families: metric names and help texts live only here."""
    return (
        GaugeMetricFamily(
            "guard_active_transactions",
            "Requests in flight, by backend and the rule that admitted them.",
            labels=["backend", "rule"],
        ),
        GaugeMetricFamily(
            "guard_max_active",
            "Configured active-transaction ceilings (absent where none is set).",
            labels=["scope", "name"],
        ),
        CounterMetricFamily(
            "guard_requests",
            "Requests by matched rule and outcome; exactly one outcome per request.",
            labels=["rule", "outcome"],
        ),
        CounterMetricFamily(
            "guard_upstream_errors",
            "Failed exchanges with a backend, by kind (connect, timeout, reset, protocol).",
            labels=["backend", "kind"],
        ),
        HistogramMetricFamily(
            "guard_request_duration_seconds",
            "Duration of admitted requests until the response is complete.",
            labels=["rule"],
        ),
        GaugeMetricFamily(
            "guard_backend_up",
            "1 when the backend is considered up, 0 while it is in its cool-down.",
            labels=["backend"],
        ),
        CounterMetricFamily(
            "guard_config_reloads",
            "Configuration reloads by result (success, failure).",
            labels=["result"],
        ),
    )


def _le(bound: float) -> str:
    # Same spelling prometheus_client uses for its own histograms ("0.005", "1.0", "+Inf").
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _buckets(bounds: Sequence[float], counts: Sequence[int], count: int) -> list[tuple[str, float]]:
    """Pairs cumulative counts with their upper bounds; the +Inf bucket is added when the
    core leaves it implicit (bounds without inf, or one more count than bounds)."""
    out = [(_le(b), float(c)) for b, c in zip(bounds, counts, strict=False)]
    if not out or out[-1][0] != "+Inf":
        out.append(("+Inf", float(count)))
    return out


def make_registry(
    get_snapshot: Callable[[], Snapshot],
    reload_counts: ReloadCounts,
    *,
    process: bool = True,
) -> CollectorRegistry:
    """A private registry (never the global default, so several apps and tests can coexist)
    holding the guard collector and, optionally, the process_* metrics of this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuardCollector(get_snapshot, reload_counts))
    if process:
        ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition body and its Content-Type, negotiated from the scraper's Accept header
    (the classic text format when it asks for nothing better)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
