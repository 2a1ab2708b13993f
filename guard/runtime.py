"""Wiring: a config generation, the proxy server, reload and graceful shutdown.

A Generation bundles everything derived from one config file (admission, pages, pools,
access log). Requests read `server.gen` once when they start, so a reload swaps the whole
bundle atomically; counters live in the shared State, so a request admitted under the old
generation is released correctly under the new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Final

from guard.accesslog import AccessLog
from guard.config import Config, ConfigError, LoadedConfig, load_config, problems_as_json
from guard.core.admission import Admission
from guard.core.state import MemoryState
from guard.proxy import forward
from guard.proxy.connection import ConnectionLimits
from guard.proxy.responses import Pages
from guard.proxy.server import ClientConnection
from guard.proxy.upstream import Pool, protocol_factory
from guard.reload import ReloadResult

log: Final = logging.getLogger("guard")


@dataclass
class Generation:
    loaded: LoadedConfig
    admission: Admission
    pages: Pages
    pools: dict[str, Pool]
    access_log: AccessLog
    # Read on every request: copied out of the config once.
    trusted: tuple[IPv4Network | IPv6Network, ...] = field(init=False)
    read_timeout: float = field(init=False)
    limits: ConnectionLimits = field(init=False)

    def __post_init__(self) -> None:
        self.trusted = self.loaded.config.trusted_proxies
        self.read_timeout = self.loaded.config.timeouts.read
        self.limits = ConnectionLimits(self.loaded.config.limits)


class ProxyServer:
    """Owns the listening socket, the live connections and the current generation."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.get_running_loop()
        self.connections: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # backend connects under way
        self.exchanges: set[forward.Exchange] = set()  # admitted requests in flight
        self.closing = False

    @property
    def gen(self) -> Generation:
        return self.runtime.gen

    @property
    def config(self) -> Config:
        return self.runtime.gen.loaded.config

    @property
    def limits(self) -> ConnectionLimits:
        return self.runtime.gen.limits

    @property
    def max_body(self) -> int:
        return int(self.runtime.gen.loaded.config.client_max_size)

    def dispatch(self, conn: ClientConnection, req: Any) -> None:
        forward.dispatch(self.runtime.gen, conn, req)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task for the rare slow path (opening a backend connection); held strongly,
        since asyncio keeps tasks only weakly."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def apply_limits(self, limits: ConnectionLimits) -> None:
        """A reload's limits reach the connections already open, from their next read on
        (a deadline already running keeps the timeout it started with)."""
        for conn in self.connections:
            conn.limits = limits

    def count_bad_request(self, status: int) -> None:
        adm = self.runtime.gen.admission
        if status != 408:
            adm.record(adm.default_rule, "bad_request")

    def sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn.check_deadlines(now)
        for ex in list(self.exchanges):
            if ex.up is not None:
                ex.up.check_deadline(now)


class Runtime:
    """One guard process: config generations, the proxy listener, admin, reload, shutdown."""

    def __init__(self, config_path: Path, share: tuple[int, int] = (0, 1)) -> None:
        self.config_path = config_path
        self.share = share
        self.state = MemoryState()
        self.reload_counts = {"success": 0, "failure": 0}
        self.gen: Generation = self._build(load_config(config_path), None)
        self.server: ProxyServer | None = None
        self._listener: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()

    # -- generations ------------------------------------------------------------------
    def _build(self, loaded: LoadedConfig, old: Generation | None) -> Generation:
        cfg = loaded.config
        admission = Admission(cfg, self.state, time.monotonic, share=self.share)
        pages = Pages(cfg.waiting_page, cfg.static_dir, cfg.retry_after_s)
        pools: dict[str, Pool] = {}
        for b in cfg.backends:
            prev = old.pools.get(b.name) if old else None
            same = prev is not None and (prev.host, prev.port) == (b.host, b.port)
            if prev is not None and same:
                prev.max_idle = b.max_idle
                prev.connect_timeout = cfg.timeouts.connect
                pools[b.name] = prev
            else:
                pools[b.name] = Pool(b.host, b.port, b.max_idle, cfg.timeouts.connect)
        if old is not None:
            for name, pool in old.pools.items():
                if pools.get(name) is not pool:
                    pool.close()
        same_log = old is not None and old.loaded.config.access_log == cfg.access_log
        access_log = old.access_log if same_log and old else AccessLog.from_config(cfg.access_log)
        if old is not None and access_log is not old.access_log:
            old.access_log.close()
        return Generation(loaded, admission, pages, pools, access_log)

    @property
    def admission(self) -> Admission:
        return self.gen.admission

    @property
    def loaded(self) -> LoadedConfig:
        return self.gen.loaded

    async def reload(self) -> ReloadResult:
        async with self._reload_lock:
            try:
                loaded = load_config(self.config_path)
                gen = self._build(loaded, self.gen)
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
            self.gen = gen
            if self.server is not None:
                self.server.apply_limits(gen.limits)
            self.reload_counts["success"] += 1
            log.info("reloaded %s (sha256 %s)", loaded.path, loaded.sha256[:12])
            return ReloadResult(True, summary=self.summary())

    def summary(self) -> dict[str, Any]:
        cfg = self.gen.loaded.config
        return {
            "config": str(self.gen.loaded.path),
            "sha256": self.gen.loaded.sha256,
            "backends": [b.name for b in cfg.backends],
            "rules": [r.name for r in cfg.rules],
            "max_active": cfg.max_active,
        }

    # -- serving ----------------------------------------------------------------------
    async def start(self, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.gen.loaded.config
        self.server = server = ProxyServer(self)
        self._listener = await loop.create_server(
            protocol_factory(lambda: ClientConnection(server)),
            cfg.listen.host,
            cfg.listen.port,
            reuse_port=reuse_port or None,
            backlog=2048,
        )
        self._tasks.append(loop.create_task(self._housekeeping()))
        for backend in cfg.backends:
            if backend.health is not None:
                self._tasks.append(loop.create_task(self._health_loop(backend.name)))

    @property
    def bound_port(self) -> int:
        # Any: uvloop returns a list where typeshed says tuple, and compiled code checks.
        listener: Any = self._listener
        assert listener is not None
        return int(listener.sockets[0].getsockname()[1])

    async def _housekeeping(self) -> None:
        """Deadline sweeps and access-log flushes: cheap work on a coarse tick."""
        assert self.server is not None
        while True:
            cfg = self.gen.loaded.config
            limits = cfg.limits
            shortest = min(
                limits.header_timeout, limits.body_timeout, limits.send_timeout, cfg.timeouts.read
            )
            await asyncio.sleep(max(0.02, min(0.2, shortest / 10)))
            self.server.sweep()
            self.gen.access_log.flush()

    async def _health_loop(self, name: str) -> None:
        from guard.health import probe_forever

        await probe_forever(self, name)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish up to timeouts.shutdown, then close."""
        if self.server is None or self._listener is None:
            return
        server = self.server
        server.closing = True
        self._listener.close()
        deadline = server.loop.time() + self.gen.loaded.config.timeouts.shutdown
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
        for pool in self.gen.pools.values():
            pool.close()
        self.gen.access_log.close()
