"""The backend read deadline stops while guard holds the backend back for a slow client
(issue 9, item 4).

When the client reads slower than the backend sends, guard stops reading the backend
(back-pressure). The backend is not late then -- guard is not listening -- so
timeouts.read must not cut the download; the client's send_timeout governs it.
Time is driven by hand: the deadlines are checked with a chosen "now", far past
timeouts.read, instead of waiting for it.
"""

from __future__ import annotations

import asyncio

from tests.support.faults import Backend, StartBackend, metric, one_backend, read_head
from tests.support.polling import poll
from tests.support.servers import Guard, StartGuard

SIZE = 16 * 1024 * 1024  # far more than the socket buffers between backend, guard, client
STALL = 10  # the backend stalls this many bytes before the end


async def big_download(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """SIZE bytes announced, all but the last STALL sent as fast as guard takes them."""
    await read_head(b, r)
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
    block = b"x" * 65536
    for _ in range(SIZE // len(block) - 1):
        w.write(block)
        await w.drain()
    w.write(block[:-STALL])
    await w.drain()
    await b.hang_until_closed(r)


def upstream_paused(guard: Guard) -> bool:
    server = guard.runtime.server
    assert server is not None
    return any(ex.up is not None and ex.up.reading_paused for ex in server.exchanges)


async def rest_of(reader: asyncio.StreamReader) -> bytes:
    """What arrives until guard ends the connection (reset or not)."""
    try:
        return await asyncio.wait_for(reader.read(), 5.0)
    except ConnectionResetError:
        return b""


def sweep_at(guard: Guard, later: float) -> None:
    """Run the deadline sweeper as if `later` seconds had passed."""
    server = guard.runtime.server
    assert server is not None
    server.sweep(server.clock() + later)


async def test_paused_download_is_not_cut_by_the_backend_read_timeout(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    b = await backend(big_download)
    guard = await start_guard(
        one_backend(b) + "timeouts: {read: 1s, shutdown: 1s}\nlimits: {send_timeout: 60s}\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port, limit=65536)
    try:
        writer.write(b"GET /big HTTP/1.1\r\nHost: shop\r\n\r\n")
        # The client stops reading: guard's buffers fill and it pauses the backend.
        await poll(lambda: upstream_paused(guard), 10.0, lambda: "backend never paused")
        sweep_at(guard, 10.0)  # 10 x timeouts.read later
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 200")
        body = await asyncio.wait_for(reader.readexactly(SIZE - STALL), 20.0)
        assert len(body) == SIZE - STALL, "the paused download was cut"
        # The client caught up and the backend stalls: now the read deadline runs again.
        await poll(lambda: not upstream_paused(guard), 5.0, lambda: "backend still paused")
        sweep_at(guard, 10.0)
        assert await rest_of(reader) == b"", "a stalled backend is cut"
    finally:
        writer.close()
    await b.wait_guard_closed()
    text = await guard.metrics()
    assert metric(text, "guard_upstream_errors_total", backend="b", kind="timeout") == 1
    await guard.wait_idle()
