"""Admission: whether a request may go to a backend now, and to which one.

One Admission is built per configuration (and per worker); the data path calls match()
and then admit() for every request, synchronously, so nothing can change in between.

For a request whose rule match() found, admit() decides in this order:

1. The client address is in ``block_ips``        -> Refusal "blocked", 403
2. The rule has ``block: true``                  -> Refusal "blocked", 403
3. The rule has ``bypass: true``                 -> Ticket on the least active backend that
   is usable and not draining (or the session's backend, see guard.core.choice), even a
   full one, ignoring rate and every ceiling.
4. Otherwise every check runs before anything changes:
   a. the rule's rate: its bucket, or the client's bucket when ``per_client``
                                                 -> "over_rate", 503 (429 when per_client)
   b. the rule's ``max_active``                  -> "over_capacity", 503
   c. the site's ``max_active``, less the slots other rules reserve and do not use
                                                 -> "over_capacity", 503
   d. a backend (guard.core.choice): the session's backend when the request names a
      route, else the least active relative to its ``max_active`` among those usable, not
      full (reserves counted) and not draining; ties are taken in turn (round robin)
                                                 -> "over_capacity", 503 when there is none
6. No backend chosen and none usable at all (every one down or draining), for any rule
   that got this far, bypass included         -> "unavailable", 503: an outage, not an
                                                 overload.
5. All passed: take the token and raise the site, rule, backend and (backend, rule)
   counters; return a Ticket. A refused request consumes nothing: no token, no slot.

"Usable" is Health.usable(): not in the cool-down that follows a connect failure.

A Ticket holds the very Counter objects it raised. release() lowers them exactly once,
however often it is called, and stays correct after a reload replaced the Admission, since
counters live in the State (keyed by name) and the new Admission reads the same objects.

Outcome counts are the caller's: admit() counts nothing, and the caller records exactly
one outcome per request with record() (bad requests under ``default_rule``).

Workers: ``share=(i, n)`` gives worker i of n a static part of every limit, so the limits
hold across workers with no shared state. A ceiling C becomes C // n, plus 1 for the first
C % n workers: the shares sum to exactly C (a worker whose share is 0 refuses for that
scope, or never uses that backend). A rate R becomes R / n (sums to R); a burst B is split
like a ceiling but at least 1 per worker (sums to B when B >= n). The cost: a worker may
refuse while another still has room.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Final

from guard.core.affinity import Affinity
from guard.core.bucket import ClientBuckets, TokenBucket
from guard.core.choice import BackendChoice
from guard.core.clock import Clock
from guard.core.rules import CompiledRule, RuleTable, default_rule, match_methods
from guard.core.snapshot import (
    BackendView,
    DurationView,
    PairView,
    RuleView,
    SiteView,
    Snapshot,
    UpstreamErrorView,
)
from guard.core.spec import ConfigSpec, RuleSpec
from guard.core.state import Counter, State
from guard.core.stats import Outcome
from guard.core.tickets import BackendSlot, Refusal, Ticket, refusals_for

__all__ = ["Admission", "BackendSlot", "Refusal", "Ticket", "share_of"]

# refusals_for() order
_OVER_CAPACITY: Final = 0
_OVER_RATE: Final = 1
_BLOCKED_RULE: Final = 2
_BLOCKED_CLIENT: Final = 3
_UNAVAILABLE: Final = 4
_BLOCK_CACHE_SIZE: Final = 4096  # cleared when full: an address-rotating flood cannot grow it


def share_of(total: int, i: int, n: int) -> int:
    """Worker i's part of ``total`` split over n workers; the parts sum to ``total``."""
    q, r = divmod(total, n)
    return q + (1 if i < r else 0)


class Admission:
    """The admission policy over one configuration. See the module docstring."""

    def __init__(
        self, config: ConfigSpec, state: State, clock: Clock, share: tuple[int, int] = (0, 1)
    ) -> None:
        worker, workers = share
        if not 0 <= worker < workers:
            raise ValueError(f"bad worker share {share}")
        now = clock()
        self.config = config
        self.state = state
        self.clock = clock
        self.share = share
        self.retry_after = config.retry_after_s
        self.site = state.counter(("site",))
        self.site_max_active = _ceiling(state, ("site",), _split(config.max_active, share))
        specs = config.rules
        # Before any counter is looked up: a renamed backend or rule keeps its live objects.
        state.follow_renames("backend", {b.name: b.url for b in config.backends})
        state.follow_renames("rule", {r.name: _rule_identity(r) for r in specs})
        self.rules: tuple[CompiledRule, ...] = (
            *[self._compile(spec, i, now) for i, spec in enumerate(specs)],
            default_rule(
                len(specs), state.counter(("rule", "default")), state.rule_stats("default")
            ),
        )
        self.default_rule = self.rules[-1]
        self.table = RuleTable(self.rules[:-1], self.default_rule)
        self.backends = tuple(
            BackendSlot(
                b,
                state.ceiling(("backend", b.name), share_of(b.max_active, worker, workers)),
                state.counter(("backend", b.name)),
                state.health(b.name),
                state.counter(("rerouted", b.name)),
            )
            for b in config.backends
        )
        for slot in self.backends:
            for rule in self.rules:
                self.pair_counter(slot, rule.name)
        self.choice = BackendChoice(self.backends, self.rules)
        self.session_params = tuple(config.session_params)
        routes = tuple(self.choice.routes)
        self.affinity: Affinity | None = None  # None: no backend has a route, nothing to read
        if routes:
            self.affinity = Affinity(routes, config.session_cookies, config.sticky_cookie)
        self._block_nets = tuple(config.block_ips)
        self._block_cache: dict[str, bool] = {}
        self._refusals = {rule: refusals_for(rule, self.retry_after) for rule in self.rules}

    def _compile(self, spec: RuleSpec, index: int, now: float) -> CompiledRule:
        worker, workers = self.share
        rate = spec.rate
        per_second: float | None = None
        burst = 0
        bucket: TokenBucket | None = None
        client_buckets: ClientBuckets | None = None
        if rate is not None:
            per_second = rate.per_second / workers
            burst = max(1, share_of(spec.effective_burst, worker, workers))
            if spec.per_client:
                limit = self.config.limits.max_tracked_clients
                client_buckets = self.state.client_buckets(spec.name, per_second, burst, limit)
            else:
                bucket = self.state.bucket(spec.name, per_second, burst, now)
        return CompiledRule(
            name=spec.name,
            index=index,
            methods=match_methods(spec.methods),
            max_active=_ceiling(
                self.state, ("rule", spec.name), _split(spec.max_active, self.share)
            ),
            rate_per_second=per_second,
            burst=burst,
            per_client=client_buckets is not None,
            reject=spec.action == "reject",
            bypass=spec.bypass,
            block=spec.block,
            reserve=share_of(spec.reserve, worker, workers),
            counter=self.state.counter(("rule", spec.name)),
            stats=self.state.rule_stats(spec.name),
            bucket=bucket,
            client_buckets=client_buckets,
            pattern=spec.path,
            rate_text=None if rate is None else rate.text,
        )

    def match(self, method: str, path: str) -> CompiledRule:
        return self.table.match(method, path)

    def admit(
        self, rule: CompiledRule, client_ip: str, route: str | None = None
    ) -> Ticket | Refusal:
        """A Ticket or a Refusal. ``route``: the request's session route, if it has one."""
        if self._block_nets and self._is_blocked(client_ip):
            return self._refusal(rule, _BLOCKED_CLIENT)
        if rule.block:
            return self._refusal(rule, _BLOCKED_RULE)
        now = self.clock()
        choice = self.choice
        bucket: TokenBucket | None = None
        if not rule.bypass:
            bucket = rule.bucket
            if bucket is None and rule.client_buckets is not None:
                bucket = rule.client_buckets.get(client_ip, now)
            if bucket is not None and not bucket.has_token(now):
                return self._refusal(rule, _OVER_RATE)
            if rule.max_active is not None and rule.counter.value >= rule.max_active:
                return self._refusal(rule, _OVER_CAPACITY)
            site_max = self.site_max_active
            if site_max is not None:
                if choice.reserving:
                    site_max -= choice.held_on_site(rule)
                if self.site.value >= site_max:
                    return self._refusal(rule, _OVER_CAPACITY)
        sticky = None if route is None else choice.routes.get(route)
        if sticky is None:
            backend = choice.pick(now, rule.bypass, None, rule)
        else:
            backend = choice.stick(sticky, now, rule)
        if backend is None:
            full = choice.any_usable(now)
            return self._refusal(rule, _OVER_CAPACITY if full else _UNAVAILABLE)
        if bucket is not None:
            bucket.take()
        ticket = Ticket(self, rule, backend, now)
        if backend is sticky:
            ticket.sticky = True
        return ticket

    def pair_counter(self, backend: BackendSlot, rule_name: str) -> Counter:
        """The (backend, rule) counter; built at init for this config's rules, and here
        for a rule of another generation (a caller mixing Admissions across a reload)."""
        counter = self.state.counter(("pair", backend.name, rule_name))
        backend.pair_counters[rule_name] = counter
        return counter

    def _refusal(self, rule: CompiledRule, kind: int) -> Refusal:
        # Built once per rule; a rule of another Admission (a caller mixing generations
        # across a reload) still gets a correct, freshly built one.
        refusals = self._refusals.get(rule) or refusals_for(rule, self.retry_after)
        return refusals[kind]

    def pick_backend(
        self, now: float, full_ok: bool, exclude: set[str] | None, rule: CompiledRule
    ) -> BackendSlot | None:
        """See BackendChoice.pick (a Ticket's retry after a connect failure calls this)."""
        return self.choice.pick(now, full_ok, exclude, rule)

    def _is_blocked(self, client_ip: str) -> bool:
        cache = self._block_cache
        hit = cache.get(client_ip)
        if hit is None:
            hit = _in_networks(client_ip, self._block_nets)
            if len(cache) >= _BLOCK_CACHE_SIZE:
                cache.clear()
            cache[client_ip] = hit
        return hit

    def record(self, rule: CompiledRule, outcome: Outcome) -> None:
        rule.stats.outcomes[outcome] += 1

    def observe(self, rule: CompiledRule, seconds: float) -> None:
        rule.stats.observe(seconds)

    def upstream_error(self, backend_name: str, kind: str) -> None:
        errors = self.state.upstream_errors
        key = (backend_name, kind)
        errors[key] = errors.get(key, 0) + 1

    def snapshot(self) -> Snapshot:
        """This worker's view (its shares of the ceilings), per DESIGN.md "Snapshot"."""
        return Snapshot(
            SiteView(self.site.value, self.site_max_active),
            tuple(
                BackendView(
                    b.name,
                    b.url,
                    b.counter.value,
                    b.max_active,
                    b.health.up,
                    b.draining,
                    self.state.counter(("orphaned", b.name)).value,
                    b.rerouted.value,
                )
                for b in self.backends
            ),
            tuple(
                RuleView(r.name, r.counter.value, r.max_active, r.rate_text, dict(r.stats.outcomes))
                for r in self.rules
            ),
            tuple(
                PairView(b.name, r.name, b.pair_counters[r.name].value)
                for b in self.backends
                for r in self.rules
            ),
            tuple(DurationView(r.name, *r.stats.histogram()) for r in self.rules),
            tuple(
                UpstreamErrorView(backend, kind, count)
                for (backend, kind), count in self.state.upstream_errors.items()
            ),
        )


def _split(ceiling: int | None, share: tuple[int, int]) -> int | None:
    return None if ceiling is None else share_of(ceiling, *share)


def _ceiling(state: State, key: tuple[str, ...], configured: int | None) -> int | None:
    return None if configured is None else state.ceiling(key, configured)


def _rule_identity(spec: RuleSpec) -> tuple[str, frozenset[str] | None]:
    """What makes a renamed rule the same rule: its path pattern and its methods."""
    return (spec.path, None if spec.methods is None else frozenset(spec.methods))


def _in_networks(client_ip: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        address = ip_address(client_ip)
    except ValueError:  # not an IP (e.g. a unix socket peer): nothing to match
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
        mapped = address.ipv4_mapped
        if any(mapped in net for net in networks):
            return True
    return any(address in net for net in networks)
