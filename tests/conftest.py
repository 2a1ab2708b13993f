"""Shared fixtures: real simulated WAS instances and a real guard, on loopback, in-process.

Nothing on the request path is mocked: tests talk HTTP over sockets to guard's own
listener, which talks HTTP over sockets to the simulated WAS.
"""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from guard.runtime import Runtime
from guard.serve import start_admin
from guard.tools.was import run_was

WAITING = "<html><body>please wait</body></html>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        out = {"site": snap["site"]["active"]}
        out.update({f"backend:{b['name']}": b["active"] for b in snap["backends"]})
        out.update({f"rule:{r['name']}": r["active"] for r in snap["rules"]})
        return out

    def all_zero(self) -> bool:
        return all(v == 0 for v in self.active().values())

    async def wait_idle(self, timeout: float = 5.0) -> None:
        await poll(self.all_zero, timeout, lambda: f"counts stay raised: {self.active()}")


async def poll(
    cond: Callable[[], bool], timeout: float = 5.0, why: Callable[[], str] | None = None
) -> None:
    """Wait for a condition with a deadline (yielding to the loop between checks)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(why() if why else "condition not met in time")
        await asyncio.sleep(0.005)


async def poll_async(
    check: Callable[[], Awaitable[bool]],
    timeout: float = 5.0,
    why: str | Callable[[], str] = "condition not met in time",
) -> None:
    """poll() for a condition that must itself await (an HTTP probe, a subprocess)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(why if isinstance(why, str) else why())
        await asyncio.sleep(0.01)


def write_config(tmp_path: Path, body: str, name: str = "guard.yaml") -> Path:
    page = tmp_path / "waiting.html"
    if not page.exists():
        page.write_text(WAITING)
        (tmp_path / "waiting.css").write_text("body{color:#333}")
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled code older than its source: the .so would win the import and
    the tests would pass against code that is no longer there. `make test` rebuilds.
    mypyc puts the code of every compiled module in one library, guard__mypyc*.so."""
    top = Path(__file__).resolve().parent.parent
    for lib in top.glob("guard__mypyc*.so"):
        built = lib.stat().st_mtime
        stale = []
        for so in (top / "guard").rglob("*.so"):
            src = so.with_name(so.name.split(".", 1)[0] + ".py")
            if not src.exists() or src.stat().st_mtime > built:
                stale.append(str(src.relative_to(top)))
        if stale:
            pytest.exit(
                f"compiled code does not match {', '.join(stale)}: run `make build`"
                " (`make clean` first if a module was removed or you checked out another commit)",
                2,
            )


def pytest_asyncio_loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, like `guard run` does."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


StartWas = Callable[..., Awaitable[Was]]
StartGuard = Callable[..., Awaitable[Guard]]


@pytest.fixture
async def start_was() -> AsyncIterator[StartWas]:
    runners: list[web.AppRunner] = []

    async def start(name: str = "was-1", workers: int = 50, service_time: float = 0.0) -> Was:
        runner = await run_was("127.0.0.1", 0, workers, service_time, name)
        runners.append(runner)
        return Was(runner, int(runner.addresses[0][1]), name)

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def start_guard(tmp_path: Path) -> AsyncIterator[StartGuard]:
    guards: list[Guard] = []

    async def start(body: str, **fmt: Any) -> Guard:
        """body: YAML without listen/admin_listen/access_log (added here). Both ports are 0,
        bound by the kernel: a port picked in advance could be taken before guard binds it."""
        header = """
        listen: 127.0.0.1:0
        admin_listen: 127.0.0.1:0
        waiting_page: waiting.html
        access_log: {format: json, path: access.log}
        """
        path = write_config(tmp_path, textwrap.dedent(header) + textwrap.dedent(body))
        runtime = Runtime(path)
        await runtime.start()
        admin = await start_admin(runtime)
        guard = Guard(runtime, admin, path)
        guards.append(guard)
        return guard

    yield start
    for guard in guards:
        await guard.runtime.stop()
        await guard.admin.cleanup()


def backends_yaml(*wases: Was, max_active: int = 100, extra: str = "") -> str:
    lines = ["backends:"]
    for w in wases:
        lines.append(f"  - {{name: {w.name}, url: '{w.url}', max_active: {max_active}{extra}}}")
    return "\n".join(lines) + "\n"


def read_access_log(guard: Guard) -> list[dict[str, Any]]:
    guard.runtime.gen.access_log.flush()
    text = (guard.config_path.parent / "access.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
