"""Raw HTTP/1.1 over sockets, for what a real client library would normalise away:
odd request-targets, broken framing, half-sent requests, and scripted backends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


async def read_response(
    reader: asyncio.StreamReader, timeout: float = 5.0, head_request: bool = False
) -> RawResponse:
    """Read exactly one response (so pipelined responses can be read one by one);
    `complete` is False when the connection ended before the message did."""
    res = RawResponse()
    try:
        async with asyncio.timeout(timeout):
            await _read_message(reader, res, head_request)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    return res


async def _read_message(reader: asyncio.StreamReader, res: RawResponse, head: bool) -> None:
    head_bytes = await reader.readuntil(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    res.status = int(lines[0].split()[1])
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            res.headers.append((name, value.strip()))
    length = res.header("Content-Length")
    if head or res.status in (204, 304) or 100 <= res.status < 200:
        res.complete = True
    elif (res.header("Transfer-Encoding") or "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            res.body += (await reader.readexactly(size + 2))[:-2]
        res.complete = True
    elif length is not None:
        res.body = await reader.readexactly(int(length))
        res.complete = True
    else:  # close-delimited
        res.body = await reader.read()
        res.complete = True


async def exchange(port: int, raw: bytes, timeout: float = 5.0) -> RawResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await read_response(reader, timeout)
    finally:
        writer.close()


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True once the peer closed the connection (EOF or reset) within the timeout."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        return True
    return True


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def scripted_backend(handler: Handler) -> tuple[asyncio.Server, int]:
    """A backend that does exactly what the test script says, byte for byte."""

    async def guarded(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def peer_closes(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    """True when the peer ends the connection (EOF or reset) within the timeout, False when
    it is still open then. Whatever else arrives meanwhile is read and dropped."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


async def send_paced(
    writer: asyncio.StreamWriter, data: bytes, step: int = 1, pause: float = 0.0
) -> None:
    """Send `data` `step` bytes per write (one TCP segment each with TCP_NODELAY); between
    writes yield to the loop (and wait `pause` seconds, to play a slow client)."""
    import socket

    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(data), step):
        writer.write(data[i : i + step])
        await writer.drain()
        await asyncio.sleep(pause)


class RecordingBackend:
    """A backend that records every connection and every byte it receives, parses requests
    with llhttp and answers each with 200 and a JSON echo of its target, headers and body
    size. `connections == 0` and `received == b""` prove nothing was ever forwarded."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self.requests: list[dict[str, object]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RecordingBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import json

        import httptools

        self.connections += 1
        done: list[dict[str, object]] = []

        class Callbacks:
            def __init__(self) -> None:
                self.cur: dict[str, object] = {}

            def on_message_begin(self) -> None:
                self.cur = {"target": b"", "headers": [], "body": 0}

            def on_url(self, url: bytes) -> None:
                self.cur["target"] = self.cur["target"] + url  # type: ignore[operator]

            def on_header(self, name: bytes, value: bytes) -> None:
                self.cur["headers"].append([name.decode("latin-1"), value.decode("latin-1")])  # type: ignore[attr-defined]

            def on_body(self, body: bytes) -> None:
                self.cur["body"] = self.cur["body"] + len(body)  # type: ignore[operator]

            def on_message_complete(self) -> None:
                self.cur["target"] = self.cur["target"].decode("latin-1")  # type: ignore[attr-defined]
                done.append(self.cur)

        parser = httptools.HttpRequestParser(Callbacks())
        try:
            while data := await reader.read(65536):
                self.received += data
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    pass
                except httptools.HttpParserError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    break
                for req in done:
                    self.requests.append(req)
                    body = json.dumps(req).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
                    )
                done.clear()
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
