"""Optional active health checks: `backends[].health: {path, interval, timeout}`.

A probe is a plain `GET path` on a fresh connection; any status below 500 counts as up.
Passive checks (connect failures on real traffic) live in the request path; both feed the
same core Health object, so the admission decision sees one truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from guard.core.clock import Clock
from guard.core.state import Health


@dataclass(frozen=True)
class ProbeTarget:
    """One backend's health check, as the current config has it."""

    host: str
    port: int
    path: str
    timeout: float
    interval: float
    cooldown: float


async def probe(host: str, port: int, path: str, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: guard-health\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    parts = line.split()
    return (
        len(parts) >= 2
        and parts[0].startswith(b"HTTP/1.")
        and parts[1].isdigit()
        and (int(parts[1]) < 500)
    )


async def probe_forever(
    health: Health, target: Callable[[], ProbeTarget | None], clock: Clock
) -> None:
    """Probe until `target()` says the check is gone (a reload removed it), feeding the
    backend's shared Health with each result, timed by `clock` (the core's)."""
    while True:
        t = target()
        if t is None:
            return
        if await probe(t.host, t.port, t.path, t.timeout):
            health.mark_success()
        else:
            health.mark_failure(clock(), t.cooldown)
        await asyncio.sleep(t.interval)
