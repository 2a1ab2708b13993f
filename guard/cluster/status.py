"""The cluster view for /status and the guard_cluster_* metrics: read by the admin side,
never by the request path. The view reads Redis on its own connection, so a slow /status
never delays a lease call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from guard.cluster.client import RedisLink, RedisUnavailable
from guard.cluster.manager import LeaseManager


class ClusterStatus:
    def __init__(self, manager: LeaseManager) -> None:
        self.manager = manager
        cfg = manager.cfg
        self._link = RedisLink(cfg.redis, cfg.redis_timeout)
        self._lock = asyncio.Lock()  # concurrent /status requests: a link serves one caller

    def local(self) -> dict[str, Any]:
        m = self.manager
        return {
            "name": m.cfg.name,
            "member": m.member,
            "redis_up": m.link.healthy,
            "lease_valid": m.valid(),
            "on_redis_loss": m.cfg.on_redis_loss,
            "limits": dict(m.state.limits),
            "grants": {
                s: {"alloc": g.alloc, "fair": g.fair, "overloaded": g.overloaded, "total": g.total}
                for s, g in m.grants.items()
            },
            "lease_calls": dict(m.stats.calls),
            "degraded_decisions": m.degraded.total,
            "recoveries": m.stats.recoveries,
        }

    async def view(self) -> dict[str, Any]:
        """This instance's side, plus the members, their allocations and totals in Redis."""
        doc = self.local()
        keys = self.manager.keys
        try:
            async with self._lock:
                members = await self._link.call("ZRANGE", keys.members, 0, -1, "WITHSCORES")
                held = await self._link.call("HGETALL", keys.held)
                tot = await self._link.call("HGETALL", keys.tot)
        except RedisUnavailable as exc:
            doc["redis_error"] = str(exc)
            return doc
        expiry = {str(mid): float(exp) for mid, exp in members}  # [[member, score], ...]
        doc["members"] = {
            mid: {"expires_ms": int(float(exp)), "alloc": _held_by(held, mid)}
            for mid, exp in expiry.items()
        }
        doc["totals"] = {scope: int(v) for scope, v in tot.items()}
        return doc

    async def close(self) -> None:
        await self._link.close()


def _held_by(held: dict[str, str], member: str) -> dict[str, int]:
    prefix = member + "|"
    return {
        k[len(prefix) :]: int(v)
        for k, v in held.items()
        if k.startswith(prefix) and not k.startswith(prefix + "d|")
    }


class ClusterCollector(Collector):
    def __init__(self, manager: LeaseManager) -> None:
        self.manager = manager

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        m = self.manager
        limit = GaugeMetricFamily(
            "guard_cluster_limit", "This instance's leased limit per scope.", labels=["scope"]
        )
        fair = GaugeMetricFamily(
            "guard_cluster_fair_share", "This instance's fair share per scope.", labels=["scope"]
        )
        for scope, value in sorted(m.state.limits.items()):
            limit.add_metric([scope], value)
        for scope, grant in sorted(m.grants.items()):
            fair.add_metric([scope], grant.fair)
        up = GaugeMetricFamily("guard_cluster_redis_up", "1 when the last Redis command worked.")
        up.add_metric([], 1.0 if m.link.healthy else 0.0)
        calls = CounterMetricFamily(
            "guard_cluster_lease_calls", "LEASE calls by result.", labels=["result"]
        )
        for result, count in m.stats.calls.items():
            calls.add_metric([result], count)
        degraded = CounterMetricFamily(
            "guard_cluster_degraded_decisions",
            "Admission decisions taken while the lease was not valid (kept, closed or open).",
        )
        degraded.add_metric([], m.degraded.total)
        recoveries = CounterMetricFamily(
            "guard_cluster_recoveries", "Redis recovery windows seen (restart or failover)."
        )
        recoveries.add_metric([], m.stats.recoveries)
        return [limit, fair, up, calls, degraded, recoveries]


class LazyClusterCollector(Collector):
    """ClusterCollector for a ClusterMode whose manager starts after the admin app is built."""

    def __init__(self, mode: Any) -> None:
        self.mode = mode

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        manager = self.mode.manager
        return [] if manager is None else ClusterCollector(manager).collect()
