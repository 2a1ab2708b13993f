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
from guard.proxy.logsink import LINES_DROPPED

__all__ = [
    "CONTENT_TYPE",
    "RELOAD_RESULTS",
    "UPSTREAM_ERROR_KINDS",
    "GuardCollector",
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
        return [*_families(), _sticky_family(), *_ceiling_families()]

    def collect(self) -> Iterable[Metric]:
        snap = self._get_snapshot()
        (active, ceiling, requests, errors, duration, up, reloads) = _families()

        if snap.site.max_active is not None:
            ceiling.add_metric(["site", "site"], snap.site.max_active)
        orphaned = GaugeMetricFamily(
            "guard_backend_orphaned",
            "Requests a backend still runs after their client's side ended (an aborted "
            "request, a 504): their slots stay taken until the backend answers.",
            labels=["backend"],
        )
        for b in snap.backends:
            ceiling.add_metric(["backend", b.name], b.max_active)
            up.add_metric([b.name], 1.0 if b.up else 0.0)
            orphaned.add_metric([b.name], b.orphaned)
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

        sticky = _sticky_family()
        for b in snap.backends:
            sticky.add_metric([b.name], b.sticky_rerouted)
        dropped = CounterMetricFamily(
            "guard_log_lines_dropped",
            "Access-log and guard log lines dropped because their destination could not keep up.",
            value=LINES_DROPPED.lines,
        )
        return (
            active,
            ceiling,
            requests,
            errors,
            duration,
            up,
            reloads,
            orphaned,
            sticky,
            dropped,
            *_ceilings(snap),
        )


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


def _sticky_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "guard_sticky_rerouted",
        "Requests whose session named this backend (route) sent to another one because it"
        " was down or draining: sessions lost, as with any proxy.",
        labels=["backend"],
    )


def _ceiling_families() -> tuple[GaugeMetricFamily, ...]:
    """Each ceiling beside its count, with the same labels, so that utilisation is one
    division (`guard_backend_active / guard_backend_max_active`), plus the ready ratio."""
    return (
        GaugeMetricFamily("guard_site_active", "Requests in flight on the whole site."),
        GaugeMetricFamily(
            "guard_site_max_active", "The site's ceiling (max_active; absent when none is set)."
        ),
        GaugeMetricFamily(
            "guard_backend_active", "Requests in flight on each backend.", labels=["backend"]
        ),
        GaugeMetricFamily(
            "guard_backend_max_active", "Each backend's ceiling (max_active).", labels=["backend"]
        ),
        GaugeMetricFamily(
            "guard_rule_active", "Requests in flight admitted by each rule.", labels=["rule"]
        ),
        GaugeMetricFamily(
            "guard_rule_max_active",
            "Each rule's ceiling (max_active; absent for rules without one).",
            labels=["rule"],
        ),
        GaugeMetricFamily(
            "guard_utilization",
            "Active requests / ceiling, for every scope with a ceiling (1 = full).",
            labels=["scope", "name"],
        ),
    )


def _ceilings(snap: Snapshot) -> tuple[GaugeMetricFamily, ...]:
    families = _ceiling_families()
    site, site_max, backend, backend_max, rule, rule_max, utilization = families

    def add(scope: str, name: str, active: int, ceiling: int | None) -> None:
        if ceiling:  # a worker's share of a small ceiling may be 0: no ratio, not inf
            utilization.add_metric([scope, name], active / ceiling)

    site.add_metric([], snap.site.active)
    if snap.site.max_active is not None:
        site_max.add_metric([], snap.site.max_active)
    add("site", "site", snap.site.active, snap.site.max_active)
    for b in snap.backends:
        backend.add_metric([b.name], b.active)
        backend_max.add_metric([b.name], b.max_active)
        add("backend", b.name, b.active, b.max_active)
    for r in snap.rules:
        rule.add_metric([r.name], r.active)
        if r.max_active is not None:
            rule_max.add_metric([r.name], r.max_active)
        add("rule", r.name, r.active, r.max_active)
    return families


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
    extra: Collector | None = None,
) -> CollectorRegistry:
    """A private registry (never the global default, so several apps and tests can coexist)
    holding the guard collector and, optionally, the process_* metrics of this process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuardCollector(get_snapshot, reload_counts))
    if extra is not None:  # cluster mode: guard_cluster_* (guard.cluster.status)
        registry.register(extra)
    if process:
        ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The exposition body and its Content-Type, negotiated from the scraper's Accept header
    (the classic text format when it asks for nothing better)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
