"""Hostile probes, round two: framing and resources on the request-buffering path.

Each test here failed on the merge of issues 9 and 10 before its fix, or pins a probe that
held (named so in its docstring)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.security.test_request_buffering import (
    buffering_yaml,
    fds_into,
    guard_has_read,
    reset,
    temp_dir,
)
from tests.support.polling import poll
from tests.support.rawhttp import RecordingBackend, peer_closes
from tests.support.security import reply
from tests.support.servers import StartGuard, read_access_log

SPILL = 4096  # bytes sent before the client misbehaves: past body_buffer_size, on disk


async def test_spilled_bodies_are_closed_on_every_client_failure(
    start_guard: StartGuard, recorder: RecordingBackend, tmp_path: Path
) -> None:
    """Held: a reset, a stalled body (408), an oversized chunked body (413) and an upgrade
    request whose body is cut each leave no temporary file open and no slot taken."""
    folder = temp_dir(tmp_path)
    yaml = buffering_yaml(
        recorder.url, folder, max_size="16k", body_buffer_size="1k", body_timeout="300ms"
    )
    guard = await start_guard(yaml)
    heads = {
        "reset": b"POST /up/a HTTP/1.1\r\nHost: a\r\nContent-Length: 9000\r\n\r\n",
        "stall": b"POST /up/b HTTP/1.1\r\nHost: a\r\nContent-Length: 9000\r\n\r\n",
        "upgrade": b"POST /up/c HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
        b"Upgrade: h2c\r\nContent-Length: 9000\r\n\r\n",
        "chunked": b"POST /up/d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    }
    for case, head in heads.items():
        reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
        chunked = case == "chunked"
        body = b"%x\r\n%b\r\n" % (SPILL, b"x" * SPILL) if chunked else b"x" * SPILL
        writer.write(head + body)
        await guard_has_read(guard, 1, SPILL)
        assert len(fds_into(folder)) == 1, (case, fds_into(folder))
        if case in ("reset", "upgrade"):
            reset(writer)
        elif case == "stall":
            assert (await reply(reader)).status == 408
        else:
            with contextlib.suppress(ConnectionError):
                for _ in range(4):
                    writer.write(body)
                    await writer.drain()
            assert (await reply(reader)).status == 413
            assert await peer_closes(reader)
        writer.close()
        await poll(lambda: fds_into(folder) == [], 5.0, lambda c=case: f"{c}: file left open")
        await guard.wait_idle()
    assert not recorder.received, bytes(recorder.received[:200])
    await poll(lambda: len(read_access_log(guard)) == 4, 5.0, lambda: "a request not logged")
