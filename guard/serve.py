"""Serve one guard process: the proxy listener, the admin app, signals and shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from guard.admin import make_admin_app
from guard.runtime import Runtime

log = logging.getLogger("guard")


async def start_admin(runtime: Runtime) -> web.AppRunner:
    cfg = runtime.gen.loaded.config
    runner = web.AppRunner(make_admin_app(runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.admin_listen.host, cfg.admin_listen.port)
    await site.start()
    return runner


async def serve(path: Path, ready: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP re-reads the config file."""
    runtime = Runtime(path)
    await runtime.start()
    admin = await start_admin(runtime)
    cfg = runtime.gen.loaded.config
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(runtime.reload()))
    log.info(
        "guard listening on %s:%s, admin on %s:%s",
        cfg.listen.host,
        runtime.bound_port,
        cfg.admin_listen.host,
        cfg.admin_listen.port,
    )
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %ss)", cfg.timeouts.shutdown)
    await runtime.stop()
    await admin.cleanup()
    return 0
