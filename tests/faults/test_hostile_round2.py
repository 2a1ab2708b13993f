"""Hostile probes, round two: accounting and state across reloads, aborts and buffering.

Each test here failed on the merge of issues 9 and 10 before its fix."""

from __future__ import annotations

import asyncio

from tests.faults.test_reload_inflight import reload
from tests.support.faults import Backend, StartBackend, read_head
from tests.support.polling import poll
from tests.support.rawhttp import RecordingBackend, read_response
from tests.support.servers import Guard, StartGuard, read_access_log


def two_backend_yaml(active: RecordingBackend) -> str:
    return (
        f"backends:\n  - {{name: b, url: '{active.url}', max_active: 5}}\n"
        "timeouts: {shutdown: 500ms}\n"
        "limits: {body_timeout: 5s}\n"
        "rules:\n  - {name: upload, path: /up/**, max_active: 5}\n"
    )


async def rewrite(guard: Guard, body: str) -> None:
    header = guard.config_path.read_text().split("backends:")[0]
    guard.config_path.write_text(header + body)
    status, doc = await reload(guard)
    assert status == 200 and doc["result"] == "success", doc


def reading_body(guard: Guard) -> bool:
    server = guard.runtime.server
    assert server is not None
    return any(c.parsing is not None and c.parsing.body_bytes > 0 for c in server.connections)


async def test_upload_finished_after_a_reload_goes_to_the_reloaded_backends(
    start_guard: StartGuard,
) -> None:
    """A buffered request is admitted when its body is whole: a reload that removed a
    backend meanwhile must be obeyed (an operator takes a WAS out; a slow upload must not
    land on it minutes later)."""
    old, new = await RecordingBackend().start(), await RecordingBackend().start()
    try:
        guard = await start_guard(two_backend_yaml(old))
        reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
        writer.write(b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
        await writer.drain()
        await poll(lambda: reading_body(guard), 5.0, lambda: "guard never read the body")
        await rewrite(guard, two_backend_yaml(new))
        writer.write(b"67890")
        res = await read_response(reader)
        writer.close()
        assert res.status == 200, res
        assert old.connections == 0 and not old.received, bytes(old.received)
        assert new.requests and new.requests[0]["body"] == 10
        await guard.wait_idle()
    finally:
        old.close()
        new.close()


async def open_upload(guard: Guard) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A buffered upload whose head and first half arrived: guard is reading its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
    await writer.drain()
    await poll(lambda: reading_body(guard), 5.0, lambda: "guard never read the body")
    return reader, writer


async def test_an_upload_under_way_at_shutdown_may_finish_within_the_deadline(
    start_guard: StartGuard,
) -> None:
    """timeouts.shutdown lets in-flight requests finish; a request whose body is still being
    buffered is in flight too (before buffering it was admitted at its head)."""
    backend = await RecordingBackend().start()
    try:
        yaml = two_backend_yaml(backend).replace("shutdown: 500ms", "shutdown: 5s")
        guard = await start_guard(yaml)
        reader, writer = await open_upload(guard)
        stopping = asyncio.ensure_future(guard.runtime.stop())
        server = guard.runtime.server
        assert server is not None
        await poll(lambda: server.closing, 5.0, lambda: "shutdown never began")
        writer.write(b"67890")
        res = await read_response(reader)
        writer.close()
        await asyncio.wait_for(stopping, 5.0)
        assert res.status == 200, res
        assert backend.requests and backend.requests[0]["body"] == 10
        assert [e["status"] for e in read_access_log(guard)] == [200]
    finally:
        backend.close()


async def test_an_upload_still_under_way_at_the_shutdown_deadline_is_guards_503(
    start_guard: StartGuard,
) -> None:
    """Past the deadline the client gets guard's 503 and the log says so, not a 499."""
    backend = await RecordingBackend().start()
    try:
        guard = await start_guard(two_backend_yaml(backend).replace("500ms", "200ms"))
        reader, writer = await open_upload(guard)
        await asyncio.wait_for(guard.runtime.stop(), 5.0)
        res = await read_response(reader)
        writer.close()
        assert res.status == 503, res
        assert not backend.received
        assert [e["status"] for e in read_access_log(guard)] == [503]
        assert guard.all_zero()
    finally:
        backend.close()


def orphaned(guard: Guard) -> dict[str, tuple[int, int]]:
    """backend name -> (active, orphaned), as /status and the gauges show them."""
    snap = guard.runtime.admission.snapshot()
    return {b.name: (b.active, b.orphaned) for b in snap.backends}


async def test_a_renamed_backend_shows_its_orphaned_requests(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    """A rename carries a backend's counts over (same URL): its orphaned requests, which
    are part of its active count, must follow, or /status shows active work nobody owns."""

    async def late(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_head(b, r)
        await b.hang.wait()  # set by the test (and at teardown): answer now
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await b.until_guard_closes(r)

    b = await backend(late)
    yaml = f"backends:\n  - {{name: NAME, url: '{b.url}', max_active: 5}}\n"
    timeouts = "timeouts: {shutdown: 500ms, read: 200ms, abandon: 30s}\n"
    guard = await start_guard(yaml.replace("NAME", "was-1") + timeouts)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await read_response(reader)).status == 504  # the backend keeps working on it
    writer.close()
    await poll(lambda: orphaned(guard)["was-1"] == (1, 1), 5.0, lambda: str(orphaned(guard)))
    await rewrite(guard, yaml.replace("NAME", "was-a"))
    assert orphaned(guard) == {"was-a": (1, 1)}
    b.hang.set()
    await b.wait_guard_closed()
    await poll(lambda: orphaned(guard) == {"was-a": (0, 0)}, 5.0, lambda: str(orphaned(guard)))
