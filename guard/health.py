"""Optional active health checks: `backends[].health: {path, interval, timeout}`.

A probe is a plain `GET path` on a fresh connection; any status below 500 counts as up.
Passive checks (connect failures on real traffic) live in the request path; both feed the
same core Health object, so the admission decision sees one truth.

The probes follow the running config: :class:`HealthChecks` is told the current targets
each time a generation is installed and starts, restarts or stops one task per backend.
Every answer is survivable: a huge, malformed, truncated or slow answer is a failed probe,
and a bug in the loop is logged and the loop goes on, so a backend's health never freezes.
A probe that times out while guard has requests in flight on that backend is not counted:
a busy backend (a full thread pool) is not a dead one. Refused connections and error
answers still take it down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from guard.core.clock import Clock
from guard.core.state import Health

__all__ = ["HealthChecks", "ProbeResult", "ProbeTarget", "probe", "probe_forever"]

log: Final = logging.getLogger("guard.health")
STATUS_LINE_LIMIT: Final = 8192  # a longer status line is not an HTTP answer


@dataclass(frozen=True)
class ProbeTarget:
    """One backend's health check, as the current config has it."""

    host: str
    port: int
    path: str
    timeout: float
    interval: float
    cooldown: float


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str  # "status 200", "status 503", "timeout", "connect: refused", ...
    timed_out: bool = False


async def probe(host: str, port: int, path: str, timeout: float) -> ProbeResult:
    """One probe. Never raises (bar cancellation): every failure is a result with a reason."""
    try:
        async with asyncio.timeout(timeout):
            line = await _status_line(host, port, path)
    except TimeoutError:
        return ProbeResult(False, f"timeout after {timeout:g}s", timed_out=True)
    except OSError as err:
        return ProbeResult(False, f"connect: {err.strerror or err}")
    except (ValueError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return ProbeResult(False, "malformed answer (status line too long or cut)")
    return _judge(line)


async def _status_line(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, limit=STATUS_LINE_LIMIT)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: guard-health\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        # readuntil, not readline: over the limit it raises instead of returning a piece.
        return await reader.readuntil(b"\n")
    finally:
        writer.close()


def _judge(line: bytes) -> ProbeResult:
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return ProbeResult(False, "malformed answer (not an HTTP/1.x status line)")
    status = int(parts[1])
    if not 100 <= status <= 999:
        return ProbeResult(False, f"malformed answer (status {status})")
    return ProbeResult(status < 500, f"status {status}")


async def probe_forever(
    name: str, health: Health, target: ProbeTarget, busy: Callable[[], bool], clock: Clock
) -> None:
    """Probe `target` every interval until cancelled, feeding the backend's shared Health
    (timed by `clock`, the core's). `busy()`: guard has requests in flight on it now."""
    while True:
        try:
            result = await probe(target.host, target.port, target.path, target.timeout)
            _record(name, health, target, result, busy, clock)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not freeze this backend's health: log, go on
            log.exception("health check of backend %s failed unexpectedly", name)
        await asyncio.sleep(target.interval)


def _record(
    name: str,
    health: Health,
    target: ProbeTarget,
    result: ProbeResult,
    busy: Callable[[], bool],
    clock: Clock,
) -> None:
    if result.ok:
        health.mark_success(f"active probe: {result.reason}")
    elif result.timed_out and busy():
        log.debug("backend %s: probe %s while busy; not counted", name, result.reason)
    else:
        health.mark_failure(clock(), target.cooldown, f"active probe: {result.reason}")


class HealthChecks:
    """One probe task per backend with a `health:` block in the running config."""

    def __init__(
        self,
        health: Callable[[str], Health],
        busy: Callable[[str], bool],
        clock: Clock,
    ) -> None:
        self._health = health
        self._busy = busy
        self._clock = clock
        self._tasks: dict[str, tuple[ProbeTarget, asyncio.Task[None]]] = {}

    def sync(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Make the running probes match `targets` (backend name -> check): a check that
        changed restarts, one that is gone stops, a new one starts (probing at once)."""
        for name, (target, task) in list(self._tasks.items()):
            if targets.get(name) != target or task.done():
                task.cancel()
                del self._tasks[name]
        for name, target in targets.items():
            if name not in self._tasks:
                self._tasks[name] = (target, asyncio.create_task(self._run(name, target)))

    async def _run(self, name: str, target: ProbeTarget) -> None:
        health = self._health(name)
        await probe_forever(name, health, target, lambda: self._busy(name), self._clock)

    def running(self) -> dict[str, ProbeTarget]:
        return {name: target for name, (target, task) in self._tasks.items() if not task.done()}

    async def close(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
