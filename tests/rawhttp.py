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
