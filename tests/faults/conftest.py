"""Fixtures of the fault suite (the shared ones live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.faults.helpers import Backend, Script, start_backend

StartBackend = Callable[..., Awaitable[Backend]]


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
