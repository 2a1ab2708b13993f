"""Upgrade requests that declare a body (issue 9, item 1).

guard does not tunnel upgrades: an upgrade request is forwarded as a plain HTTP/1.1 request
(Upgrade, HTTP2-Settings and the `upgrade` token of Connection stripped) and its body is
forwarded and accounted like any other. Whatever the input, a backend connection goes back
to the pool only if every body byte the request declared was sent on it: a servlet
container that answers first and then reads the declared body would otherwise take the
next client's request as that body and run what follows it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.rawhttp import RecordingBackend, read_response
from tests.support.servers import StartGuard


class TomcatLike:
    """A raw backend that answers as soon as a request head arrives, then swallows the body
    its head declared (Content-Length) before it reads the next request on the connection:
    what a servlet container does with input the servlet left unread."""

    def __init__(self) -> None:
        self.request_lines: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> TomcatLike:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.request_lines.append(head.split(b"\r\n", 1)[0])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                await reader.readexactly(_content_length(head))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# The innocent request carries the smuggled one in a header value. guard forwards it as
# "GET / HTTP/1.1\r\nHost: a\r\nX: GET /admin/secret ..."; a backend that takes the first
# len(_PREFIX) bytes as the previous request's body reads /admin/secret as a request line.
_PREFIX = b"GET / HTTP/1.1\r\nHost: a\r\nX: "
_INNOCENT = b"GET / HTTP/1.1\r\nHost: a\r\nX: GET /admin/secret HTTP/1.1\r\n\r\n"
UPGRADES = {
    "websocket": b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
    "h2c": b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n",
}


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "streamed"])
@pytest.mark.parametrize("upgrade", sorted(UPGRADES))
async def test_upgrade_with_unsent_body_never_smuggles_the_next_request(
    start_guard: StartGuard, upgrade: str, buffered: bool
) -> None:
    tomcat = await TomcatLike().start()
    try:
        guard = await start_guard(
            f"backends:\n  - {{name: b, url: 'http://127.0.0.1:{tomcat.port}', max_active: 5}}\n"
            "rules:\n  - {name: admin, path: /admin/**, block: true}\n"
            f"  - {{name: x, path: /x, request_buffering: {str(buffered).lower()}}}\n"
            "timeouts: {read: 1s, shutdown: 500ms}\n"
            "limits: {body_timeout: 500ms}\n"
        )
        # The attacker: an upgrade request declaring a body it never sends.
        r1, w1 = await asyncio.open_connection("127.0.0.1", guard.port)
        w1.write(
            b"POST /x HTTP/1.1\r\nHost: a\r\n"
            + UPGRADES[upgrade]
            + b"Content-Length: %d\r\n\r\n" % len(_PREFIX)
        )
        first = await read_response(r1, timeout=3.0)
        # Buffered: the body never came, so nothing reached the backend (408). Streamed: the
        # backend answered the head; its connection must not be reused.
        assert first.status == (408 if buffered else 200)
        # Another client, on whatever backend connection guard hands out next.
        r2, w2 = await asyncio.open_connection("127.0.0.1", guard.port)
        w2.write(_INNOCENT)
        second = await read_response(r2, timeout=3.0)
        w1.close()
        w2.close()
        assert second.status == 200
        assert b"GET /admin/secret HTTP/1.1" not in tomcat.request_lines, tomcat.request_lines
        await guard.wait_idle()
    finally:
        tomcat.close()


CURL_H2C_HEAD = (
    b"POST /form HTTP/1.1\r\nHost: shop\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
)
BODIES = {
    "content-length": b"Content-Length: 8\r\n\r\nname=joe",
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n4\r\nname\r\n4\r\n=joe\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("framing", sorted(BODIES))
async def test_curl_http2_post_is_forwarded_as_plain_http11_post(
    start_guard: StartGuard, recorder: RecordingBackend, framing: str
) -> None:
    """`curl --http2 -d name=joe http://shop/form`: the backend gets a plain POST with its
    body and no upgrade; the client gets the backend's answer."""
    guard = await start_guard(
        f"backends:\n  - {{name: b, url: '{recorder.url}', max_active: 5}}\n"
        "timeouts: {read: 1s, shutdown: 500ms}\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    try:
        writer.write(CURL_H2C_HEAD + BODIES[framing])
        res = await read_response(reader, timeout=3.0)
    finally:
        writer.close()
    assert res.status == 200, (res.status, res.body[:200], bytes(recorder.received))
    echo = json.loads(res.body)
    assert echo["target"] == "/form" and echo["body"] == 8, bytes(recorder.received)
    names = {name.lower(): value.lower() for name, value in echo["headers"]}
    assert "upgrade" not in names and "http2-settings" not in names
    assert "upgrade" not in names.get("connection", "")
    await guard.wait_idle()
