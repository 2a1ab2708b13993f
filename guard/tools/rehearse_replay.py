"""Replay of logged requests through guard's real Admission, on a FakeClock, in dry run.

Events arrive in start order; each is matched and admitted by the very Admission the data
path uses, built from the candidate config. An admitted request keeps its logged duration
and releases its ticket at admission + duration (admission is its start, unless it waited
in a room's line: rehearse_rooms, ticked here every 0.2 s of fake time). That is
conservative: with fewer requests inside, the backend would have answered faster. A request
the log shows refused (it never reached a backend) but the candidate admits is given the
median logged duration of the forwarded requests of its rule. Every backend is healthy
throughout, and one process holds the whole of every ceiling (``workers: N`` splits them;
the sum is the same).

Refusals are counted by what the shopper would have seen: the waiting page (over capacity
on a ``wait`` rule; API clients get the same refusal as JSON, which a log cannot tell
apart), JSON (over capacity on a ``reject`` rule), over_rate, blocked.

Pure: no sockets, no real clock.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from guard.core.admission import Admission, Refusal, Ticket
from guard.core.clock import FakeClock
from guard.core.spec import ConfigSpec
from guard.core.state import Counter, MemoryState
from guard.tools.rehearse_logs import Event
from guard.tools.rehearse_rooms import TICK, Line, Waiting, room_sims

__all__ = ["REFUSALS", "Replay", "Scope", "replay"]

REFUSALS: Final = ("waiting_page", "json", "over_rate", "blocked", "no_backend")
NEAR: Final = 0.9  # "time >= 90 % of the ceiling"
HORIZON: Final = 86_400.0  # a line still waiting a day after the last arrival is left there


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
    queued: int = 0  # requests that waited in a room's line (then admitted, refused or left)
    unserved: int = 0  # requests still in line when the replay ended
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
    rooms: list[Line] = field(default_factory=list)

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
    run = _Run(config, events)
    for seq in range(len(events)):
        run.arrive(seq)
    run.finish()
    return Replay(
        run.site,
        list(run.rules.values()),
        list(run.backends.values()),
        len(events),
        run.timed.last - run.origin,
        run.substituted,
        [m.name for m in run.matched],
        [sim.report for sim in run.simulated],
    )


class _Run:
    """One replay: arrivals, releases and room ticks, in time order, on one fake clock."""

    def __init__(self, config: ConfigSpec, events: Sequence[Event]) -> None:
        self.events = events
        self.origin = origin = events[0].start if events else 0.0
        self.clock = FakeClock(0.0)
        self.adm = adm = Admission(config, MemoryState(), self.clock)
        self.site = Scope("site", "site", adm.site_max_active, adm.site)
        self.rules = {r.name: Scope("rule", r.name, r.max_active, r.counter) for r in adm.rules}
        self.backends = {
            b.name: Scope("backend", b.name, b.max_active, b.counter) for b in adm.backends
        }
        self.matched = [adm.match(e.method, e.path) for e in events]
        self.fill = _fill_durations(events, [m.name for m in self.matched])
        scopes = [self.site, *self.rules.values(), *self.backends.values()]
        self.timed = _Clocked(scopes, origin)
        self.releases: list[tuple[float, int, Ticket]] = []
        self.substituted = 0
        self.rooms = room_sims(config, adm, 0.0)
        self.simulated = list(dict.fromkeys(self.rooms.values()))
        self.sims = list(self.simulated)  # ticked; emptied once the replay is over
        self.ticks = 1  # the next tick's number: at origin + ticks * TICK

    def arrive(self, seq: int) -> None:
        event, rule = self.events[seq], self.matched[seq]
        self.until(event.start)
        self.clock.now = event.start - self.origin
        sim = self.rooms.get(rule.name)
        if sim is None:
            self.decided(seq, self.adm.admit(rule, event.client), event.start)
            return
        got = sim.arrive(self.adm, rule, event.client, seq, self.clock.now, event.start)
        if isinstance(got, Waiting):
            self.rules[rule.name].queued += 1
        else:
            self.decided(seq, got, event.start)

    def decided(self, seq: int, decision: Refusal | Ticket | None, at: float) -> None:
        event, scope = self.events[seq], self.rules[self.matched[seq].name]
        if not isinstance(decision, Ticket):
            scope.refused[kind_of(decision)] += 1
            return
        duration = event.duration if event.forwarded else self.fill[scope.name]
        self.substituted += not event.forwarded
        heapq.heappush(self.releases, (at + duration, seq, decision))
        second = int(at - self.origin)
        for raised in (self.site, scope, self.backends[decision.backend.name]):
            raised.admitted += 1
            raised.raised(second)

    def until(self, t: float) -> None:
        """Every release and room tick up to ``t`` (inclusive), in time order."""
        releases = self.releases
        while True:
            release_at = releases[0][0] if releases else math.inf
            tick_at = self.origin + self.ticks * TICK if self.sims else math.inf
            if min(release_at, tick_at) > t or release_at == tick_at == math.inf:
                break
            if release_at <= tick_at:
                end, _, ticket = heapq.heappop(releases)
                self.timed.advance(end)
                ticket.release()
            else:
                self._tick(tick_at)
        if t != math.inf:
            self.timed.advance(t)

    def _tick(self, at: float) -> None:
        self.timed.advance(at)
        self.ticks += 1
        self.clock.now = at - self.origin
        for sim in self.sims:
            for waiting, decision in sim.tick(self.adm, self.clock.now, at):
                self.decided(waiting.seq, decision, at)

    def finish(self) -> None:
        """Tick on until every line is served (or can never move), then release the rest."""
        last = self.events[-1].start if self.events else self.origin
        while self.sims:
            at = self.origin + self.ticks * TICK
            busy = [s for s in self.sims if s.busy() and not s.stuck(at)]
            if not busy or at > last + HORIZON:
                break
            self.until(at)
        for sim in self.sims:
            for waiting in sim.abandon():
                self.rules[waiting.rule.name].unserved += 1
        self.sims = []
        self.until(math.inf)


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
