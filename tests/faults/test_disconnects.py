"""Clients that vanish while their request is in flight, at each phase, and guard's own
request task being cancelled (directly, or by a shutdown whose deadline passes).

guard's data path is its own asyncio.Protocol, not aiohttp's server, so aiohttp's
handler_cancellation switch does not exist on it; what the switch stood for (the handler
keeps running vs. is cancelled when the client goes) is covered here phase by phase, and by
cancelling guard's request task. The rule under test (issue 2, Admission 6): before the
backend's response head the WAS thread is still busy, so the slot is kept until the head
arrives or timeouts.read fires, and the upstream connection is then closed; after the head,
close and release at once. In every case the counts end at exactly 0.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.faults import (
    Backend,
    StartBackend,
    metric,
    one_backend,
    read_head,
    wait_clients_gone,
)
from tests.support.polling import poll
from tests.support.servers import StartGuard, StartWas, backends_yaml

ERRORS = "guard_upstream_errors_total"
GET = b"GET /x HTTP/1.1\r\nHost: shop\r\n\r\n"


async def _silent(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(b, r)
    await b.hang_until_closed(r)


def _disconnect(writer: asyncio.StreamWriter, how: str) -> None:
    if how == "rst":
        writer.transport.abort()
    else:
        writer.close()


# -- waiting for the backend's response head ---------------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_gone_before_head_slot_held_until_read_timeout(
    start_guard: StartGuard, backend: StartBackend, how: str
) -> None:
    b = await backend(_silent)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 600ms, shutdown: 1s}\n")
    loop = asyncio.get_running_loop()
    _, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    sent = loop.time()
    writer.write(GET)
    await poll(lambda: len(b.heads) == 1)  # the request is at the backend
    _disconnect(writer, how)
    await wait_clients_gone(guard)
    assert guard.active()["site"] == 1, "released while the WAS thread is still busy"
    await guard.wait_idle(timeout=5.0)
    assert loop.time() - sent >= 0.59  # not before timeouts.read
    await b.wait_guard_closed()  # and the upstream connection was closed, not pooled
    assert metric(await guard.metrics(), ERRORS, backend="b", kind="timeout") == 1


async def test_gone_before_head_released_when_head_arrives(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    answer = asyncio.Event()

    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        await answer.wait()
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        await w.drain()
        await b.hang_until_closed(r)

    b = await backend(script)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 30s, shutdown: 1s}\n")
    _, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(GET)
    await poll(lambda: len(b.heads) == 1)
    writer.transport.abort()
    await wait_clients_gone(guard)
    assert guard.active()["site"] == 1
    answer.set()
    # Released at once: far sooner than the 30 s read timeout, and the body is not awaited.
    await guard.wait_idle(timeout=2.0)
    await b.wait_guard_closed(timeout=2.0)


async def test_gone_with_pipelined_requests_queued(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """Requests queued behind an in-flight one are dropped with the connection, unadmitted."""
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + "timeouts: {shutdown: 1s}\n")
    _, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"GET /__was/hold HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
    await was.wait_active(1)
    assert guard.active()["site"] == 1  # one at a time per connection
    writer.transport.abort()
    await wait_clients_gone(guard)
    await was.release()
    await guard.wait_idle()
    stats = await was.stats()
    assert stats["max_seen_active"] == 1
    status = await guard.status()
    assert sum(r["counts"].get("admitted", 0) for r in status["rules"]) == 1


# -- mid-upload ----------------------------------------------------------------------------

UPLOADS = {
    "content-length": b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n",
    "chunked": b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
}


@pytest.mark.parametrize("framing", sorted(UPLOADS))
@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_gone_mid_upload_releases_and_closes_upstream(
    start_guard: StartGuard, backend: StartBackend, framing: str, how: str
) -> None:
    received = [0]

    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        try:
            while data := await r.read(65536):
                received[0] += len(data)
        except ConnectionError:
            pass
        b.closed_by_guard += 1

    b = await backend(script)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 30s, shutdown: 1s}\n")
    _, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(UPLOADS[framing])
    piece = b"y" * 50000
    writer.write(piece if framing == "content-length" else b"%x\r\n%b\r\n" % (len(piece), piece))
    await writer.drain()
    await poll(lambda: received[0] >= 50000)  # the upload is streaming through to the backend
    assert guard.active()["site"] == 1
    _disconnect(writer, how)
    await guard.wait_idle(timeout=2.0)  # the body will never come: no reason to wait
    await b.wait_guard_closed(timeout=2.0)


# -- mid-download --------------------------------------------------------------------------


async def _endless(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(b, r)
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    block = b"z" * 65536
    try:
        while True:
            w.write(block)
            await w.drain()
    except ConnectionError:
        b.closed_by_guard += 1


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_gone_mid_download_releases_at_once(
    start_guard: StartGuard, backend: StartBackend, how: str
) -> None:
    b = await backend(_endless)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 30s, shutdown: 1s}\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(GET)
    await reader.readexactly(256 * 1024)  # the download is under way
    _disconnect(writer, how)
    await guard.wait_idle(timeout=2.0)
    await b.wait_guard_closed(timeout=2.0)


# -- guard's own request task cancelled ------------------------------------------------------


def _request_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "ClientConnection._handle"
    ]


@pytest.mark.parametrize("phase", ["waiting-head", "mid-download"])
async def test_abandoned_exchange_releases_and_closes_upstream(
    start_guard: StartGuard, backend: StartBackend, phase: str
) -> None:
    b = await backend(_silent if phase == "waiting-head" else _endless)
    guard = await start_guard(one_backend(b) + "timeouts: {read: 30s, shutdown: 1s}\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(GET)
    if phase == "waiting-head":
        await poll(lambda: len(b.heads) == 1)
    else:
        await reader.readexactly(256 * 1024)
    server = guard.runtime.server
    assert server is not None
    exchanges = list(server.exchanges)
    assert len(exchanges) == 1
    assert guard.active()["site"] == 1
    exchanges[0].abort()  # what shutdown does past its deadline
    await guard.wait_idle(timeout=2.0)
    # The count was given back, so the backend's work must be over too: its connection is
    # closed now, not left open until the 30 s read timeout.
    await b.wait_guard_closed(timeout=2.0)
    writer.close()


async def test_shutdown_deadline_releases_every_in_flight_request(
    start_was: StartWas, start_guard: StartGuard, backend: StartBackend
) -> None:
    """runtime.stop() with a 300 ms shutdown while requests sit in every phase: when stop()
    returns, guard has let go of everything (counts 0, upstream connections closed)."""
    was = await start_was("was")
    silent = await backend(_silent, "silent")
    endless = await backend(_endless, "endless")
    guard = await start_guard(
        "backends:\n"
        + f"  - {{name: was, url: '{was.url}', max_active: 5}}\n"
        + silent.yaml()
        + endless.yaml()
        + "timeouts: {read: 30s, shutdown: 300ms}\n"
    )
    # One request per backend: least active first, ties in turn (was, silent, endless).
    conns = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
        conns.append((reader, writer))
    conns[0][1].write(b"GET /__was/hold HTTP/1.1\r\nHost: a\r\n\r\n")
    await poll(lambda: guard.active()["site"] == 1)
    conns[1][1].write(GET)
    await poll(lambda: guard.active()["site"] == 2)
    conns[2][1].write(GET)
    await poll(lambda: guard.active()["site"] == 3)
    active = guard.active()
    assert all(active[f"backend:{n}"] == 1 for n in ("was", "silent", "endless")), active
    await poll(lambda: len(silent.heads) == 1 and len(endless.heads) == 1)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await guard.runtime.stop()
    assert loop.time() - started < 2.0
    await guard.wait_idle(timeout=1.0)
    await silent.wait_guard_closed(timeout=1.0)
    await endless.wait_guard_closed(timeout=1.0)
    for _, writer in conns:
        writer.close()
    await was.release()
