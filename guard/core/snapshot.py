"""A typed, immutable copy of one Admission's counters: what /status, metrics and the
``workers`` supervisor read.

``Admission.snapshot()`` builds a Snapshot; nothing in it changes afterwards, so readers
never see a count move under them. ``to_json()`` is the /status document (minus config and
reloads, which are the runtime's); ``from_json()`` reads it back, which is how the
supervisor of ``workers: N`` turns its workers' /status answers into Snapshots before
``merge()`` adds them up.

JSON spellings kept from /status: a rule's outcome counts are under ``"counts"``; a
duration histogram lists its finite bounds only (JSON has no infinity), the +Inf bucket
being ``count``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "BackendView",
    "DurationView",
    "PairView",
    "RuleView",
    "SiteView",
    "Snapshot",
    "UpstreamErrorView",
    "merge",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SiteView:
    active: int
    max_active: int | None  # None: no site ceiling

    def to_json(self) -> dict[str, Any]:
        return {"active": self.active, "max_active": self.max_active}

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> SiteView:
        return SiteView(int(doc["active"]), _optional_int(doc.get("max_active")))


@dataclass(frozen=True, slots=True)
class BackendView:
    name: str
    url: str
    active: int
    max_active: int
    up: bool  # False while in the cool-down after a connect failure
    draining: bool
    orphaned: int = 0  # of `active`: still at the backend, their client's side over
    sticky_rerouted: int = 0  # session requests sent elsewhere: it was down or draining

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "active": self.active,
            "max_active": self.max_active,
            "up": self.up,
            "draining": self.draining,
            "orphaned": self.orphaned,
            "sticky_rerouted": self.sticky_rerouted,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> BackendView:
        return BackendView(
            str(doc["name"]),
            str(doc["url"]),
            int(doc["active"]),
            int(doc["max_active"]),
            bool(doc["up"]),
            bool(doc["draining"]),
            int(doc.get("orphaned", 0)),
            int(doc.get("sticky_rerouted", 0)),
        )


@dataclass(frozen=True, slots=True)
class RuleView:
    name: str
    active: int
    max_active: int | None
    rate: str | None  # as configured, e.g. "200/s"
    outcomes: Mapping[str, int]  # outcome -> requests; every word of OUTCOMES is present

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "active": self.active,
            "max_active": self.max_active,
            "rate": self.rate,
            "counts": dict(self.outcomes),
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> RuleView:
        counts: Mapping[str, Any] = doc.get("counts") or {}
        rate = doc.get("rate")
        return RuleView(
            str(doc["name"]),
            int(doc["active"]),
            _optional_int(doc.get("max_active")),
            None if rate is None else str(rate),
            {str(k): int(v) for k, v in counts.items()},
        )


@dataclass(frozen=True, slots=True)
class PairView:
    """Requests in flight on one backend that one rule admitted."""

    backend: str
    rule: str
    active: int

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "rule": self.rule, "active": self.active}

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> PairView:
        return PairView(str(doc["backend"]), str(doc["rule"]), int(doc["active"]))


@dataclass(frozen=True, slots=True)
class DurationView:
    """One rule's histogram of admitted requests' durations, Prometheus-style."""

    rule: str
    bounds: tuple[float, ...]  # upper bounds, +Inf last
    cumulative: tuple[int, ...]  # observations <= each bound
    sum: float
    count: int

    def to_json(self) -> dict[str, Any]:
        finite = tuple(b for b in self.bounds if not math.isinf(b))
        return {
            "rule": self.rule,
            "bounds": list(finite),
            "cumulative": list(self.cumulative[: len(finite)]),
            "sum": self.sum,
            "count": self.count,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> DurationView:
        count = int(doc["count"])
        return DurationView(
            str(doc["rule"]),
            (*(float(b) for b in doc["bounds"]), math.inf),
            (*(int(c) for c in doc["cumulative"]), count),
            float(doc["sum"]),
            count,
        )


@dataclass(frozen=True, slots=True)
class UpstreamErrorView:
    backend: str
    kind: str  # connect | timeout | reset | protocol
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "kind": self.kind, "count": self.count}

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> UpstreamErrorView:
        return UpstreamErrorView(str(doc["backend"]), str(doc["kind"]), int(doc["count"]))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one worker (or, after merge(), the fleet) counts, in config order."""

    site: SiteView
    backends: tuple[BackendView, ...]
    rules: tuple[RuleView, ...]  # the implicit "default" rule last
    pairs: tuple[PairView, ...]  # every (backend, rule) of the config
    durations: tuple[DurationView, ...]  # one per rule
    upstream_errors: tuple[UpstreamErrorView, ...]
    workers: int = 1  # how many workers' counts this holds

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site.to_json(),
            "backends": [b.to_json() for b in self.backends],
            "rules": [r.to_json() for r in self.rules],
            "pairs": [p.to_json() for p in self.pairs],
            "durations": [d.to_json() for d in self.durations],
            "upstream_errors": [e.to_json() for e in self.upstream_errors],
            "workers": self.workers,
        }

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> Snapshot:
        """Reads to_json()'s document (a /status answer: its extra keys are ignored)."""
        return Snapshot(
            SiteView.from_json(doc["site"]),
            tuple(BackendView.from_json(b) for b in doc["backends"]),
            tuple(RuleView.from_json(r) for r in doc["rules"]),
            tuple(PairView.from_json(p) for p in doc.get("pairs", ())),
            tuple(DurationView.from_json(d) for d in doc.get("durations", ())),
            tuple(UpstreamErrorView.from_json(e) for e in doc.get("upstream_errors", ())),
            int(doc.get("workers", 1)),
        )


def merge(snapshots: Sequence[Snapshot]) -> Snapshot:
    """The fleet's view from its workers' snapshots.

    Counts, gauges and ceilings are summed (each worker holds a share of every ceiling, so
    the sum is the configured value); a ceiling is None when any worker has none. A backend
    is up when any worker sees it up, and draining when any worker drains it. Entries are
    matched by name, so workers caught mid-reload with different configs still merge: each
    entry sums the workers that have it, in the order first seen.
    """
    if not snapshots:
        raise ValueError("merge() needs at least one snapshot")
    every = tuple(snapshots)
    return Snapshot(
        _merge_sites([s.site for s in every]),
        _merged([b for s in every for b in s.backends], lambda b: b.name, _merge_backends),
        _merged([r for s in every for r in s.rules], lambda r: r.name, _merge_rules),
        _merged([p for s in every for p in s.pairs], lambda p: (p.backend, p.rule), _merge_pairs),
        _merged([d for s in every for d in s.durations], lambda d: d.rule, _merge_durations),
        _merged(
            [e for s in every for e in s.upstream_errors],
            lambda e: (e.backend, e.kind),
            _merge_errors,
        ),
        sum(s.workers for s in every),
    )


def _merged(
    items: Iterable[T], key: Callable[[T], object], combine: Callable[[list[T]], T]
) -> tuple[T, ...]:
    """Groups items by key (in first-seen order) and combines each group into one."""
    groups: dict[object, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return tuple(combine(group) for group in groups.values())


def _merge_sites(sites: list[SiteView]) -> SiteView:
    return SiteView(sum(s.active for s in sites), _sum_ceilings([s.max_active for s in sites]))


def _merge_backends(group: list[BackendView]) -> BackendView:
    first = group[0]
    return BackendView(
        first.name,
        first.url,
        sum(b.active for b in group),
        sum(b.max_active for b in group),
        any(b.up for b in group),
        any(b.draining for b in group),
        sum(b.orphaned for b in group),
        sum(b.sticky_rerouted for b in group),
    )


def _merge_rules(group: list[RuleView]) -> RuleView:
    first = group[0]
    outcomes: dict[str, int] = {}
    for rule in group:
        for outcome, count in rule.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    return RuleView(
        first.name,
        sum(r.active for r in group),
        _sum_ceilings([r.max_active for r in group]),
        first.rate,
        outcomes,
    )


def _merge_pairs(group: list[PairView]) -> PairView:
    return PairView(group[0].backend, group[0].rule, sum(p.active for p in group))


def _merge_durations(group: list[DurationView]) -> DurationView:
    first = group[0]
    if any(d.bounds != first.bounds for d in group):
        raise ValueError(f"rule {first.rule!r}: histograms with different bounds")
    return DurationView(
        first.rule,
        first.bounds,
        tuple(sum(column) for column in zip(*(d.cumulative for d in group), strict=True)),
        math.fsum(d.sum for d in group),
        sum(d.count for d in group),
    )


def _merge_errors(group: list[UpstreamErrorView]) -> UpstreamErrorView:
    return UpstreamErrorView(group[0].backend, group[0].kind, sum(e.count for e in group))


def _sum_ceilings(ceilings: list[int | None]) -> int | None:
    total = 0
    for ceiling in ceilings:
        if ceiling is None:
            return None
        total += ceiling
    return total


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
