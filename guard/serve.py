"""Serve one guard process: the proxy listener, the admin app, signals and shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

from aiohttp import web

from guard import data_path
from guard.admin import make_admin_app
from guard.runtime import Runtime

log = logging.getLogger("guard")


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
    await site.start()
    return runner


async def serve(
    path: Path,
    ready: asyncio.Event | None = None,
    share: tuple[int, int] = (0, 1),
    admin_socket: Path | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP re-reads the config file. As worker i of n
    (`share`), listen with SO_REUSEPORT and serve the admin app on `admin_socket`."""
    runtime = Runtime(path, share=share)
    await runtime.start(reuse_port=share[1] > 1)
    gc.freeze()  # start-up objects (config, compiled rules, pages) never need scanning again
    admin = await start_admin(runtime, admin_socket)
    cfg = runtime.loaded.config
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(runtime.reload()))
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
    await runtime.stop()
    await admin.cleanup()
    return 0
