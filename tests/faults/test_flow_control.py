"""Deadlines and back-pressure that must blame the right party.

Regression tests from review: the backend's read timeout must not run while the backend is
still being sent a steady upload; a client must not get a 408 while guard itself stopped
reading it (the backend was slow to take the body); a client that never reads its answers
cannot keep its connection after the send deadline; a refused request's body is read away
only up to a bound.
"""

from __future__ import annotations

import asyncio
import socket

from tests.support.polling import poll
from tests.support.rawhttp import read_request_head, read_response, scripted_backend
from tests.support.servers import StartGuard


def _content_length(head: bytes) -> int:
    return int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])


async def test_steady_upload_longer_than_the_read_timeout_succeeds(
    start_guard: StartGuard,
) -> None:
    async def backend(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await read_request_head(r)
        await r.readexactly(_content_length(head))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()

    server, port = await scripted_backend(backend)
    guard = await start_guard(
        f"backends:\n  - {{name: b1, url: 'http://127.0.0.1:{port}', max_active: 10}}\n"
        "timeouts: {read: 300ms}\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
    for _ in range(10):  # 1 s of steady upload: paced on purpose, a slow client
        writer.write(b"a" * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)
    res = await read_response(reader, 5)
    assert (res.status, res.body) == (200, b"ok")
    writer.close()
    await guard.wait_idle()
    server.close()


async def test_client_is_not_blamed_while_the_backend_is_slow_to_read(
    start_guard: StartGuard,
) -> None:
    started = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await read_request_head(r)
        started.set()
        await asyncio.sleep(1.0)  # every WAS worker busy: nobody reads the body yet
        await r.readexactly(_content_length(head))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        w.close()

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = await asyncio.start_server(handler, sock=listener)
    port = listener.getsockname()[1]
    guard = await start_guard(
        f"backends:\n  - {{name: b1, url: 'http://127.0.0.1:{port}', max_active: 10}}\n"
        "limits: {body_timeout: 300ms}\ntimeouts: {read: 10s}\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    size = 8 * 1024 * 1024
    writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)

    async def send() -> None:
        for _ in range(size // 65536):
            writer.write(b"a" * 65536)
            await writer.drain()

    sender = asyncio.create_task(send())
    res = await read_response(reader, 15)
    assert (res.status, res.body) == (200, b"ok")  # not a 408 for guard's own pause
    await sender
    writer.close()
    await guard.wait_idle()
    server.close()


async def test_client_that_never_reads_is_dropped_after_the_send_deadline(
    start_guard: StartGuard,
) -> None:
    guard = await start_guard(
        "backends:\n  - {name: b1, url: 'http://127.0.0.1:9', max_active: 10}\n"
        "rules:\n  - {name: blk, path: /blocked/**, block: true}\n"
        "limits: {keepalive_timeout: 300ms, send_timeout: 300ms, header_timeout: 300ms}\n"
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", guard.port))
    _reader, writer = await asyncio.open_connection(sock=sock)
    server = guard.runtime.server
    assert server is not None
    await poll(lambda: bool(server.connections))
    conn = next(iter(server.connections))
    assert conn.transport is not None
    # Answers pile up unread (often less than the high-water mark that pauses writing, so
    # only the keep-alive expiry's close() notices: it must not wait for a drain forever).
    while conn.transport.get_write_buffer_size() == 0:
        writer.write(b"GET /blocked/x HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await poll(lambda: True)
    await poll(lambda: conn not in server.connections, 5, lambda: "still holding the client")
    writer.transport.abort()


async def test_refused_body_is_read_away_only_up_to_a_bound(start_guard: StartGuard) -> None:
    guard = await start_guard(
        "backends:\n  - {name: b1, url: 'http://127.0.0.1:9', max_active: 10}\n"
        "rules:\n  - {name: blk, path: /blocked/**, block: true}\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /blocked/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    res = await read_response(reader, 3)
    assert res.status == 403
    chunk = b"%x\r\n%b\r\n" % (65536, b"q" * 65536)
    sent = 0
    try:
        for _ in range(160):  # 10 MiB of a body nobody wants
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 3)
            sent += 65536
    except (ConnectionError, TimeoutError):
        pass
    assert sent <= 4 * 1024 * 1024, f"guard read {sent} bytes of a refused body"
    try:
        rest = await asyncio.wait_for(reader.read(100), 3)
    except ConnectionError:
        rest = b""
    assert rest == b""  # guard closed the connection
    writer.transport.abort()
