"""Waiting rooms in `guard rehearse`: each room's line, moved by the room's real controller.

A shopper is the log's client address (guard's JSON log, nginx and Tomcat all log one; a
synthetic surge has ``clients=N`` of them); a request whose client the log does not give
("-") is a shopper of its own. For a request on a rule with a room, as on the request path
(guard/proxy/room_gate.py):

- a shopper holding a valid pass goes to admission; refused by a ceiling, the room holds new
  admissions for ``refusal_hold`` (note_pass_refused) and the request counts as refused;
- a shopper already in line: the request waits with their place;
- while the room lets shoppers in directly and the ceilings admit: straight through, with a pass;
- else a place at the back (none outside the event's schedule: plain admission).

The controller is ticked every 0.2 s of fake time with the utilisation of the room's ceilings
(``utilisation``, as the runtime does). At the first tick whose watermark passes a place, it
becomes a pass and the shopper's waiting requests go to admission; one refused by a ceiling
tries again at the next tick. A request's projected wait is its admission minus its arrival.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from guard.core.admission import Admission, Refusal, Ticket
from guard.core.room_control import RoomController
from guard.core.room_schedule import ENDED
from guard.core.room_store import CLOSED, MemoryRoomStore, RoomCounters
from guard.core.room_token import Pass, Place
from guard.core.rules import CompiledRule
from guard.proxy.room_state import utilisation
from guard.room_runtime import TICK, controller_for

__all__ = ["TICK", "Line", "RoomSim", "Waiting", "percentile", "room_sims"]

Decision = Ticket | Refusal | None
UNKNOWN_CLIENTS: Final = frozenset({"", "-"})


@dataclass(slots=True)
class Waiting:
    """One request waiting in line with its shopper."""

    seq: int  # the event's index in the replay
    arrival: float  # wall seconds
    rule: CompiledRule
    client: str


@dataclass(slots=True)
class Shopper:
    place: Place | None = None
    held: Pass | None = None
    seen: float = 0.0  # wall seconds of the pass's last use
    waiting: list[Waiting] = field(default_factory=list)


@dataclass
class Line:
    """What a room did during the replay, for the report."""

    name: str
    rules: list[str]
    admit_rate: float
    direct: int = 0  # shoppers let straight through
    queued: int = 0  # shoppers who took a place
    admitted: int = 0  # shoppers let in from the line
    requests_queued: int = 0
    pass_refused: int = 0  # requests of pass holders refused by a ceiling on arrival
    longest: int = 0  # places waiting at once, at most
    left_waiting: int = 0  # requests still in line when the replay ended
    waits: list[float] = field(default_factory=list)  # of requests admitted after waiting


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of them at or below it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class RoomSim:
    """One room's line during a replay."""

    def __init__(self, rc: Any, rules: list[CompiledRule], now: float) -> None:
        seed = hashlib.sha256(b"guard rehearse\0" + rc.name.encode()).digest()
        self.control: RoomController = controller_for(
            rc, MemoryRoomStore(RoomCounters(epoch=1)), seed, now
        )
        self.pass_idle: float = rc.pass_idle
        self.rules = rules
        self.shoppers: dict[str, Shopper] = {}
        self.line: deque[tuple[Place, Shopper]] = deque()  # in order of admission
        self.serving: list[Shopper] = []  # passes with requests a ceiling refused so far
        self.report = Line(rc.name, [r.name for r in rules], rc.admit_rate.per_second)
        self._shuffled = -1

    def busy(self) -> bool:
        return bool(self.line or self.serving)

    def stuck(self, wall: float) -> bool:
        """The line can never move again (the event ended; nothing reopens a room here)."""
        return self.control.state(wall) in (ENDED, CLOSED)

    def arrive(
        self, adm: Admission, rule: CompiledRule, client: str, seq: int, now: float, wall: float
    ) -> Decision | Waiting:
        """The request's decision now, or its Waiting when it joins the line."""
        key = client if client not in UNKNOWN_CLIENTS else f"request {seq}"
        shopper = self.shoppers.setdefault(key, Shopper())
        if shopper.place is not None or shopper.waiting:
            return self._wait(shopper, Waiting(seq, wall, rule, client))
        c = self.control
        held = shopper.held
        if held is not None and wall < held.expires_at and wall - shopper.seen < self.pass_idle:
            shopper.seen = wall
            decision = self._with_pass(adm, rule, client, now)
            if isinstance(decision, Refusal) and decision.outcome == "over_capacity":
                self.report.pass_refused += 1
            return decision
        if c.can_enter_directly(now, wall):
            decision = adm.admit(rule, client)
            if isinstance(decision, Ticket):
                minted = c.enter_directly(now, wall)
                if minted is not None:
                    shopper.held, shopper.seen = minted, wall
                    self.report.direct += 1
                    return decision
                decision.release()  # someone queued meanwhile: behind them
            elif decision is None or decision.outcome != "over_capacity":
                return decision
        place = c.take_place(wall)
        if place is None:  # outside the event: the rule without its line
            return adm.admit(rule, client)
        shopper.place = place
        self.line.append((place, shopper))
        self.report.queued += 1
        self.report.longest = max(self.report.longest, c.waiting())
        return self._wait(shopper, Waiting(seq, wall, rule, client))

    def _wait(self, shopper: Shopper, waiting: Waiting) -> Waiting:
        shopper.waiting.append(waiting)
        self.report.requests_queued += 1
        return waiting

    def _with_pass(self, adm: Admission, rule: CompiledRule, client: str, now: float) -> Decision:
        decision = adm.admit(rule, client)
        if isinstance(decision, Refusal) and decision.outcome == "over_capacity":
            self.control.note_pass_refused(now)
        return decision

    def tick(self, adm: Admission, now: float, wall: float) -> list[tuple[Waiting, Decision]]:
        """Move the line; the requests decided at this tick (admitted or refused)."""
        c = self.control
        c.tick(now, wall, utilisation(adm, self.rules))
        self._follow_shuffle()
        line = self.line
        while line:
            converted = c.convert(line[0][0], wall)
            if converted is None:
                break
            _, shopper = line.popleft()
            shopper.place, shopper.held, shopper.seen = None, converted[0], wall
            self.report.admitted += 1
            self.serving.append(shopper)
        decided: list[tuple[Waiting, Decision]] = []
        for shopper in self.serving:
            self._serve(adm, shopper, now, wall, decided)
        self.serving = [s for s in self.serving if s.waiting]
        return decided

    def _serve(
        self,
        adm: Admission,
        shopper: Shopper,
        now: float,
        wall: float,
        decided: list[tuple[Waiting, Decision]],
    ) -> None:
        """A pass holder's waiting requests, in arrival order, until a ceiling refuses one."""
        while shopper.waiting:
            waiting = shopper.waiting[0]
            decision = self._with_pass(adm, waiting.rule, waiting.client, now)
            if isinstance(decision, Refusal) and decision.outcome == "over_capacity":
                return  # tries again at the next tick
            shopper.waiting.pop(0)
            shopper.seen = wall
            if isinstance(decision, Ticket):
                self.report.waits.append(wall - waiting.arrival)
            decided.append((waiting, decision))

    def _follow_shuffle(self) -> None:
        """A scheduled pre-queue is shuffled at the start: the line follows the new order."""
        size = self.control.store.prequeue_size()
        if size != self._shuffled:
            self._shuffled = size
            order = self.control.order_of
            self.line = deque(sorted(self.line, key=lambda entry: order(entry[0].number)))

    def abandon(self) -> list[Waiting]:
        """The replay is over: the requests still waiting, counted as left in line."""
        left = [w for _, s in self.line for w in s.waiting]
        left += [w for s in self.serving for w in s.waiting]
        self.report.left_waiting = len(left)
        self.line.clear()
        self.serving.clear()
        return left


def room_sims(config: Any, adm: Admission, now: float) -> dict[str, RoomSim]:
    """The simulated room of each rule that has one (rules of one room share it)."""
    rule_rooms = {r.name: r.room for r in config.rules if getattr(r, "room", None)}
    sims: dict[str, RoomSim] = {}
    by_rule: dict[str, RoomSim] = {}
    for rc in getattr(config, "rooms", ()):
        rules = [r for r in adm.rules if rule_rooms.get(r.name) == rc.name]
        sims[rc.name] = RoomSim(rc, rules, now)
        for rule in rules:
            by_rule[rule.name] = sims[rc.name]
    return by_rule
