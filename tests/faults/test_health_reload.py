"""Active health checks follow the running config and survive any answer; every up/down
transition is logged with its reason; a probe that times out on a busy backend is not a
verdict of death (issue 9 item 8, issue 10 item 4)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import pytest

from tests.faults.conftest import StartBackend
from tests.support.faults import Backend, Script
from tests.support.polling import poll
from tests.support.rawhttp import exchange, read_request_head
from tests.support.servers import Guard, StartGuard, write_config

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
HEALTH = "health: {path: /hc, interval: 50ms, timeout: 300ms}"


@dataclass
class Probed:
    """What the backend answers to `GET /hc` (mutable: a test changes it mid-way), and how
    many probes it has seen."""

    answer: bytes | None = OK  # None: never answer (a slow or busy backend)
    probes: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


def script(probed: Probed) -> Script:
    async def run(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await read_request_head(r)
        if head.startswith(b"GET /hc "):
            probed.probes += 1
            if probed.answer is None:
                await b.hang_until_closed(r)
                return
            w.write(probed.answer)
        else:  # a proxied request: held until the test releases it
            await probed.release.wait()
            w.write(OK)
        await w.drain()
        w.close()

    return run


def up(guard: Guard) -> bool:
    return guard.runtime.admission.snapshot().backends[0].up


async def start(start_guard: StartGuard, b: Backend, extra: str = "") -> Guard:
    return await start_guard("backends:\n" + b.yaml(extra=extra))


async def reload_with(guard: Guard, b: Backend, extra: str) -> None:
    text = guard.config_path.read_text()
    head = text[: text.index("backends:")]
    write_config(guard.config_path.parent, head + "backends:\n" + b.yaml(extra=extra))
    assert (await guard.runtime.reload()).ok


async def test_a_health_block_added_by_reload_is_probed_and_removed_stops(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    probed = Probed(answer=b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    b = await backend(script(probed))
    guard = await start(start_guard, b)
    assert up(guard)
    await reload_with(guard, b, f", {HEALTH}")
    await poll(lambda: not up(guard), 5, lambda: f"never probed ({probed.probes} probes)")
    probed.answer = OK
    await poll(lambda: up(guard), 5, lambda: "a 200 probe never brought it back")
    await reload_with(guard, b, "")
    await poll(lambda: not guard.runtime.health_checks.running(), 5)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 " + b"x" * 70_000 + b"\r\n\r\n",  # a status line over 64 KiB
        b"\x00\xff garbage \r\n\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"",  # closes without a byte
        None,  # never answers: the probe times out
    ],
    ids=["huge-status-line", "garbage", "bad-status", "empty", "silent"],
)
async def test_any_bad_answer_is_a_failed_probe_and_probing_goes_on(
    start_guard: StartGuard, backend: StartBackend, answer: bytes | None
) -> None:
    probed = Probed(answer=answer)
    b = await backend(script(probed))
    guard = await start(start_guard, b, f", cooldown: 0s, {HEALTH}")
    await poll(lambda: not up(guard), 5, lambda: f"still up after {probed.probes} probes")
    probed.answer = OK
    await poll(lambda: up(guard), 5, lambda: "the probe task died: never up again")


async def test_a_probe_timeout_on_a_busy_backend_does_not_take_it_down(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    probed = Probed(answer=None)
    b = await backend(script(probed))
    guard = await start(start_guard, b, f", {HEALTH}")
    held = asyncio.create_task(exchange(guard.port, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n", 30))
    await poll(lambda: guard.active()["backend:b"] == 1)
    seen = probed.probes
    # Each new probe comes after the previous one timed out: three timeouts while busy.
    await poll(lambda: probed.probes >= seen + 4, 10)
    assert up(guard), "a busy backend whose probe timed out was taken down"
    probed.release.set()
    assert (await held).status == 200
    # Idle now, the same timeouts do count.
    await poll(lambda: not up(guard), 5, lambda: "an idle backend that never answers stays up")


async def test_transitions_are_logged_with_their_reason_and_kept_as_events(
    start_guard: StartGuard, backend: StartBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard")
    probed = Probed(answer=b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    b = await backend(script(probed))
    guard = await start(start_guard, b, f", {HEALTH}")
    await poll(lambda: not up(guard), 5)
    probed.answer = OK
    await poll(lambda: up(guard), 5)
    down = [r for r in caplog.records if "backend b down" in r.getMessage()]
    back = [r for r in caplog.records if "backend b up" in r.getMessage()]
    assert len(down) == 1 and down[0].levelno == logging.WARNING
    assert "active probe" in down[0].getMessage() and "503" in down[0].getMessage()
    assert len(back) == 1 and back[0].levelno == logging.INFO
    kinds = [(e.kind, e.subject) for e in guard.runtime.events.recent()]
    assert kinds[-2:] == [("backend_down", "b"), ("backend_up", "b")]


async def test_a_passive_connect_failure_is_logged_as_such(
    start_guard: StartGuard, backend: StartBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guard")
    b = await backend(script(Probed()))
    b.server.close()
    await b.server.wait_closed()
    guard = await start(start_guard, b)
    res = await exchange(guard.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert res.status == 502
    down = [r.getMessage() for r in caplog.records if "backend b down" in r.getMessage()]
    assert len(down) == 1 and "passive" in down[0] and "connect" in down[0], down
    assert guard.runtime.events.recent()[-1].detail.startswith("passive")
