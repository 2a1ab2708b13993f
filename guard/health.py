"""Optional active health checks: `backends[].health: {path, interval, timeout}`.

A probe is a plain `GET path` on a fresh connection; any status below 500 counts as up.
Passive checks (connect failures on real traffic) live in the request path; both feed the
same core Health object, so the admission decision sees one truth.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guard.runtime import Runtime


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


async def probe_forever(runtime: Runtime, name: str) -> None:
    while True:
        backend = next((b for b in runtime.gen.loaded.config.backends if b.name == name), None)
        if backend is None or backend.health is None:
            return  # removed by a reload
        ok = await probe(backend.host, backend.port, backend.health.path, backend.health.timeout)
        health = runtime.state.health(name)
        if ok:
            health.mark_success()
        else:
            health.mark_failure(time.monotonic(), backend.cooldown)
        await asyncio.sleep(backend.health.interval)
