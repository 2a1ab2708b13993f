"""Fixtures and hooks shared by every suite. The classes and helpers that test modules import
by name live in tests/support/; this file only starts and stops them around each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from guard.tools.launch import Launcher
from tests.support.processes import GuardProcess, SpawnGuard, spawn_guard_in
from tests.support.servers import Guard, StartGuard, StartWas, Was, start_guard_in, start_was


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test compiled code that is not the source: the .so would win the import and
    the tests would pass against code that is no longer there. `make test` rebuilds.
    mypyc puts the code of every compiled module in one library, guard__mypyc*.so; the
    compiled packages are listed in compiled.txt (as setup.py and the Makefile read them)."""
    top = Path(__file__).resolve().parent.parent
    text = (top / "compiled.txt").read_text()
    packages = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    compiled = [top / p for p in packages if p]
    for lib in top.glob("guard__mypyc*.so"):
        built = lib.stat().st_mtime
        stale = []
        for so in (top / "guard").rglob("*.so"):
            src = so.with_name(so.name.split(".", 1)[0] + ".py")
            outside = so.parent not in compiled  # compiled once, no longer: shadows its .py
            if outside or not src.exists() or src.stat().st_mtime > built:
                stale.append(str(src.relative_to(top)))
        for package in compiled:
            for src in package.glob("*.py"):
                if src.name != "__init__.py" and not list(package.glob(src.stem + ".*.so")):
                    stale.append(str(src.relative_to(top)))  # a new module, never built
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


@pytest.fixture(name="start_was")
async def start_was_fixture() -> AsyncIterator[StartWas]:
    """Start simulated WAS instances in the test process; all are stopped after the test."""
    started: list[Was] = []

    async def start(*args: Any, **kwargs: Any) -> Was:
        was = await start_was(*args, **kwargs)
        started.append(was)
        return was

    yield start
    for was in started:
        await was.runner.cleanup()


@pytest.fixture
async def start_guard(tmp_path: Path) -> AsyncIterator[StartGuard]:
    """Start guard in the test process with `await start_guard(yaml_body)` (see
    tests.support.servers.start_guard_in); all are stopped after the test."""
    started: list[Guard] = []

    async def start(body: str) -> Guard:
        guard = await start_guard_in(tmp_path, body)
        started.append(guard)
        return guard

    yield start
    for guard in started:
        await guard.stop()


@pytest.fixture
async def spawn_guard(tmp_path: Path) -> AsyncIterator[SpawnGuard]:
    """Start `guard run` subprocesses (tests.support.processes.spawn_guard_in); all are
    stopped after the test, SIGKILL for one that ignores SIGTERM."""
    launcher = Launcher(tmp_path)

    async def spawn(body: str) -> GuardProcess:
        return await spawn_guard_in(launcher, body)

    yield spawn
    launcher.stop_all()
