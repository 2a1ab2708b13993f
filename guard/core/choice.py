"""Which backend an admitted request goes to: least active, session affinity, reserves.

Least active: the backend with the lowest active/max_active among those usable (not in a
cool-down), not draining and not full; ties are taken in turn (round robin).

Session affinity: a request whose session id ends in ``.<route>`` (Tomcat's jvmRoute, or
guard's own affinity cookie) goes to the backend with that ``route``. Its ceiling still
rules: when it is full the request is refused (the waiting page keeps the session), unless
the backend says ``sticky: prefer``, when the usual choice applies. When it is down or
draining the request goes elsewhere, its session lost as with any proxy, and the backend's
``rerouted`` count says so. An unknown route is no route.

Reserves: a rule's ``reserve`` holds that many slots of every backend ceiling (and of the
site ceiling, see Admission) for it alone. Another rule sees each ceiling lowered by the
reserved slots their rule is not using: a reserving rule at or above its reserve holds
nothing back, so reserved capacity is never counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.core.rules import CompiledRule
from guard.core.tickets import BackendSlot

Rotation = tuple[tuple[int, BackendSlot], ...]


class BackendChoice:
    """The backend choice over one configuration's backends and rules."""

    __slots__ = ("_next", "_rotations", "backends", "reserving", "routes")

    def __init__(self, backends: tuple[BackendSlot, ...], rules: Sequence[CompiledRule]) -> None:
        self.backends = backends
        self.routes = {b.route: b for b in backends if b.route is not None}
        self.reserving = tuple(r for r in rules if r.reserve > 0)
        self._rotations = _rotations(backends)
        self._next = 0  # round-robin start: an index into _rotations

    def pick(
        self, now: float, full_ok: bool, exclude: set[str] | None, rule: CompiledRule
    ) -> BackendSlot | None:
        """Least active relative to its ceiling among usable, not draining (and, unless
        full_ok, not full for ``rule``) backends not in ``exclude``. Consumes nothing."""
        best: BackendSlot | None = None
        best_next = best_active = best_max = 0
        reserving = self.reserving
        # Scanning from where the last choice left off makes strict '<' a round robin.
        for after, b in self._rotations[self._next]:
            health = b.health
            if not health.up and now < health.down_until:  # not usable(), inlined
                continue
            active = b.counter.value
            if not full_ok:
                limit = b.max_active
                if reserving:
                    limit -= self.held_on(b, rule)
                if active >= limit:
                    continue
            if exclude and b.name in exclude:
                continue
            # active/max < best_active/best_max, in exact integer arithmetic.
            if best is None or active * best_max < best_active * b.max_active:
                best, best_next, best_active, best_max = b, after, active, b.max_active
        if best is not None:
            self._next = best_next
        return best

    def stick(self, slot: BackendSlot, now: float, rule: CompiledRule) -> BackendSlot | None:
        """The backend for a request whose route names ``slot``; None: refuse it (full)."""
        health = slot.health
        if slot.draining or (not health.up and now < health.down_until):
            other = self.pick(now, rule.bypass, None, rule)
            if other is not None:
                slot.rerouted.value += 1
            return other
        if rule.bypass or slot.counter.value + self.held_on(slot, rule) < slot.max_active:
            return slot
        return self.pick(now, False, None, rule) if slot.prefer else None

    def held_on(self, backend: BackendSlot, rule: CompiledRule) -> int:
        """Slots of ``backend`` reserved for other rules and not in use by them."""
        held = 0
        pairs = backend.pair_counters
        for r in self.reserving:
            if r.name != rule.name:
                pair = pairs.get(r.name)
                unused = r.reserve - (0 if pair is None else pair.value)
                if unused > 0:
                    held += unused
        return held

    def held_on_site(self, rule: CompiledRule) -> int:
        """Site slots reserved for other rules and not in use by them."""
        held = 0
        for r in self.reserving:
            if r.name != rule.name:
                unused = r.reserve - r.counter.value
                if unused > 0:
                    held += unused
        return held

    def any_usable(self, now: float) -> bool:
        """Is any backend up (or past its cool-down) and not draining? False: an outage."""
        for b in self.backends:
            health = b.health
            if not b.draining and (health.up or now >= health.down_until):
                return True
        return False


def _rotations(backends: tuple[BackendSlot, ...]) -> tuple[Rotation, ...]:
    """For each start position, the scan order as (position after it, slot) pairs.
    Draining backends take nothing new, so they are left out of the scan altogether."""
    live = [b for b in backends if not b.draining]
    count = len(live)
    return tuple(
        tuple(((at + 1) % count, live[at]) for at in (*range(start, count), *range(start)))
        for start in range(count)
    ) or ((),)
