"""Late bytes on a pooled backend connection never reach another client (issue 9, item 7).

A confused backend may write a second response after the real one. An idle pooled
connection that receives any byte is closed, and guard hands out the least recently used
idle connection, so that such a stray write has time to show up before the connection
carries someone else's request. (The residual limit, in SECURITY.md: a byte arriving after
the connection was handed out cannot be told from the new response at the HTTP/1.1 level.)
"""

from __future__ import annotations

import asyncio

from tests.support.faults import Backend, one_backend, read_head, start_backend
from tests.support.polling import poll
from tests.support.rawhttp import read_response
from tests.support.servers import Guard, StartGuard


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


class LateWriter:
    """Two backend connections. The first answers "one"; the second answers "two" after
    it, then writes a stray response "EVIL" 50 ms later. Every later request gets "good"."""

    def __init__(self) -> None:
        self.connections = 0
        self.second_in = asyncio.Event()
        self.first_answered = asyncio.Event()
        self.evil_sent = asyncio.Event()

    async def __call__(self, b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        await read_head(b, r)
        if first:
            await self.second_in.wait()
            w.write(answer(b"one"))
        else:
            self.second_in.set()
            await self.first_answered.wait()
            w.write(answer(b"two"))
            await w.drain()
            await asyncio.sleep(0.05)  # the backend's behaviour under test: a late write
            w.write(answer(b"EVIL"))
            self.evil_sent.set()
        await w.drain()
        while True:
            await read_head(b, r)
            w.write(answer(b"good"))
            await w.drain()


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n".encode())
    res = await read_response(reader, timeout=3.0)
    assert res.status == 200, res
    return res.body


def idle(guard: Guard) -> int:
    return len(guard.runtime.gen.pools["b"].idle)


async def test_stray_response_on_a_pooled_connection_reaches_no_client(
    start_guard: StartGuard,
) -> None:
    late = LateWriter()
    b = await start_backend(late)
    try:
        guard = await start_guard(one_backend(b) + "timeouts: {read: 2s, shutdown: 1s}\n")
        await stray_response_reaches_no_client(guard, b, late)
    finally:
        b.server.close()


async def stray_response_reaches_no_client(guard: Guard, b: Backend, late: LateWriter) -> None:
    r1, w1 = await asyncio.open_connection("127.0.0.1", guard.port)
    r2, w2 = await asyncio.open_connection("127.0.0.1", guard.port)
    try:
        w1.write(b"GET /1 HTTP/1.1\r\nHost: shop\r\n\r\n")
        await poll(lambda: len(b.heads) == 1)
        w2.write(b"GET /2 HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert (await read_response(r1, timeout=3.0)).body == b"one"
        late.first_answered.set()
        assert (await read_response(r2, timeout=3.0)).body == b"two"
        # Straight away, while the stray write is still on its way: LRU hands out the
        # first connection, whose last answer is long complete.
        seen = [await get(r1, w1, "/3")]
        await asyncio.wait_for(late.evil_sent.wait(), 3.0)
        # The connection that received bytes while idle is closed, never handed out.
        await poll(lambda: idle(guard) <= 1, 3.0, lambda: f"{idle(guard)} idle connections")
        seen += [await get(r1, w1, "/4"), await get(r2, w2, "/5")]
    finally:
        w1.close()
        w2.close()
    assert seen == [b"good"] * 3, seen
    await guard.wait_idle()
