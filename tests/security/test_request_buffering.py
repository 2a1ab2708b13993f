"""Request buffering (on by default, as nginx's `proxy_request_buffering on`): a request's
body is received in full before admission, so a trickling or aborted upload never holds an
active-transaction slot nor reaches a WAS. In memory up to limits.body_buffer_size, beyond
it in an unlinked temporary file in limits.body_temp_dir; 413 over client_max_size, 408 for
a stalled body. A rule with `request_buffering: false` streams, and then the body must keep
limits.min_body_rate over each limits.body_rate_window."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
from pathlib import Path

from tests.support.polling import poll
from tests.support.rawhttp import (
    RecordingBackend,
    peer_closes,
    read_request_head,
    read_response,
    scripted_backend,
)
from tests.support.security import reply
from tests.support.servers import Guard, StartGuard, StartWas, read_access_log

LIMITS = {
    "body_timeout": "2s",
    "body_buffer_size": "16k",
}


def buffering_yaml(
    url: str, temp_dir: Path, max_size: str = "2m", read: str = "30s", **limits: str
) -> str:
    merged = {**LIMITS, **limits, "body_temp_dir": f"'{temp_dir}'"}
    limit_lines = "".join(f"  {k}: {v}\n" for k, v in merged.items())
    return (
        f"backends:\n  - {{name: b, url: '{url}', max_active: 50}}\n"
        f"timeouts: {{shutdown: 500ms, read: {read}}}\n"
        f"client_max_size: {max_size}\n"
        f"limits:\n{limit_lines}"
        "rules:\n"
        "  - {name: upload, path: /up/**, max_active: 50}\n"
        "  - {name: stream, path: /stream/**, max_active: 50, request_buffering: false}\n"
    )


def temp_dir(guard_tmp: Path) -> Path:
    folder = guard_tmp / "bodies"
    folder.mkdir(exist_ok=True)
    return folder


def bodies_received(guard: Guard) -> list[int]:
    """Body bytes guard has read so far, for each connection reading a body."""
    server = guard.runtime.server
    assert server is not None
    return [c.parsing.body_bytes for c in server.connections if c.parsing is not None]


async def guard_has_read(guard: Guard, clients: int, at_least: int) -> None:
    def done() -> bool:
        got = bodies_received(guard)
        return len(got) == clients and all(n >= at_least for n in got)

    await poll(done, 5.0, lambda: f"guard read {bodies_received(guard)}, want {at_least} each")


async def warm_pool(port: int) -> None:
    """One request first, so that a pooled backend connection is idle: a request admitted at
    its head would then be written to the backend at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /warm HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert (await read_response(reader)).status == 200
    writer.close()


def outcomes_of(guard: Guard, method: str) -> list[str]:
    """The outcome of each `method` request, from the access log."""
    return [line["outcome"] for line in read_access_log(guard) if line["method"] == method]


def fds_into(folder: Path) -> list[str]:
    """The files this process (guard runs in it) holds open inside `folder`."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder) + "/"):
                out.append(target)
    return out


def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def test_trickling_uploads_hold_no_slot_and_reach_no_was(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    was = await start_was()
    guard = await start_guard(buffering_yaml(was.url, temp_dir(tmp_path)))
    clients = [await asyncio.open_connection("127.0.0.1", guard.port) for _ in range(20)]
    for i, (_, writer) in enumerate(clients):
        writer.write(b"POST /up/%d HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" % i)
    for step in range(1, 6):  # every client trickles 10 bytes per step
        for _, writer in clients:
            writer.write(b"x" * 10)
        await guard_has_read(guard, 20, step * 10)
        status = await guard.status()
        assert status["site"]["active"] == 0, status["site"]
        assert all(r["active"] == 0 for r in status["rules"]), status["rules"]
        assert (await was.stats())["active"] == 0
    for _, writer in clients:
        writer.write(b"y" * 950)
    for reader, writer in clients:
        res = await read_response(reader)
        assert res.status == 200, res.body[:200]
        assert b'"received": 1000' in res.body
        writer.close()
    assert (await was.stats())["served"] == 20
    await guard.wait_idle()


async def test_the_was_sees_no_request_until_its_body_is_complete(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    guard = await start_guard(buffering_yaml(recorder.url, temp_dir(tmp_path)))
    await warm_pool(guard.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /up/a HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    writer.write(b"x" * 50_000)
    await guard_has_read(guard, 1, 50_000)
    assert bytes(recorder.received).find(b"POST") < 0, "the head went to the WAS early"
    assert guard.all_zero(), f"admitted before its body arrived: {guard.active()}"
    writer.write(b"x" * 50_000)
    res = await read_response(reader)
    writer.close()
    assert res.status == 200
    assert recorder.requests[-1]["body"] == 100_000
    await guard.wait_idle()


async def test_an_aborted_upload_never_reaches_the_was(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    guard = await start_guard(buffering_yaml(recorder.url, temp_dir(tmp_path)))
    await warm_pool(guard.port)
    _, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /up/a HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nxx")
    await guard_has_read(guard, 1, 2)
    assert guard.all_zero(), f"admitted before its body arrived: {guard.active()}"
    reset(writer)
    server = guard.runtime.server
    assert server is not None
    await poll(lambda: not server.connections, 5.0, lambda: "guard kept the reset connection")
    await warm_pool(guard.port)  # a request after the abort is served normally
    assert bytes(recorder.received).find(b"POST") < 0, bytes(recorder.received)[:300]
    assert [r["target"] for r in recorder.requests] == ["/warm", "/warm"]
    await guard.wait_idle()


async def test_a_large_body_spills_to_an_unlinked_temp_file_and_arrives_intact(
    start_guard: StartGuard, tmp_path: Path
) -> None:
    async def hash_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = (await read_request_head(reader)).lower()
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            digest = hashlib.sha256(await reader.readexactly(length)).hexdigest().encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + digest)

    backend, port = await scripted_backend(hash_body)
    folder = temp_dir(tmp_path)
    guard = await start_guard(buffering_yaml(f"http://127.0.0.1:{port}", folder))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
        small = os.urandom(8000)  # under body_buffer_size: memory only
        writer.write(b"POST /up/s HTTP/1.1\r\nHost: a\r\nContent-Length: 8000\r\n\r\n")
        writer.write(small[:4000])
        await guard_has_read(guard, 1, 4000)
        assert fds_into(folder) == [], "a small body went to disk"
        writer.write(small[4000:])
        res = await read_response(reader)
        assert res.body == hashlib.sha256(small).hexdigest().encode()

        body = os.urandom(1024 * 1024)
        writer.write(b"POST /up/l HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body[: len(body) // 2])
        await guard_has_read(guard, 1, len(body) // 2)
        spilled = fds_into(folder)
        assert len(spilled) == 1, spilled
        assert os.listdir(folder) == [], "the temporary file has a name: a crash would leave it"
        writer.write(body[len(body) // 2 :])
        res = await read_response(reader, 10.0)
        writer.close()
        assert res.status == 200
        assert res.body == hashlib.sha256(body).hexdigest().encode(), "the body was altered"
        await poll(lambda: fds_into(folder) == [], 5.0, lambda: "the temp file stays open")
        await guard.wait_idle()
    finally:
        backend.close()


async def test_a_body_over_client_max_size_gets_413_and_never_reaches_the_was(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    guard = await start_guard(buffering_yaml(recorder.url, temp_dir(tmp_path), max_size="64k"))
    await warm_pool(guard.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /up/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    await guard_has_read(guard, 1, 0)  # the head is parsed and dispatched: a rule decides
    chunk = b"%x\r\n%b\r\n" % (16384, b"z" * 16384)
    with contextlib.suppress(ConnectionError):
        for _ in range(5):  # 80 KiB, over the 64 KiB limit
            writer.write(chunk)
            await writer.drain()
    res = await reply(reader)
    assert res.status == 413, res.status
    assert await peer_closes(reader)
    writer.close()
    await guard.wait_idle()
    assert bytes(recorder.received).find(b"POST") < 0, "the oversized upload reached the WAS"
    await poll(lambda: bool(outcomes_of(guard, "POST")), 5.0, lambda: "the POST was not logged")
    assert outcomes_of(guard, "POST") == ["bad_request"]


async def test_a_stalled_body_gets_408_and_never_reaches_the_was(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    yaml = buffering_yaml(recorder.url, temp_dir(tmp_path), body_timeout="300ms")
    guard = await start_guard(yaml)
    await warm_pool(guard.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /up/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    res = await reply(reader, 3.0)
    assert res.status == 408, res.status
    assert await peer_closes(reader)
    writer.close()
    await guard.wait_idle()
    assert bytes(recorder.received).find(b"POST") < 0, "the stalled upload reached the WAS"
    await poll(lambda: bool(outcomes_of(guard, "POST")), 5.0, lambda: "the POST was not logged")
    assert outcomes_of(guard, "POST") == ["bad_request"]


async def test_expect_100_continue_is_answered_before_the_body_is_buffered(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    guard = await start_guard(buffering_yaml(recorder.url, temp_dir(tmp_path)))
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(
        b"POST /up/a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await read_response(reader, 3.0)
    assert interim.status == 100  # the client waits for it before it sends the body
    writer.write(b"hello")
    res = await read_response(reader)
    writer.close()
    assert res.status == 200
    assert recorder.requests[-1]["body"] == 5
    assert bytes(recorder.received).lower().find(b"expect") < 0


async def test_a_streaming_rule_forwards_the_body_as_it_comes(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    guard = await start_guard(buffering_yaml(recorder.url, temp_dir(tmp_path)))
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /stream/a HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    writer.write(b"x" * 50_000)
    await poll(lambda: len(recorder.received) > 50_000, 5.0, lambda: "the streaming rule buffered")
    assert guard.active()["rule:stream"] == 1
    writer.write(b"x" * 50_000)
    res = await read_response(reader)
    writer.close()
    assert res.status == 200
    assert recorder.requests[-1]["body"] == 100_000
    await guard.wait_idle()


async def test_a_trickle_after_a_burst_is_cut_by_the_sliding_window_rate(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    """A lifetime average would keep this upload for minutes: 200 KB at once lifts it
    over 1000 B/s for 200 s. Over a 1 s window the 20 B/s trickle is cut at once."""
    yaml = buffering_yaml(
        recorder.url,
        temp_dir(tmp_path),
        body_timeout="500ms",
        min_body_rate="1000",
        body_rate_window="1s",
        read="1s",  # once cut, the slot is held until the backend answers or this passes:
    )  # the backend started this streamed request at its head (see test_slot_hold.py)
    guard = await start_guard(yaml)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /stream/a HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
    writer.write(b"x" * 200_000)
    await poll(lambda: guard.active()["rule:stream"] == 1, 5.0, lambda: "never admitted")
    burst_sent = loop.time()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"x")  # 20 B/s: each gap well under body_timeout
                await writer.drain()
                await asyncio.sleep(0.05)

    task = asyncio.create_task(trickle())
    try:
        closed = await peer_closes(reader, 6.0)
    finally:
        task.cancel()
        writer.close()
    assert closed, "the trickler kept its slot"
    assert loop.time() - burst_sent < 5.0
    await guard.wait_idle()
