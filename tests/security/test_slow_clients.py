"""Slow clients are cut off by guard's own deadlines, and a slow client never holds an
active-transaction slot longer than those deadlines allow (measured with loop.time(), with
2 s of slack for a noisy machine)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

from tests.support.polling import poll
from tests.support.polling import poll_async as eventually
from tests.support.rawhttp import peer_closes, read_response
from tests.support.security import reply
from tests.support.servers import Guard, StartGuard, StartWas, Was, backends_yaml

DEADLINE = 0.3
SLACK = 2.0
SLOW = f"""
timeouts: {{shutdown: 500ms}}
limits:
  header_timeout: {int(DEADLINE * 1000)}ms
  body_timeout: {int(DEADLINE * 1000)}ms
  send_timeout: {int(DEADLINE * 1000)}ms
  keepalive_timeout: {int(DEADLINE * 1000)}ms
rules:
  - {{name: event, path: /event/**, max_active: 5}}
"""


async def slow_guard(start_was: StartWas, start_guard: StartGuard) -> tuple[Guard, Was]:
    was = await start_was()
    return await start_guard(backends_yaml(was) + SLOW), was


async def wait_closed(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """Seconds until guard ends the connection (read to EOF), and what it sent."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    data = b""
    try:
        async with asyncio.timeout(DEADLINE + SLACK + 1.0):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {DEADLINE + SLACK + 1.0}s") from None
    return loop.time() - started, data


def was_idle(was: Was) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await was.stats())["active"] == 0

    return check


def assert_timeout_answer(data: bytes) -> None:
    """Closing silently or with a 408 are both fine; anything else is not."""
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:200]


async def test_silent_connection_closed_after_header_timeout(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await slow_guard(start_was, start_guard)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    elapsed, data = await wait_closed(reader)
    writer.close()
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + SLACK, elapsed
    assert_timeout_answer(data)
    assert (await was.stats())["served"] == 0
    assert guard.runtime.server is not None
    await poll(lambda: not guard.runtime.server.connections)  # type: ignore[union-attr]


async def test_head_trickled_byte_by_byte_is_cut_after_header_timeout(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """header_timeout bounds the whole head, not the gap between bytes."""
    guard, was = await slow_guard(start_was, start_guard)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    head = b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 10_000

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for i in range(len(head)):
                writer.write(head[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.02)  # a slowloris client: one byte every 20 ms

    task = asyncio.create_task(trickle())
    try:
        elapsed, data = await wait_closed(reader)
    finally:
        task.cancel()
        writer.close()
    assert elapsed <= DEADLINE + SLACK, elapsed
    assert_timeout_answer(data)
    assert (await was.stats())["served"] == 0
    assert guard.all_zero(), guard.active()


async def test_keepalive_idle_connection_closed_after_keepalive_timeout(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, _was = await slow_guard(start_was, start_guard)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"GET /event/a HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await read_response(reader)).status == 200
    elapsed, data = await wait_closed(reader)
    writer.close()
    assert elapsed <= DEADLINE + SLACK, elapsed
    assert data == b""


async def test_stalled_body_is_cut_after_body_timeout_and_the_slot_released(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await slow_guard(start_was, start_guard)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /event/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
    writer.write(b"x" * 10)
    await writer.drain()
    last_byte = loop.time()
    await poll(lambda: guard.active()["rule:event"] == 1, 2.0, lambda: "never admitted")
    await was.wait_active(1)
    await poll(guard.all_zero, DEADLINE + SLACK, lambda: f"slot still held: {guard.active()}")
    held = loop.time() - last_byte
    assert held <= DEADLINE + SLACK, held
    res = await reply(reader, 2.0)
    assert res.status in (0, 408), res.status
    assert await peer_closes(reader, 2.0)
    writer.close()
    await eventually(was_idle(was), 2.0, "the WAS exchange was not aborted")
    assert (await was.stats())["served"] == 0  # the WAS never got a complete request


async def test_body_trickled_with_short_gaps_cannot_hold_the_slot_indefinitely(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """R.U.D.Y.: one body byte every body_timeout/3, so no single gap ever reaches
    body_timeout. The slot must still be given back within the deadlines' bound, not held
    for as long as the client cares to trickle."""
    guard, was = await slow_guard(start_was, start_guard)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /event/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    await writer.drain()
    started = loop.time()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(DEADLINE / 3)

    task = asyncio.create_task(trickle())
    try:
        await poll(lambda: guard.active()["rule:event"] == 1, 2.0, lambda: "never admitted")
        await poll(guard.all_zero, DEADLINE + SLACK, lambda: f"slot still held: {guard.active()}")
        assert loop.time() - started <= DEADLINE + SLACK
        assert await peer_closes(reader, 2.0)
    finally:
        task.cancel()
        writer.close()
    await eventually(was_idle(was), 2.0, "the WAS exchange was not aborted")


async def test_client_that_does_not_read_is_cut_after_send_timeout_and_slot_released(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await slow_guard(start_was, start_guard)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", guard.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    size = 500 * 1024 * 1024
    writer.write(b"GET /__was/bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
    sent = loop.time()
    writer.transport.pause_reading()  # the client reads nothing
    await poll(lambda: guard.active()["site"] == 1, 2.0, lambda: "never admitted")
    # The kernel buffers fill in milliseconds; then send_timeout runs.
    await poll(guard.all_zero, DEADLINE + SLACK, lambda: f"slot still held: {guard.active()}")
    held = loop.time() - sent
    assert held <= DEADLINE + SLACK, held
    writer.transport.resume_reading()
    got = 0
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        async with asyncio.timeout(5.0):
            while chunk := await reader.read(1 << 16):
                got += len(chunk)
    assert got < size  # the response was cut, not delivered
    writer.close()
    await eventually(was_idle(was), 2.0, "guard did not abort the backend exchange")


async def test_deadline_defaults_are_finite_and_sane(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    limits = guard.runtime.gen.loaded.config.limits
    assert 0 < limits.header_timeout <= 60
    assert 0 < limits.body_timeout <= 120
    assert 0 < limits.send_timeout <= 120
    assert 0 < limits.keepalive_timeout <= 300
