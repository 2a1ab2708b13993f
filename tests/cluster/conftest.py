"""Fixtures of the cluster tests: a real redis-server per test (tests/cluster/redis_server.py)
and a RedisLink to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from guard.cluster.client import RedisLink
from tests.cluster.redis_server import RedisServer


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    """A running, empty redis-server on a free loopback port; stopped after the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="redis_link")
async def redis_link_fixture(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_server.url, timeout=0.5)
    try:
        yield link
    finally:
        await link.close()
