"""The lease manager: one asyncio task per guard process (per worker) in cluster mode.

It renews, grows and shrinks every lease of this instance in one LEASE call: every
heartbeat, at once when a scope runs low (and wants more), or when it holds two headrooms
too many. One call in flight at a time. The request path never waits for it: admission
reads the local limits this task sets (guard.cluster.state.apply). See docs/CLUSTER.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from redis.exceptions import ResponseError

from guard.cluster.client import RedisLink, RedisUnavailable
from guard.cluster.scripts import Keys, LeaseReply, ScopeAsk, ScopeGrant, lease
from guard.cluster.state import ClusterState, apply, rate_cap
from guard.config.cluster import Cluster
from guard.core import lease as arith
from guard.core.admission import Admission

log: Final = logging.getLogger("guard.cluster")
CHECK_EVERY: Final = 0.01  # how often local use is compared with the limits (no Redis I/O)
AFTER_EMPTY_GRANT: Final = 0.025  # first wait before asking again when nothing was free
# Rate shares follow arrivals over a second, not two heartbeats: a share that a noisy
# estimate moves from one instance to another stays unused until the other's next call,
# so jitter in the weights is lost throughput (measured: 2.7 % with 2 heartbeats, 3 instances).
RATE_SPAN: Final = 1.0


def member_id() -> str:
    """host:pid:random, new on every start: nobody inherits a dead instance's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Plan:
    h: int
    wanted: int


@dataclass
class ManagerStats:
    calls: dict[str, int] = field(default_factory=lambda: {"ok": 0, "unavailable": 0, "error": 0})
    recoveries: int = 0
    members: int = 0
    epoch: int | None = None


class LeaseManager:
    def __init__(
        self,
        cfg: Cluster,
        state: ClusterState,
        admission: Callable[[], Admission],
        clock: Callable[[], float],
        link: RedisLink | None = None,
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.admission = admission
        self.clock = clock
        self.link = link or RedisLink(cfg.redis, cfg.redis_timeout)
        self.keys = Keys.of(cfg.name)
        self.member = member_id()
        margin = cfg.redis_timeout + 0.05
        self.lease = arith.LeaseClock(cfg.lease_ttl, margin)
        self.degraded = arith.DegradedCounter()
        self.stats = ManagerStats()
        self.grants: dict[str, ScopeGrant] = {}
        self.plans: dict[str, Plan] = {}
        self._arrivals: dict[str, arith.Ewma] = {}
        self._rate_arrivals: dict[str, arith.Ewma] = {}  # the same, smoother: rate weights
        self._holds: dict[str, tuple[float, int]] = {}  # rule -> (duration sum, count) at last look
        self._mean_hold: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0
        self._empty_wait = AFTER_EMPTY_GRANT
        self.leaving = False  # the last call: give everything not in use back
        self._fail_mode_on = False  # the fail-mode limits are applied (the lease expired)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lease-manager")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.link.close()

    async def leave(self) -> None:
        """Stop the task and give back every slot not in use (after a graceful drain: all)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.leaving = True
        await self.call_once()

    async def _run(self) -> None:
        while True:
            await self.call_once()
            due = self.clock() + self.cfg.heartbeat
            while self.clock() < due and not (
                self.clock() >= self._not_before and self._needs_call()
            ):
                await asyncio.sleep(CHECK_EVERY)
                expired = not self.valid()
                if expired and not self._fail_mode_on:
                    # At the deadline, not at the next failed call: that one may come a
                    # heartbeat + redis_timeout later, past Redis's own expiry.
                    self._apply_fail_mode(self.admission())
                self.degraded.look(_decisions(self.admission()), expired)

    # -- one call -----------------------------------------------------------------------
    def valid(self) -> bool:
        return self.lease.valid(self.clock())

    async def call_once(self) -> None:
        adm = self.admission()
        self.state.prune(adm)
        now = self.clock()
        self._measure(adm, now)
        asks = self._asks(adm)
        fresh = self.link.take_fresh()
        try:
            reply = await lease(
                self.link,
                self.keys,
                self.member,
                asks,
                ttl_ms=round(self.cfg.lease_ttl * 1000),
                window_ms=round(self.cfg.recovery_window * 1000),
                fresh=fresh,
            )
        except (RedisUnavailable, ResponseError) as exc:
            self._failed(exc, fresh)
            return
        self.lease.renewed_at(now)
        self.stats.calls["ok"] += 1
        self._granted(self.admission(), reply)

    def _failed(self, exc: Exception, fresh: bool) -> None:
        kind = "unavailable" if isinstance(exc, RedisUnavailable) else "error"
        self.stats.calls[kind] += 1
        if fresh:
            self.link.keep_fresh()  # not delivered: the next call must still re-assert
        if kind == "error":
            log.error("cluster: lease script failed: %s", exc)
        self._not_before = self.clock() + self.cfg.heartbeat
        if not self.valid():
            self._apply_fail_mode(self.admission())

    def _apply_fail_mode(self, adm: Admission) -> None:
        self._fail_mode_on = True
        mode = self.cfg.on_redis_loss
        for scope, cap in self.state.caps.items():
            kept = self.state.limits.get(scope, 0)
            apply(adm, self.state, scope, arith.fail_limit(mode, kept, cap))
        for name, cell in self.state.rates.items():
            rate = self.state.limits.get(f"rate:{name}", 0)
            burst = self.state.limits.get(f"burst:{name}", 0)
            apply(adm, self.state, f"rate:{name}", arith.fail_limit(mode, rate, rate_cap(cell)))
            apply(adm, self.state, f"burst:{name}", arith.fail_limit(mode, burst, cell.burst))

    def _asks(self, adm: Admission) -> list[ScopeAsk]:
        members = max(1, self.stats.members)
        asks: list[ScopeAsk] = []
        for scope, cap in self.state.caps.items():
            used = _used(adm, scope)
            grant = self.grants.get(scope, ScopeGrant(0, cap, False, 0))
            h = arith.headroom(cap, members, self._scope_arrivals(adm, scope), self.cfg.headroom)
            wanted = arith.want(used, h, grant.fair, grant.overloaded, cap)
            wanted = arith.give_back(wanted, used, grant.alloc, grant.total, cap)
            if self.leaving:
                wanted = used
            self.plans[scope] = Plan(h, wanted)
            if self.valid() and wanted < self.state.limits.get(scope, 0):
                apply(adm, self.state, scope, wanted)  # a shrink applies before it is sent
            demand = max(used, round(self._scope_offered(adm, scope)))
            asks.append(ScopeAsk(scope, cap, used, wanted, demand, self._claim(scope, used)))
        for name, cell in self.state.rates.items():
            asks += self._rate_asks(adm, name, rate_cap(cell), cell.burst, members)
        return asks

    def _rate_asks(
        self, adm: Admission, name: str, cap: int, burst: int, members: int
    ) -> list[ScopeAsk]:
        scope = f"rate:{name}"
        grant = self.grants.get(scope, ScopeGrant(0, cap, False, 0))
        slow = self._rate_arrivals.get(name)
        arrivals = 0 if slow is None else round(slow.rate * 1000)
        h = max(1, cap // (10 * members))
        wanted = arith.rate_want(arrivals, h, grant.fair, grant.overloaded, cap)
        if self.leaving:
            wanted = 0
        bursts = arith.burst_share(burst, wanted, cap, members)
        self.plans[scope] = Plan(h, wanted)
        if self.valid():
            if wanted < self.state.limits.get(scope, 0):
                apply(adm, self.state, scope, wanted)
            if bursts < self.state.limits.get(f"burst:{name}", 0):
                apply(adm, self.state, f"burst:{name}", bursts)
        demand = max(1, arrivals)
        return [
            ScopeAsk(scope, cap, 0, wanted, demand, self._claim(scope, 0)),
            # A burst's weight is the burst asked for: Redis's fair split of it follows the asks.
            ScopeAsk(f"burst:{name}", burst, 0, bursts, bursts, self._claim(f"burst:{name}", 0)),
        ]

    def _claim(self, scope: str, used: int) -> int:
        """What this instance re-asserts: its allocation while the lease is valid or kept;
        after a closed or open expiry only what is really in use."""
        if self.valid() or self.cfg.on_redis_loss == "keep":
            grant = self.grants.get(scope)
            return max(used, grant.alloc if grant else 0)
        return used

    def _granted(self, adm: Admission, reply: LeaseReply) -> None:
        st = self.stats
        if st.epoch is not None and reply.epoch != st.epoch:
            st.recoveries += 1
            log.warning("cluster: Redis recovery window opened (epoch %d)", reply.epoch)
        st.epoch, st.members = reply.epoch, reply.members
        self._fail_mode_on = False
        grew = False
        for scope, grant in reply.grants.items():
            old = self.grants.get(scope)
            grew |= old is None or grant.alloc > old.alloc
            self.grants[scope] = grant
            if scope.startswith("burst:"):
                limit = grant.alloc
            else:
                limit = arith.local_limit(grant.alloc, grant.fair, grant.overloaded)
            apply(adm, self.state, scope, limit)
        if grew:
            self._empty_wait = AFTER_EMPTY_GRANT
        elif self._needs_call():
            # Nothing was free: others give slots back at their own calls (a heartbeat, or
            # holding 2H too many), so asking faster only costs Redis calls. Back off,
            # doubling up to one heartbeat (measured: 0.3 calls per admission without it).
            self._not_before = self.clock() + self._empty_wait
            self._empty_wait = min(2 * self._empty_wait, self.cfg.heartbeat)

    def _needs_call(self) -> bool:
        if not self.valid():
            return False
        adm = self.admission()
        for scope, cap in self.state.caps.items():
            plan, grant = self.plans.get(scope), self.grants.get(scope)
            if plan is None or grant is None:
                return True
            used = _used(adm, scope)
            wanted = arith.want(used, plan.h, grant.fair, grant.overloaded, cap)
            limit = self.state.limits.get(scope, 0)
            if arith.needs_call(limit, used, grant.alloc, wanted, plan.h):
                return True
        return False

    # -- demand -------------------------------------------------------------------------
    def _measure(self, adm: Admission, now: float) -> None:
        span = 2 * self.cfg.heartbeat
        for rule in adm.rules:
            decisions = sum(rule.stats.outcomes.values())
            self._arrivals.setdefault(rule.name, arith.Ewma(span)).update(decisions, now)
            if rule.bucket is not None:
                slow = self._rate_arrivals.setdefault(rule.name, arith.Ewma(RATE_SPAN))
                slow.update(decisions, now)
            total, count = rule.stats.sum, rule.stats.count
            last_total, last_count = self._holds.get(rule.name, (0.0, 0))
            if count > last_count:
                sample = (total - last_total) / (count - last_count)
                prev = self._mean_hold.get(rule.name, sample)
                self._mean_hold[rule.name] = prev + 0.5 * (sample - prev)
            self._holds[rule.name] = (total, count)

    def _arrivals_of(self, rule: str) -> float:
        ewma = self._arrivals.get(rule)
        return 0.0 if ewma is None else ewma.rate

    def _rules_of(self, adm: Admission, scope: str) -> list[str]:
        kind, _, name = scope.partition(":")
        if kind == "rule":
            return [name]
        return [r.name for r in adm.rules if not r.bypass]

    def _scope_arrivals(self, adm: Admission, scope: str) -> float:
        rate = sum(self._arrivals_of(r) for r in self._rules_of(adm, scope))
        return rate * _backend_fraction(adm, scope)

    def _scope_offered(self, adm: Admission, scope: str) -> float:
        """Offered concurrency (Little's law): arrivals per second times mean hold."""
        offered = sum(
            self._arrivals_of(r) * self._mean_hold.get(r, 0.0) for r in self._rules_of(adm, scope)
        )
        return offered * _backend_fraction(adm, scope)


def _backend_fraction(adm: Admission, scope: str) -> float:
    """The part of the site's traffic one backend takes: its part of what is in use, or an
    even part when idle."""
    kind, _, name = scope.partition(":")
    if kind != "backend":
        return 1.0
    in_use = sum(b.counter.value for b in adm.backends)
    for b in adm.backends:
        if b.name == name:
            return b.counter.value / in_use if in_use else 1.0 / len(adm.backends)
    return 0.0


def _used(adm: Admission, scope: str) -> int:
    kind, _, name = scope.partition(":")
    if kind == "site":
        return adm.site.value
    if kind == "rule":
        return adm.state.counter(("rule", name)).value
    return adm.state.counter(("backend", name)).value


def _decisions(adm: Admission) -> int:
    return sum(sum(r.stats.outcomes.values()) for r in adm.rules)
