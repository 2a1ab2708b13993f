"""Real servers on loopback, in the test process: the simulated WAS and guard itself.

Nothing on the request path is mocked: tests talk HTTP over sockets to guard's own
listener, which talks HTTP over sockets to the simulated WAS. The fixtures that start and
stop these live in tests/conftest.py; the classes and config writers live here so that test
modules import them by name."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from guard.runtime import Runtime
from guard.serve import start_admin
from guard.tools.launch import free_port
from guard.tools.was import run_was
from tests.support.polling import poll

__all__ = [
    "WAITING",
    "Guard",
    "StartGuard",
    "StartWas",
    "Was",
    "backends_yaml",
    "free_port",
    "read_access_log",
    "start_guard_in",
    "start_was",
    "write_config",
]

WAITING = "<html><body>please wait</body></html>"

# listen/admin_listen on port 0, bound by the kernel: a port picked in advance could be
# taken by another socket before guard binds it.
_GUARD_HEADER = """
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
waiting_page: waiting.html
access_log: {format: json, path: access.log}
"""


@dataclass
class Was:
    runner: web.AppRunner
    port: int
    name: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/__was/stats") as r:
            return dict(await r.json())

    async def release(self) -> None:
        async with aiohttp.ClientSession() as s, s.post(f"{self.url}/__was/release") as r:
            assert r.status == 200

    async def wait_active(self, n: int, timeout: float = 5.0) -> None:
        """Return once the WAS has at least n requests inside (no sleeps: it long-polls)."""
        url = f"{self.url}/__was/wait?active={n}&timeout={timeout}"
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200, await r.text()


@dataclass
class Guard:
    runtime: Runtime
    admin: web.AppRunner
    config_path: Path

    @property
    def port(self) -> int:
        return self.runtime.bound_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_port(self) -> int:
        return int(self.admin.addresses[0][1])

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.admin_url}/status") as r:
            return dict(await r.json())

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(f"{self.admin_url}/metrics") as r:
            return await r.text()

    def active(self) -> dict[str, int]:
        """Active counts straight from the core: site, each backend and each rule."""
        snap = self.runtime.admission.snapshot()
        out = {"site": snap.site.active}
        out.update({f"backend:{b.name}": b.active for b in snap.backends})
        out.update({f"rule:{r.name}": r.active for r in snap.rules})
        return out

    def all_zero(self) -> bool:
        return all(v == 0 for v in self.active().values())

    async def wait_idle(self, timeout: float = 5.0) -> None:
        await poll(self.all_zero, timeout, lambda: f"counts stay raised: {self.active()}")

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.admin.cleanup()


StartWas = Callable[..., Awaitable[Was]]
StartGuard = Callable[..., Awaitable[Guard]]


async def start_was(name: str = "was-1", workers: int = 50, service_time: float = 0.0) -> Was:
    """A simulated WAS on a kernel-chosen port; stop it with `await was.runner.cleanup()`."""
    runner = await run_was("127.0.0.1", 0, workers, service_time, name)
    return Was(runner, int(runner.addresses[0][1]), name)


async def start_guard_in(folder: Path, body: str) -> Guard:
    """guard in this process. body: YAML without listen/admin_listen/access_log (added
    here); the config, waiting page and access log are written into `folder`."""
    path = write_config(folder, textwrap.dedent(_GUARD_HEADER) + textwrap.dedent(body))
    runtime = Runtime(path)
    await runtime.start()
    admin = await start_admin(runtime)
    return Guard(runtime, admin, path)


def write_config(tmp_path: Path, body: str, name: str = "guard.yaml") -> Path:
    page = tmp_path / "waiting.html"
    if not page.exists():
        page.write_text(WAITING)
        (tmp_path / "waiting.css").write_text("body{color:#333}")
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def backends_yaml(*wases: Was, max_active: int = 100, extra: str = "") -> str:
    lines = ["backends:"]
    for w in wases:
        lines.append(f"  - {{name: {w.name}, url: '{w.url}', max_active: {max_active}{extra}}}")
    return "\n".join(lines) + "\n"


def read_access_log(guard: Guard) -> list[dict[str, Any]]:
    guard.runtime.gen.access_log.flush()
    text = (guard.config_path.parent / "access.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
