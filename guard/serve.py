"""Serve one guard process: the proxy listener, the admin app, signals and shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from pathlib import Path
from typing import Final

from aiohttp import web

from guard import data_path
from guard.admin import make_admin_app
from guard.proxy.logsink import LINES_DROPPED
from guard.runtime import Runtime

log = logging.getLogger("guard")
DROP_REPORT_INTERVAL: Final = 10.0  # seconds between "log lines dropped" reports


class BindError(Exception):
    """A listening address guard cannot take: one line for the operator, no traceback."""

    def __init__(self, key: str, address: object, err: OSError) -> None:
        # asyncio's own strerror repeats the address; the plain errno text does not.
        reason = os.strerror(err.errno).lower() if err.errno else str(err)
        super().__init__(f"guard: {key} {address}: {reason} (set another {key} or free it)")


async def start_admin(runtime: Runtime, unix_path: Path | None = None) -> web.AppRunner:
    """The admin app on admin_listen, or (a worker under a supervisor) on a unix socket."""
    cfg = runtime.loaded.config
    # A unix socket (a worker's, in the supervisor's private folder) is guarded by file
    # permissions; the supervisor applies the admin protection on the TCP port.
    access = None if unix_path is not None else (lambda: runtime.admin_access)
    runner = web.AppRunner(make_admin_app(runtime, access=access), access_log=None)
    await runner.setup()
    site: web.BaseSite
    if unix_path is not None:
        site = web.UnixSite(runner, str(unix_path))
    else:
        site = web.TCPSite(runner, cfg.admin_listen.host, cfg.admin_listen.port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise BindError("admin_listen", unix_path or cfg.admin_listen, err) from None
    return runner


class DropReporter:
    """One stderr line per interval when log lines were dropped, never one per line."""

    def __init__(self) -> None:
        self.reported = LINES_DROPPED.lines

    def report(self) -> None:
        now = LINES_DROPPED.lines
        if now > self.reported:
            log.warning(
                "log lines dropped: %d since the last report (%d in all): a log destination"
                " is not keeping up",
                now - self.reported,
                now,
            )
            self.reported = now

    async def every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.report()


async def start(
    runtime: Runtime, share: tuple[int, int], admin_socket: Path | None
) -> web.AppRunner:
    cfg = runtime.loaded.config
    try:
        await runtime.start(reuse_port=share[1] > 1)
    except OSError as err:
        raise BindError("listen", cfg.listen, err) from None
    try:
        return await start_admin(runtime, admin_socket)
    except BindError:
        await runtime.stop()
        raise


async def serve(
    path: Path,
    ready: asyncio.Event | None = None,
    share: tuple[int, int] = (0, 1),
    admin_socket: Path | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP re-reads the config file, SIGUSR1 reopens the access
    log. As worker i of n (`share`), listen with SO_REUSEPORT and serve the admin app on
    `admin_socket`. Raises BindError when an address is taken."""
    runtime = Runtime(path, share=share)
    admin = await start(runtime, share, admin_socket)
    gc.freeze()  # start-up objects (config, compiled rules, pages) never need scanning again
    cfg = runtime.loaded.config
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(runtime.reload()))
    loop.add_signal_handler(signal.SIGUSR1, lambda: runtime.gen.access_log.reopen())
    drops = DropReporter()
    reporter = loop.create_task(drops.every(DROP_REPORT_INTERVAL))
    where = str(admin_socket) if admin_socket else str(cfg.admin_listen)
    log.info(
        "guard listening on %s:%s, admin on %s; data path %s",
        cfg.listen.host,
        runtime.bound_port,
        where,
        data_path(),
    )
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %ss)", cfg.timeouts.shutdown)
    reporter.cancel()
    await runtime.stop()
    await admin.cleanup()
    drops.report()  # what the last interval (and the final flush) dropped
    return 0
