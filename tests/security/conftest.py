"""Fixtures for the security suite: a backend that records every byte it is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.rawhttp import RecordingBackend


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingBackend]:
    backend = await RecordingBackend().start()
    yield backend
    backend.close()
