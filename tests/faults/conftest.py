"""Fixtures of the fault suite (the shared ones live in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any

import pytest

from tests.support.faults import Backend, Script, StartBackend, start_backend


@pytest.fixture(autouse=True)
async def pin_tasks() -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Keep a strong reference to every task created during the test.

    The event loop holds tasks only weakly. A request task stuck on a future that nothing
    will ever resolve is garbage, and when the garbage collector happens to close its
    coroutine, the `finally: ticket.release()` runs -- a count "released" by the GC, at a
    time nobody chose. Pinning the tasks turns such a leak into a failing test instead."""
    loop = asyncio.get_running_loop()
    pinned: list[asyncio.Task[Any]] = []
    previous = loop.get_task_factory()

    def factory(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kw: Any,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kw)
        pinned.append(task)
        return task

    loop.set_task_factory(factory)
    yield pinned
    loop.set_task_factory(previous)


@pytest.fixture
async def backend() -> AsyncIterator[StartBackend]:
    """Start scripted backends; every hanging script is woken and every server closed after."""
    started: list[Backend] = []

    async def start(script: Script, name: str = "b") -> Backend:
        b = await start_backend(script, name)
        started.append(b)
        return b

    yield start
    for b in started:
        b.hang.set()
        b.server.close()
