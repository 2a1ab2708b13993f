"""Assertions shared by the security tests."""

from __future__ import annotations

import asyncio

from tests.support.rawhttp import (
    RawResponse,
    RecordingBackend,
    exchange,
    peer_closes,
    read_response,
)
from tests.support.servers import Guard

# A request leaked by guard would hold Runtime.stop() for timeouts.shutdown (30 s default).
FAST_STOP = "timeouts: {shutdown: 500ms}\n"


def recorder_yaml(backend: RecordingBackend, extra: str = "") -> str:
    backends = f"backends:\n  - {{name: b, url: '{backend.url}', max_active: 50}}\n"
    return backends + FAST_STOP + extra


async def send_raw(
    port: int, raw: bytes, timeout: float = 3.0, check_close: bool = True
) -> tuple[RawResponse, bool]:
    """Send raw bytes on a fresh connection; return the first response and whether guard
    then closed the connection (within `timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)  # no drain: a guard that stops reading must not block the test
        res = await reply(reader, timeout)
        closed = await peer_closes(reader, timeout) if check_close else False
        return res, closed
    finally:
        writer.close()


async def assert_refused(
    guard: Guard,
    backend: RecordingBackend,
    raw: bytes,
    statuses: set[int],
    *,
    must_close: bool = True,
) -> RawResponse:
    """The request is answered by guard with one of `statuses`, the connection is closed
    when framing is at stake, the backend never got a byte, no slot stays taken, and guard
    still serves the next client."""
    res, closed = await send_raw(guard.port, raw, check_close=must_close)
    assert res.status in statuses, (res.status, res.body[:300], raw[:300])
    if must_close:
        assert closed, f"connection left open after {res.status} to {raw!r}"
    await guard.wait_idle()
    assert backend.connections == 0 and not backend.received, bytes(backend.received)
    ok = await exchange(guard.port, b"GET /still-alive HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ok.status == 200, "guard stopped serving after a bad request"
    return res


async def reply(reader: asyncio.StreamReader, timeout: float = 3.0) -> RawResponse:
    """One response, or status 0 when none came within the timeout (or the peer closed)."""
    try:
        return await read_response(reader, timeout)
    except TimeoutError:
        return RawResponse()
