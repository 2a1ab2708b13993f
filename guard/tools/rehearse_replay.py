"""Replay of logged requests through guard's real Admission, on a FakeClock, in dry run.

Events arrive in start order; each is matched and admitted by the very Admission the data
path uses, built from the candidate config. An admitted request keeps its logged duration
and releases its ticket at start + duration. That is conservative: with fewer requests
inside, the backend would have answered faster. A request the log shows refused (it never
reached a backend) but the candidate admits is given the median logged duration of the
forwarded requests of its rule. Every backend is healthy throughout, and one process holds
the whole of every ceiling (``workers: N`` splits them; the sum is the same).

Refusals are counted by what the shopper would have seen: the waiting page (over capacity
on a ``wait`` rule; API clients get the same refusal as JSON, which a log cannot tell
apart), JSON (over capacity on a ``reject`` rule), over_rate, blocked.

Pure: no sockets, no real clock.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from guard.core.admission import Admission, Refusal, Ticket
from guard.core.clock import FakeClock
from guard.core.spec import ConfigSpec
from guard.core.state import Counter, MemoryState
from guard.tools.rehearse_logs import Event

__all__ = ["REFUSALS", "Replay", "Scope", "replay"]

REFUSALS: Final = ("waiting_page", "json", "over_rate", "blocked", "no_backend")
NEAR: Final = 0.9  # "time >= 90 % of the ceiling"


@dataclass
class Scope:
    """The site, one rule or one backend: its ceiling and what the replay did to it."""

    kind: str
    name: str
    ceiling: int | None
    counter: Counter
    peak: int = 0
    at_ceiling: float = 0.0  # seconds with active >= ceiling
    near_ceiling: float = 0.0  # seconds with active >= 90 % of the ceiling
    admitted: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))
    timeline: list[int] = field(default_factory=list)  # peak active per second

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    def raised(self, second: int) -> None:
        value = self.counter.value
        self.peak = max(self.peak, value)
        line = self.timeline
        if second >= len(line):
            line.extend([0] * (second + 1 - len(line)))
        line[second] = max(line[second], value)


@dataclass
class Replay:
    site: Scope
    rules: list[Scope]
    backends: list[Scope]
    events: int
    span: float  # seconds from the first start to the last release
    substituted: int  # admitted here, refused in the log: given their rule's median duration
    rule_of: list[str]  # the candidate rule of each event, in the order given

    @property
    def admitted(self) -> int:
        return self.site.admitted

    @property
    def refused(self) -> int:
        return sum(rule.refused_total for rule in self.rules)


def kind_of(decision: Refusal | None) -> str:
    if decision is None:
        return "no_backend"
    if decision.outcome == "over_capacity":
        return "json" if decision.reject else "waiting_page"
    return decision.outcome


class _Clocked:
    """Scopes plus the time accounting that must run before any counter changes."""

    def __init__(self, scopes: list[Scope], origin: float) -> None:
        self.scopes = [s for s in scopes if s.ceiling is not None]
        self.origin = origin
        self.last = origin

    def advance(self, to: float) -> None:
        elapsed = to - self.last
        if elapsed <= 0:
            return
        self.last = to
        for scope in self.scopes:
            value, ceiling = scope.counter.value, scope.ceiling or 0
            if value >= ceiling:
                scope.at_ceiling += elapsed
            if value >= NEAR * ceiling:
                scope.near_ceiling += elapsed


def replay(config: ConfigSpec, events: Sequence[Event]) -> Replay:
    """Admit ``events`` (sorted by start) through a fresh Admission of ``config``."""
    origin = events[0].start if events else 0.0
    clock = FakeClock(0.0)
    adm = Admission(config, MemoryState(), clock)
    site = Scope("site", "site", adm.site_max_active, adm.site)
    rules = {r.name: Scope("rule", r.name, r.max_active, r.counter) for r in adm.rules}
    backends = {b.name: Scope("backend", b.name, b.max_active, b.counter) for b in adm.backends}
    matched = [adm.match(e.method, e.path) for e in events]
    fill = _fill_durations(events, [m.name for m in matched])
    timed = _Clocked([site, *rules.values(), *backends.values()], origin)
    releases: list[tuple[float, int, Ticket]] = []
    substituted = 0
    for seq, (event, rule) in enumerate(zip(events, matched, strict=True)):
        _release_until(event.start, releases, timed)
        clock.now = event.start - origin
        decision = adm.admit(rule, event.client)
        scope = rules[rule.name]
        if not isinstance(decision, Ticket):
            scope.refused[kind_of(decision)] += 1
            continue
        duration = event.duration if event.forwarded else fill[rule.name]
        substituted += not event.forwarded
        heapq.heappush(releases, (event.start + duration, seq, decision))
        second = int(event.start - origin)
        for raised in (site, scope, backends[decision.backend.name]):
            raised.admitted += 1
            raised.raised(second)
    _release_until(float("inf"), releases, timed)
    return Replay(
        site,
        list(rules.values()),
        list(backends.values()),
        len(events),
        timed.last - origin,
        substituted,
        [m.name for m in matched],
    )


def _release_until(t: float, releases: list[tuple[float, int, Ticket]], timed: _Clocked) -> None:
    while releases and releases[0][0] <= t:
        end, _, ticket = heapq.heappop(releases)
        timed.advance(end)
        ticket.release()
    if t != float("inf"):
        timed.advance(t)


def _fill_durations(events: Sequence[Event], rule_names: Sequence[str]) -> dict[str, float]:
    """Per rule, the median duration of its forwarded requests (all rules' median else)."""
    by_rule: dict[str, list[float]] = {}
    for event, name in zip(events, rule_names, strict=True):
        if event.forwarded:
            by_rule.setdefault(name, []).append(event.duration)
    every = [d for durations in by_rule.values() for d in durations]
    overall = statistics.median(every) if every else 0.0
    fill = {name: statistics.median(durations) for name, durations in by_rule.items()}
    for name in set(rule_names) - fill.keys():
        fill[name] = overall
    return fill
