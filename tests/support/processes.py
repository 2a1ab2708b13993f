"""A real `guard run` subprocess for the tests that need one (signals, `workers: N`),
started with the launcher that the benchmark and the soak use (guard.tools.launch)."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from guard.tools.launch import Launched, Launcher, free_port, guard_command
from tests.support.polling import poll_async
from tests.support.servers import write_config


@dataclass
class GuardProcess:
    proc: Launched
    config_path: Path
    port: int
    admin_port: int

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.proc.running()

    def signal(self, sig: int) -> None:
        self.proc.signal(sig)

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.admin_url}/status") as r:
            return dict(await r.json())

    async def exit_code(self, timeout: float) -> int:
        return await self.proc.exit_code(timeout)

    def stderr(self) -> str:
        """guard's log (stdout and stderr: guard writes only its log, to stderr)."""
        return self.proc.log_text()

    async def healthy(self) -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{self.admin_url}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientConnectionError:
            return False


SpawnGuard = Callable[..., Awaitable[GuardProcess]]


async def spawn_guard_in(launcher: Launcher, body: str) -> GuardProcess:
    """`guard run` on a config written into the launcher's folder. body: YAML without
    listen/admin_listen/waiting_page/access_log (added here). Returns once both ports
    accept and /healthz answers 200."""
    port, admin_port = free_port(), free_port()
    header = f"""
    listen: 127.0.0.1:{port}
    admin_listen: 127.0.0.1:{admin_port}
    waiting_page: waiting.html
    access_log: {{format: json, path: access.log}}
    """
    name = f"guard-{len(launcher.items)}"
    path = write_config(
        launcher.workdir, textwrap.dedent(header) + textwrap.dedent(body), f"{name}.yaml"
    )
    g = GuardProcess(launcher.start(name, guard_command(path)), path, port, admin_port)
    await g.proc.wait_port_async(admin_port)
    await g.proc.wait_port_async(port)
    await poll_async(g.healthy, 15.0, lambda: f"guard not healthy: {g.stderr()}")
    return g
