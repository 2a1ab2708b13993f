"""Size limits on the request line, the head, the body and trailers; a head sent one byte
per segment; pipelining floods. Every refusal is guard's own answer, never forwarded."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from tests.support.polling import poll
from tests.support.rawhttp import (
    RecordingBackend,
    exchange,
    peer_closes,
    read_response,
    send_paced,
)
from tests.support.security import assert_refused, recorder_yaml, reply, send_raw
from tests.support.servers import Guard, StartGuard

LIMITS = """
client_max_size: 1k
limits:
  header_timeout: 5s
  max_request_line: 1k
  max_header_size: 4k
  max_headers: 20
  max_trailer_size: 1k
rules:
  - {name: event, path: /event/**, max_active: 10}
"""
GET = b"GET /event/a HTTP/1.1\r\nHost: shop.example\r\n"
POST = b"POST /event/a HTTP/1.1\r\nHost: shop.example\r\n"


async def limited(start_guard: StartGuard, recorder: RecordingBackend) -> Guard:
    return await start_guard(recorder_yaml(recorder, LIMITS))


async def test_request_line_too_long_is_414(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    raw = b"GET /event/" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    await assert_refused(guard, recorder, raw, {414}, must_close=False)


async def test_endless_request_target_is_cut_at_the_limit_not_at_the_deadline(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """1 MiB of request-target with no end: answered 414 at once (header_timeout is 5 s,
    the answer must come well before it), not buffered until the deadline."""
    guard = await limited(start_guard, recorder)
    res, _ = await send_raw(guard.port, b"GET /event/" + b"a" * (1 << 20), timeout=2.0)
    assert res.status == 414
    await guard.wait_idle()
    assert not recorder.received


async def test_header_line_too_long_is_431(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    raw = GET + b"X-Big: " + b"a" * 6000 + b"\r\n\r\n"
    await assert_refused(guard, recorder, raw, {431}, must_close=False)


async def test_endless_header_line_is_cut_at_the_limit_not_at_the_deadline(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """A header value that never ends must not be accumulated until header_timeout:
    memory per connection stays bounded by max_header_size."""
    guard = await limited(start_guard, recorder)
    res, _ = await send_raw(guard.port, GET + b"X-Big: " + b"a" * (1 << 20), timeout=2.0)
    assert res.status == 431
    await guard.wait_idle()
    assert not recorder.received


async def test_endless_header_name_is_cut_at_the_limit(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    res, _ = await send_raw(guard.port, GET + b"X-" + b"a" * (1 << 20), timeout=2.0)
    assert res.status == 431
    await guard.wait_idle()
    assert not recorder.received


async def test_header_section_too_large_is_431(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    raw = GET + b"".join(b"X-H%d: %b\r\n" % (i, b"v" * 500) for i in range(10)) + b"\r\n"
    await assert_refused(guard, recorder, raw, {431}, must_close=False)


async def test_too_many_headers_is_431(start_guard: StartGuard, recorder: RecordingBackend) -> None:
    guard = await limited(start_guard, recorder)
    raw = GET + b"".join(b"X-H%d: v\r\n" % i for i in range(25)) + b"\r\n"
    await assert_refused(guard, recorder, raw, {431}, must_close=False)


async def test_just_under_the_limits_is_forwarded(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """Control: 19 headers, a 900-byte target and a 1000-byte body pass."""
    guard = await limited(start_guard, recorder)
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(18))
    raw = (
        b"POST /event/"
        + b"a" * 900
        + b" HTTP/1.1\r\nHost: a\r\n"
        + headers
        + b"Content-Length: 1000\r\n\r\n"
        + b"b" * 1000
    )
    res = await exchange(guard.port, raw)
    assert res.status == 200, res.body
    assert json.loads(res.body)["body"] == 1000
    await guard.wait_idle()


async def test_body_over_client_max_size_with_content_length_is_413(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    raw = POST + b"Content-Length: 2000\r\n\r\n" + b"b" * 2000
    await assert_refused(guard, recorder, raw, {413}, must_close=True)


async def test_expect_continue_over_client_max_size_is_413_without_100(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """The client waits for 100 Continue before sending: it must get 413 instead, at once."""
    guard = await limited(start_guard, recorder)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(POST + b"Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n")
    res = await read_response(reader, 2.0)
    writer.close()
    assert res.status == 413
    await guard.wait_idle()
    assert not recorder.received


async def test_chunked_body_over_client_max_size_is_413(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    body = b"".join(b"200\r\n" + b"b" * 0x200 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n" + body
    await assert_refused(guard, recorder, raw, {413}, must_close=True)


async def test_chunked_body_growing_past_client_max_size_while_streaming(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """The head was already forwarded (bodies stream): the backend's request is aborted,
    never completed, the client gets 413 or a closed connection, and the slot is freed."""
    guard = await limited(start_guard, recorder)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(POST + b"Transfer-Encoding: chunked\r\n\r\n100\r\n" + b"b" * 0x100 + b"\r\n")
    await writer.drain()
    await poll(
        lambda: len(recorder.received) > 0, 5.0, lambda: "the head never reached the backend"
    )
    writer.write(b"".join(b"100\r\n" + b"b" * 0x100 + b"\r\n" for _ in range(8)))
    await writer.drain()
    res = await reply(reader, 3.0)
    assert res.status in (0, 413), res.status
    assert await peer_closes(reader, 3.0)
    writer.close()
    await guard.wait_idle()
    assert recorder.requests == []  # never a complete request at the backend


async def test_oversized_trailers_are_431(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    trailer = b"X-Trailer: " + b"t" * 2000 + b"\r\n"
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n" + trailer + b"\r\n"
    await assert_refused(guard, recorder, raw, {431}, must_close=True)


async def test_many_small_trailers_over_the_limit_are_431(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    trailers = b"".join(b"X-T%d: %b\r\n" % (i, b"t" * 100) for i in range(30))
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n" + trailers + b"\r\n"
    await assert_refused(guard, recorder, raw, {431}, must_close=True)


async def test_endless_trailer_line_is_cut_at_the_limit(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    raw = POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: " + b"t" * (1 << 20)
    res, _ = await send_raw(guard.port, raw, timeout=2.0)
    assert res.status == 431
    await guard.wait_idle()
    assert recorder.requests == []


async def test_head_sent_one_byte_per_segment_works(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await limited(start_guard, recorder)
    raw = GET + b"X-Slow: " + b"0123456789" * 5 + b"\r\nAccept: */*\r\n\r\n"
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    await send_paced(writer, raw, step=1)
    res = await read_response(reader, 5.0)
    writer.close()
    assert res.status == 200
    assert loop.time() - started < 5.0  # inside header_timeout
    seen = json.loads(res.body)
    assert ["X-Slow", "0123456789" * 5] in seen["headers"]
    await guard.wait_idle()


async def test_thousands_of_pipelined_requests_answered_in_order(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """All answered, in order (or the connection ends cleanly after an in-order prefix);
    guard's per-connection queue and input buffer stay bounded meanwhile."""
    guard = await limited(start_guard, recorder)
    n = 3000
    raw = b"".join(b"GET /event/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(n))
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    peaks = {"pipeline": 0, "pending": 0}
    stop = asyncio.Event()

    async def sample() -> None:
        assert guard.runtime.server is not None
        while not stop.is_set():
            for conn in guard.runtime.server.connections:
                peaks["pipeline"] = max(peaks["pipeline"], len(conn.pipeline))
                peaks["pending"] = max(peaks["pending"], len(conn.pending_input))
            await asyncio.sleep(0.001)

    sampler = asyncio.create_task(sample())
    writer.write(raw)
    answered = 0
    try:
        while answered < n:
            res = await read_response(reader, 5.0)
            if res.status == 0:
                break  # the connection ended: allowed, after an in-order prefix
            assert res.status == 200 and res.complete
            assert json.loads(res.body)["target"] == f"/event/{answered}"
            answered += 1
    finally:
        stop.set()
        await sampler
        writer.close()
    if answered < n:
        assert answered > 0
        assert await peer_closes(reader, 1.0)
    assert peaks["pipeline"] <= 512, peaks  # does not grow with the number sent
    assert peaks["pending"] <= 1 << 20, peaks
    await guard.wait_idle()


async def test_pipelined_flood_from_a_client_that_does_not_read_stays_bounded(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    """Thousands of pipelined requests for a 64 KiB answer guard makes itself, and the
    client reads nothing: guard must stop reading requests when its output backs up
    (bounded memory) and cut the client after send_timeout."""
    (tmp_path / "big.txt").write_bytes(b"z" * 65536)
    guard = await start_guard(recorder_yaml(recorder, "limits: {send_timeout: 1s}\n"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", guard.port))
    _reader, writer = await asyncio.open_connection(sock=sock)
    request = b"GET /__guard/static/big.txt HTTP/1.1\r\nHost: a\r\n\r\n"

    async def flood() -> None:
        try:
            for _ in range(40):
                writer.write(request * 50)  # 2000 requests: 128 MiB of answers
                await writer.drain()
        except ConnectionError:
            pass

    flooder = asyncio.create_task(flood())
    server = guard.runtime.server
    assert server is not None
    loop = asyncio.get_running_loop()
    await poll(lambda: bool(server.connections), 5.0, lambda: "no connection")
    deadline = loop.time() + 1.0 + 3.0
    peak = 0
    try:
        while server.connections:
            buffered = sum(
                c.transport.get_write_buffer_size()
                for c in server.connections
                if c.transport is not None
            )
            peak = max(peak, buffered)
            assert peak <= 4 << 20, f"guard buffered {peak} bytes for a client that reads nothing"
            assert loop.time() < deadline, "the non-reading client was not cut after send_timeout"
            await asyncio.sleep(0.002)
    finally:
        flooder.cancel()
        writer.transport.abort()
    await guard.wait_idle()
    assert recorder.connections == 0
