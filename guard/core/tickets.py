"""What admit() hands out: a Refusal, or a Ticket holding a slot on a BackendSlot.

See guard.core.admission for the rules that decide between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from guard.core.rules import CompiledRule
from guard.core.spec import BackendSpec
from guard.core.state import Counter, Health
from guard.core.stats import Outcome


class BackendPicker(Protocol):
    """The part of Admission a Ticket uses (kept as a Protocol to avoid an import cycle)."""

    site: Counter

    def pair_counter(self, backend: BackendSlot, rule_name: str) -> Counter: ...

    def pick_backend(
        self, now: float, full_ok: bool, exclude: set[str] | None, rule: CompiledRule
    ) -> BackendSlot | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    outcome: Literal["over_capacity", "over_rate", "blocked", "unavailable"]
    rule: CompiledRule
    status: Literal[503, 429, 403]
    retry_after: int  # seconds, for Retry-After
    reject: bool  # True: answer JSON even to browsers (rule action "reject")


def refusals_for(rule: CompiledRule, retry_after: int) -> tuple[Refusal, ...]:
    """Built once per rule so refusing allocates nothing: capacity, rate, block rule,
    blocked client (never "reject": the client is refused whatever it asks for), and no
    backend up (never "reject" either: browsers get the maintenance page, whatever the rule
    says about its own refusals; the caller picks the page by outcome)."""
    return (
        Refusal("over_capacity", rule, 503, retry_after, rule.reject),
        Refusal("over_rate", rule, 429 if rule.per_client else 503, retry_after, rule.reject),
        Refusal("blocked", rule, 403, retry_after, rule.reject),
        Refusal("blocked", rule, 403, retry_after, False),
        Refusal("unavailable", rule, 503, retry_after, False),
    )


class BackendSlot:
    """A configured backend with its live counter and health."""

    __slots__ = (
        "cooldown",
        "counter",
        "draining",
        "health",
        "host",
        "max_active",
        "name",
        "orphaned",
        "pair_counters",
        "port",
        "prefer",
        "rerouted",
        "route",
        "url",
    )

    def __init__(
        self,
        spec: BackendSpec,
        max_active: int,
        counter: Counter,
        health: Health,
        rerouted: Counter,
        orphaned: Counter,
    ) -> None:
        self.name = spec.name
        self.url = spec.url
        self.host = spec.host
        self.port = spec.port
        self.max_active = max_active  # this worker's share
        self.draining = spec.drain
        self.cooldown = spec.cooldown
        self.counter = counter
        self.health = health
        self.pair_counters: dict[str, Counter] = {}  # rule name -> (backend, rule) counter
        self.route = spec.route
        self.prefer = spec.sticky == "prefer"  # when full, another backend may take its sessions
        self.rerouted = rerouted  # sticky requests sent elsewhere: it was down or draining
        self.orphaned = orphaned  # of `counter`: still at the backend, the client's side over


class Ticket:
    """An admitted request: holds its slots until release()."""

    __slots__ = (
        "_admission",
        "_live",
        "_pair",
        "_site",
        "_tried",
        "backend",
        "outcome",
        "rule",
        "started",
        "sticky",
    )

    def __init__(
        self, admission: BackendPicker, rule: CompiledRule, backend: BackendSlot, started: float
    ) -> None:
        self._admission = admission
        self.rule = rule
        self.backend = backend
        self.started = started
        self._site = admission.site
        self._pair = backend.pair_counters.get(rule.name) or admission.pair_counter(
            backend, rule.name
        )
        self._live = True
        self._tried: set[str] | None = None  # allocated on the first reroute only
        self.sticky = False  # the backend was chosen by the request's session route
        self.outcome: Outcome = "admitted"  # a dry run's "would_refuse" / "would_queue"
        self._site.value += 1
        rule.counter.value += 1
        backend.counter.value += 1
        self._pair.value += 1

    def release(self) -> None:
        """Lower every counter this ticket raised; later calls do nothing."""
        if self._live:
            self._live = False
            self._site.value -= 1
            self.rule.counter.value -= 1
            self.backend.counter.value -= 1
            self._pair.value -= 1

    def reroute(self, now: float) -> bool:
        """Move the backend slot to another usable backend not tried yet (a retry after a
        connect failure). Non-full unless the rule bypasses. False: none; nothing moved."""
        if not self._live:
            return False
        tried = self._tried
        if tried is None:
            tried = self._tried = set()
        tried.add(self.backend.name)
        new = self._admission.pick_backend(now, self.rule.bypass, tried, self.rule)
        if new is None:
            return False
        if self.sticky:  # the session's backend failed to connect: its session is lost
            self.sticky = False
            self.backend.rerouted.value += 1
        pair = new.pair_counters.get(self.rule.name) or self._admission.pair_counter(
            new, self.rule.name
        )
        self.backend.counter.value -= 1
        self._pair.value -= 1
        new.counter.value += 1
        pair.value += 1
        self.backend = new
        self._pair = pair
        return True
