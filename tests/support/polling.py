"""Waiting for a condition with a deadline, yielding to the event loop between checks.

Tests never sleep a fixed time to let something happen: they poll the condition itself and
fail with a message that says what was still wrong when the deadline passed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# Short enough not to slow a test down, long enough not to spin the loop.
_SYNC_STEP = 0.005
_ASYNC_STEP = 0.01


async def poll(
    cond: Callable[[], bool], timeout: float = 5.0, why: Callable[[], str] | None = None
) -> None:
    """Wait for a condition with a deadline (yielding to the loop between checks)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(why() if why else "condition not met in time")
        await asyncio.sleep(_SYNC_STEP)


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
        await asyncio.sleep(_ASYNC_STEP)
