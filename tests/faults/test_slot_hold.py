"""A slot is held until the backend's work is over (issue 9, item 2).

A servlet container starts a request when its head arrives and keeps a thread on it until it
answers: a client that aborts its upload, or a 504 after timeouts.read, ends the client's
side only. guard keeps the slot (and the backend connection) until the backend answers --
the answer is read, thrown away and the connection closed, never pooled -- or, after a 504,
until timeouts.abandon passes. Such "orphaned" transactions are counted per backend in
/status and in the gauge guard_backend_orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from guard.config import ConfigError, load_config
from tests.support.faults import (
    Backend,
    StartBackend,
    metric,
    one_backend,
    read_head,
    rst_close,
    wait_clients_gone,
)
from tests.support.polling import poll
from tests.support.rawhttp import exchange
from tests.support.servers import Guard, StartGuard, write_config

LATE_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"


class SlowServlet:
    """A backend script that takes a request, works until `go` is set, then answers and
    waits for guard to close the connection."""

    def __init__(self) -> None:
        self.got_head = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        self.got_head.set()
        await self.go.wait()
        w.write(LATE_ANSWER)
        await w.drain()
        await b.until_guard_closes(r)


async def orphaned(guard: Guard) -> int:
    status = await guard.status()
    return int(status["backends"][0]["orphaned"])


async def held(guard: Guard, n: int) -> None:
    """The backend's slot and the orphaned count are both `n`, in the core and in /status."""
    assert guard.active()["backend:b"] == n, guard.active()
    assert await orphaned(guard) == n
    assert metric(await guard.metrics(), "guard_backend_orphaned", backend="b") == n


async def test_aborted_upload_holds_the_slot_until_the_backend_answers(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    servlet = SlowServlet()
    b = await backend(servlet)
    streamed = (
        "rules:\n  - {name: up, path: /**, request_buffering: false}\n"  # buffering is the default
    )
    guard = await start_guard(one_backend(b) + streamed + "timeouts: {read: 30s, shutdown: 1s}\n")
    _, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nab")
    await asyncio.wait_for(servlet.got_head.wait(), 5.0)
    rst_close(writer)
    await wait_clients_gone(guard)
    await held(guard, 1)  # the servlet still runs the request: its slot is still taken
    servlet.go.set()
    await b.wait_guard_closed()  # the answer is read and dropped, the connection not pooled
    await guard.wait_idle()
    await held(guard, 0)


async def test_504_keeps_slot_and_connection_until_the_late_answer(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    servlet = SlowServlet()
    b = await backend(servlet)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 200ms, shutdown: 1s}\n")
    res = await exchange(guard.port, b"GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert res.status == 504
    assert b.closed_by_guard == 0, "the backend connection must stay open after the 504"
    await held(guard, 1)
    servlet.go.set()
    await b.wait_guard_closed()
    await guard.wait_idle()
    await held(guard, 0)
    assert b.connections == 1
    # The discarded answer reached nobody; the next request gets a fresh connection.
    servlet.go.clear()
    servlet.got_head.clear()
    servlet.go.set()
    res = await exchange(guard.port, b"GET /next HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert res.status == 200 and res.body == b"late"
    assert b.connections == 2


async def test_abandon_limit_ends_the_wait_for_a_backend_that_never_answers(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    async def never_answers(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        await b.hang_until_closed(r)

    b = await backend(never_answers)
    guard = await start_guard(
        one_backend(b) + "timeouts: {read: 200ms, abandon: 600ms, shutdown: 1s}\n"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    res = await exchange(guard.port, b"GET /never HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert res.status == 504
    await held(guard, 1)
    await b.wait_guard_closed()
    elapsed = loop.time() - started
    assert 0.55 <= elapsed < 3.0, elapsed  # not before timeouts.abandon, not much after
    await poll(guard.all_zero, 2.0, lambda: f"slot still held: {guard.active()}")
    await held(guard, 0)


async def test_abandon_limit_holds_against_a_backend_that_trickles_after_the_504(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    """A backend sending a byte now and then (a slow page streamed after guard gave up on
    it) must not keep its orphaned slot past timeouts.abandon."""

    async def trickles(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        await asyncio.sleep(0.3)  # the backend's behaviour under test: late, then trickling
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # 10 s of one byte every 100 ms
                w.write(b"x")
                await w.drain()
                await asyncio.sleep(0.1)

    b = await backend(trickles)
    guard = await start_guard(
        one_backend(b) + "timeouts: {read: 200ms, abandon: 800ms, shutdown: 1s}\n"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    res = await exchange(guard.port, b"GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert res.status == 504
    await held(guard, 1)
    await poll(guard.all_zero, 5.0, lambda: f"slot still held: {guard.active()}")
    assert loop.time() - started < 2.5  # abandon (0.8 s) and a sweep, not the trickle's 10 s
    await held(guard, 0)


@pytest.mark.parametrize(
    ("timeouts", "message"),
    [
        ("{read: 10s, abandon: 5s}", "timeouts.read"),
        ("{abandon: 10s}", "timeouts.read"),  # read defaults to 30s
        ("{abandon: soon}", "duration"),
    ],
)
def test_abandon_shorter_than_read_is_a_config_error_with_file_line_key(
    tmp_path: Path, timeouts: str, message: str
) -> None:
    path = write_config(
        tmp_path,
        "listen: 127.0.0.1:8000\nwaiting_page: waiting.html\n"
        "backends:\n  - {name: b, url: 'http://127.0.0.1:9', max_active: 5}\n"
        f"timeouts: {timeouts}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"{path}:5" in text and "timeouts.abandon" in text, text
    assert message in text, text
