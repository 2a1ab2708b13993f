"""Wiring: config generations, the proxy listener, reload and graceful shutdown.

The runtime reads the config file, builds a Generation from it (every object the request
path reads, already compiled) and pushes it into the ProxyServer (`install`); the proxy
never reads the runtime. A reload builds the next generation beside the current one and
swaps it in whole.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any, Final

from guard.admin_access import AdminAccess
from guard.cluster.mode import ClusterMode
from guard.config import ConfigError, LoadedConfig, load_config, problems_as_json
from guard.core.admission import Admission
from guard.core.clock import Clocks
from guard.core.events import EventLog
from guard.core.live import LiveRecorder
from guard.core.state import MemoryState, State
from guard.health import HealthChecks, ProbeTarget
from guard.live import LiveView
from guard.proxy.accesslog import AccessLog
from guard.proxy.client import ClientConnection
from guard.proxy.connection import ConnectionLimits
from guard.proxy.headers import request_drop
from guard.proxy.responses import Pages
from guard.proxy.server import Generation, ProxyServer
from guard.proxy.upstream import Pool, protocol_factory
from guard.reload import ReloadResult
from guard.room_runtime import TICK, RoomRegistry

log: Final = logging.getLogger("guard")


class Runtime:
    """One guard process: config generations, the proxy listener, admin, reload, shutdown."""

    def __init__(
        self, config_path: Path, share: tuple[int, int] = (0, 1), clocks: Clocks | None = None
    ) -> None:
        self.config_path = config_path
        self.share = share
        self.clocks = clocks if clocks is not None else Clocks()
        self.loaded: LoadedConfig = load_config(config_path)
        self.cluster = ClusterMode.of(self.loaded.config)  # None: in memory, as always
        self.state: State = self.cluster.state if self.cluster else MemoryState()
        self.reload_counts = {"success": 0, "failure": 0}
        self.rooms = RoomRegistry(self.clocks)  # waiting rooms outlive generations
        self.events = EventLog()
        self.health_checks = HealthChecks(
            self.state.health, self._backend_busy, self.clocks.monotonic
        )
        self.rooms.warn(self.loaded.config)
        self.admin_access = AdminAccess.from_config(self.loaded.config)
        self.gen: Generation = self._build(self.loaded, None, None)
        self.server: ProxyServer | None = None
        self._listener: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self.live_view: LiveView | None = None

    # -- generations ------------------------------------------------------------------
    def _build(
        self, loaded: LoadedConfig, old_loaded: LoadedConfig | None, old: Generation | None
    ) -> Generation:
        cfg = loaded.config
        # Cluster mode: every worker is a member leasing from the whole ceiling, no static split.
        share = (0, 1) if self.cluster else self.share
        admission = Admission(cfg, self.state, self.clocks.monotonic, share=share)
        pages = Pages.from_config(cfg)
        same_log = old_loaded is not None and old_loaded.config.access_log == cfg.access_log
        if old is not None and same_log:
            access_log = old.access_log
            access_log.reopen()  # logrotate: a reload reopens the file, as SIGUSR1 does
        else:
            access_log = AccessLog.from_config(cfg.access_log, clock=self.clocks.wall)
        pools = self._pools(loaded, old)
        rooms = self.rooms.build(cfg, admission, pages)
        if old is not None and access_log is not old.access_log:
            old.access_log.close()
        return Generation(
            admission,
            pages,
            pools,
            access_log,
            limits=ConnectionLimits(cfg.limits, int(cfg.client_max_size)),
            trusted=cfg.trusted_proxies,
            read_timeout=cfg.timeouts.read,
            rooms=rooms,
            abandon_timeout=cfg.timeouts.abandon,
            request_drop=request_drop(cfg.strip_headers),
            streaming_rules=frozenset(r.name for r in cfg.rules if not r.request_buffering),
        )

    def _pools(self, loaded: LoadedConfig, old: Generation | None) -> dict[str, Pool]:
        """Backends whose address did not change keep their pool (and its idle
        connections); the pools of the others are closed."""
        cfg = loaded.config
        pools: dict[str, Pool] = {}
        for b in cfg.backends:
            prev = old.pools.get(b.name) if old else None
            if prev is not None and (prev.host, prev.port) == (b.host, b.port):
                prev.max_idle = b.max_idle
                prev.connect_timeout = cfg.timeouts.connect
                pools[b.name] = prev
            else:
                pools[b.name] = Pool(
                    b.host, b.port, b.max_idle, cfg.timeouts.connect, self.clocks.monotonic
                )
        if old is not None:
            for name, pool in old.pools.items():
                if pools.get(name) is not pool:
                    pool.close()
        return pools

    @property
    def admission(self) -> Admission:
        return self.gen.admission

    async def reload(self) -> ReloadResult:
        async with self._reload_lock:
            try:
                loaded = load_config(self.config_path)
                admin_access = AdminAccess.from_config(loaded.config)  # re-reads the token
                gen = self._build(loaded, self.loaded, self.gen)
            except ConfigError as err:
                self.reload_counts["failure"] += 1
                for problem in err.problems:
                    log.error("reload failed: %s", problem)
                self._event("reload", f"failure: {len(err.problems)} problem(s)")
                return ReloadResult(False, problems=problems_as_json(err))
            except (OSError, ValueError) as err:  # a file that changed since validation
                self.reload_counts["failure"] += 1
                log.error("reload failed: %s", err)
                self._event("reload", f"failure: {err}")
                doc = {"file": str(self.config_path), "line": 0, "key": "", "message": str(err)}
                return ReloadResult(False, problems=[doc])
            self.loaded, self.gen, self.admin_access = loaded, gen, admin_access
            if self.server is not None:
                self.server.install(gen)
                self._follow_health(loaded)
            self.reload_counts["success"] += 1
            log.info("reloaded %s (sha256 %s)", loaded.path, loaded.sha256[:12])
            self._event("reload", f"success: sha256 {loaded.sha256[:12]}")
            return ReloadResult(True, summary=self.summary())

    def summary(self) -> dict[str, Any]:
        cfg = self.loaded.config
        return {
            "config": str(self.loaded.path),
            "sha256": self.loaded.sha256,
            "backends": [b.name for b in cfg.backends],
            "rules": [r.name for r in cfg.rules],
            "max_active": cfg.max_active,
        }

    # -- serving ----------------------------------------------------------------------
    async def start(self, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.loaded.config
        if self.cluster is not None:
            await self.cluster.start(lambda: self.gen.admission, self.clocks.monotonic)
        self.server = server = ProxyServer(self.gen)
        try:
            self._listener = await loop.create_server(
                protocol_factory(lambda: ClientConnection(server)),
                cfg.listen.host,
                cfg.listen.port,
                reuse_port=reuse_port or None,
                backlog=2048,
            )
        except OSError:
            if self.cluster is not None:  # not serving: give the first lease back at once
                await self.cluster.stop()
            raise
        self._tasks.append(loop.create_task(self._housekeeping()))
        self._tasks.append(loop.create_task(self._room_ticker()))
        self._tasks.extend(self.rooms.start_sync())
        self._follow_health(self.loaded)
        # Always built (idle while live.enabled is false), so a reload can turn it on.
        self.live_view = LiveView(self, self.clocks.monotonic, self.clocks.wall)
        self.live_view.start()

    @property
    def bound_port(self) -> int:
        # Any: uvloop returns a list where typeshed says tuple, and compiled code checks.
        listener: Any = self._listener
        assert listener is not None
        return int(listener.sockets[0].getsockname()[1])

    def live_sources(self) -> tuple[LiveRecorder, set[Any]] | None:
        """What the live view reads each tick: the per-tick counts and the exchanges."""
        return None if self.server is None else (self.server.live, self.server.exchanges)

    async def _housekeeping(self) -> None:
        """Deadline sweeps and access-log flushes: cheap work on a coarse tick."""
        assert self.server is not None
        while True:
            cfg = self.loaded.config
            limits = cfg.limits
            shortest = min(
                limits.header_timeout, limits.body_timeout, limits.send_timeout, cfg.timeouts.read
            )
            await asyncio.sleep(max(0.02, min(0.2, shortest / 10)))
            self.server.sweep(self.clocks.monotonic())
            self.gen.access_log.flush()

    async def _room_ticker(self) -> None:
        """Each room's line moves on a 0.2 s tick; state files are written each second."""
        while True:
            await asyncio.sleep(TICK)
            self.rooms.tick(self.gen.rooms, self.gen.admission)

    def room_views(self) -> list[dict[str, Any]]:
        """Every room's counters (for /status and metrics)."""
        return self.rooms.views()

    def room_command(self, name: str, action: str) -> str | None:
        """An operator's close / open / pause / resume (admin port), kept as an event."""
        state = self.rooms.command(name, action)
        if state is not None:
            log.info("room %s: %s by an operator (now %s)", name, action, state)
            self.events.add(self.clocks.wall(), f"room_{action}", name, f"operator: now {state}")
        return state

    # -- backend health -----------------------------------------------------------------
    def _follow_health(self, loaded: LoadedConfig) -> None:
        """Probes and transition logs follow the config just installed."""
        targets: dict[str, ProbeTarget] = {}
        for b in loaded.config.backends:
            self.state.health(b.name).observer = functools.partial(self._transition, b.name)
            if b.health is not None:
                h = b.health
                targets[b.name] = ProbeTarget(
                    b.host, b.port, h.path, h.timeout, h.interval, b.cooldown
                )
        self.health_checks.sync(targets)

    def _event(self, kind: str, detail: str) -> None:
        self.events.add(self.clocks.wall(), kind, str(self.config_path), detail)

    def _backend_busy(self, name: str) -> bool:
        return self.state.counter(("backend", name)).value > 0

    def _transition(self, name: str, up: bool, reason: str) -> None:
        """Every backend up/down transition: one log line and a recent event."""
        if up:
            log.info("backend %s up (%s)", name, reason)
        else:
            log.warning("backend %s down (%s)", name, reason)
        self.events.add(self.clocks.wall(), "backend_up" if up else "backend_down", name, reason)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish up to timeouts.shutdown, then close."""
        if self.server is None or self._listener is None:
            return
        server = self.server
        server.closing = True
        self._listener.close()
        # The event loop's clock, not the data path's: this wait really sleeps.
        deadline = server.loop.time() + self.loaded.config.timeouts.shutdown
        for conn in list(server.connections):
            if conn.active is None:
                conn.close_after_write()
        while server.in_flight():
            if server.loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        # Past the deadline: end what is left; each exchange releases its slot as it ends.
        for ex in list(server.exchanges):
            ex.abort()
        server.end_unadmitted()
        pending = list(server.tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for conn in list(server.connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rooms.sync is not None:
            await self.rooms.sync.link.close()
        if self.live_view is not None:
            await self.live_view.stop()
        if self.cluster is not None:
            await self.cluster.stop()  # gives the leases back at once (nothing is in use)
        await self.health_checks.close()
        for pool in self.gen.pools.values():
            pool.close()
        self.rooms.save_all()
        self.gen.access_log.close()
