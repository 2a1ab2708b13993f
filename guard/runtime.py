"""Wiring: config generations, the proxy listener, reload and graceful shutdown.

The runtime reads the config file, builds a Generation from it (every object the request
path reads, already compiled) and pushes it into the ProxyServer (`install`); the proxy
never reads the runtime. A reload builds the next generation beside the current one and
swaps it in whole.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Final

from guard.config import ConfigError, LoadedConfig, load_config, problems_as_json
from guard.core.admission import Admission
from guard.core.clock import Clocks
from guard.core.live import LiveRecorder
from guard.core.state import MemoryState
from guard.health import ProbeTarget, probe_forever
from guard.live import LiveView
from guard.proxy.accesslog import AccessLog
from guard.proxy.client import ClientConnection
from guard.proxy.connection import ConnectionLimits
from guard.proxy.responses import Pages
from guard.proxy.server import Generation, ProxyServer
from guard.proxy.upstream import Pool, protocol_factory
from guard.reload import ReloadResult

log: Final = logging.getLogger("guard")


class Runtime:
    """One guard process: config generations, the proxy listener, admin, reload, shutdown."""

    def __init__(
        self, config_path: Path, share: tuple[int, int] = (0, 1), clocks: Clocks | None = None
    ) -> None:
        self.config_path = config_path
        self.share = share
        self.clocks = clocks if clocks is not None else Clocks()
        self.state = MemoryState()
        self.reload_counts = {"success": 0, "failure": 0}
        self.loaded: LoadedConfig = load_config(config_path)
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
        admission = Admission(cfg, self.state, self.clocks.monotonic, share=self.share)
        pages = Pages(cfg.waiting_page, cfg.static_dir, cfg.retry_after_s)
        same_log = old_loaded is not None and old_loaded.config.access_log == cfg.access_log
        if old is not None and same_log:
            access_log = old.access_log
        else:
            access_log = AccessLog.from_config(cfg.access_log, clock=self.clocks.wall)
        pools = self._pools(loaded, old)
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
                gen = self._build(loaded, self.loaded, self.gen)
            except ConfigError as err:
                self.reload_counts["failure"] += 1
                for problem in err.problems:
                    log.error("reload failed: %s", problem)
                return ReloadResult(False, problems=problems_as_json(err))
            except OSError as err:
                self.reload_counts["failure"] += 1
                log.error("reload failed: %s", err)
                doc = {"file": str(self.config_path), "line": 0, "key": "", "message": str(err)}
                return ReloadResult(False, problems=[doc])
            self.loaded, self.gen = loaded, gen
            if self.server is not None:
                self.server.install(gen)
            self.reload_counts["success"] += 1
            log.info("reloaded %s (sha256 %s)", loaded.path, loaded.sha256[:12])
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
        self.server = server = ProxyServer(self.gen)
        self._listener = await loop.create_server(
            protocol_factory(lambda: ClientConnection(server)),
            cfg.listen.host,
            cfg.listen.port,
            reuse_port=reuse_port or None,
            backlog=2048,
        )
        self._tasks.append(loop.create_task(self._housekeeping()))
        # Always built (idle while live.enabled is false), so a reload can turn it on.
        self.live_view = LiveView(self, self.clocks.monotonic, self.clocks.wall)
        self.live_view.start()
        for backend in cfg.backends:
            if backend.health is not None:
                self._tasks.append(loop.create_task(self._health_loop(backend.name)))

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

    async def _health_loop(self, name: str) -> None:
        await probe_forever(
            self.state.health(name), lambda: self._probe_target(name), self.clocks.monotonic
        )

    def _probe_target(self, name: str) -> ProbeTarget | None:
        """The current config's health check for backend `name` (None: a reload removed it)."""
        backend = next((b for b in self.loaded.config.backends if b.name == name), None)
        if backend is None or backend.health is None:
            return None
        h = backend.health
        return ProbeTarget(
            backend.host, backend.port, h.path, h.timeout, h.interval, backend.cooldown
        )

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
        while server.exchanges:
            if server.loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        # Past the deadline: end what is left; each exchange releases its slot as it ends.
        for ex in list(server.exchanges):
            ex.abort()
        pending = list(server.tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for conn in list(server.connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        if self.live_view is not None:
            await self.live_view.stop()
        for pool in self.gen.pools.values():
            pool.close()
        self.gen.access_log.close()
