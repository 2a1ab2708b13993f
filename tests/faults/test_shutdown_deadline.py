"""Requests still in flight when timeouts.shutdown expires (issue 9, item 12).

guard ends them: a 503 when no response head was sent yet, otherwise the connection is
closed. Either way the access log says it was guard's decision (status 503), not a client
that went away (499).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.faults import Backend, StartBackend, one_backend, read_head
from tests.support.rawhttp import read_response
from tests.support.servers import StartGuard, read_access_log

PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10


@pytest.mark.parametrize("stage", ["before-head", "mid-body"])
async def test_request_in_flight_at_the_shutdown_deadline_is_guards_503(
    start_guard: StartGuard, backend: StartBackend, stage: str
) -> None:
    got_head = asyncio.Event()

    async def slow(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        if stage == "mid-body":
            w.write(PARTIAL)
            await w.drain()
        got_head.set()
        await b.hang_until_closed(r)

    b = await backend(slow)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 30s, shutdown: 300ms}\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    try:
        writer.write(b"GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n")
        await asyncio.wait_for(got_head.wait(), 5.0)
        stopping = asyncio.ensure_future(guard.runtime.stop())
        res = await read_response(reader, timeout=5.0)
        await asyncio.wait_for(stopping, 5.0)
    finally:
        writer.close()
    if stage == "before-head":
        assert res.status == 503 and res.complete, res
    else:
        assert res.status == 200 and not res.complete, res
    await b.wait_guard_closed()
    entries = [e for e in read_access_log(guard) if e["path"] == "/slow"]
    assert [e["status"] for e in entries] == [503], entries
    assert guard.all_zero()
