"""Shared pieces of the fault suite: scripted backends that count what they see, metric
parsing, and small socket tricks (RST instead of FIN)."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.support.polling import poll
from tests.support.rawhttp import RawResponse, read_response, scripted_backend
from tests.support.servers import Guard

Script = Callable[["Backend", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
StartBackend = Callable[..., Awaitable["Backend"]]


@dataclass
class Backend:
    """A scripted backend that counts its connections and notices when guard closes them.

    `hang` is what a script awaits to "never answer"; it is set at teardown so no handler
    outlives its test."""

    server: asyncio.Server
    port: int
    name: str = "b"
    connections: int = 0
    closed_by_guard: int = 0
    heads: list[bytes] = field(default_factory=list)
    hang: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def yaml(self, max_active: int = 5, extra: str = "") -> str:
        return f"  - {{name: {self.name}, url: '{self.url}', max_active: {max_active}{extra}}}\n"

    async def wait_guard_closed(self, n: int = 1, timeout: float = 5.0) -> None:
        await poll(
            lambda: self.closed_by_guard >= n,
            timeout,
            lambda: f"guard closed {self.closed_by_guard} of {n} upstream connections",
        )

    async def until_guard_closes(self, reader: asyncio.StreamReader) -> None:
        """Read (and drop) whatever guard sends until it closes the connection."""
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.closed_by_guard += 1

    async def hang_until_closed(self, reader: asyncio.StreamReader) -> None:
        """Never answer: wait for guard to close the connection (or for teardown)."""
        closed = asyncio.ensure_future(self.until_guard_closes(reader))
        hang = asyncio.ensure_future(self.hang.wait())
        await asyncio.wait({closed, hang}, return_when=asyncio.FIRST_COMPLETED)
        for task in (closed, hang):
            task.cancel()


async def start_backend(script: Script, name: str = "b") -> Backend:
    box: list[Backend] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        backend = box[0]
        backend.connections += 1
        await script(backend, r, w)

    server, port = await scripted_backend(handler)
    backend = Backend(server, port, name)
    box.append(backend)
    return backend


async def read_head(backend: Backend, reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    backend.heads.append(head)
    return head


def rst_close(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0.0 when the series is absent)."""
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def series(text: str) -> set[str]:
    """The identities (name + labels, without the value) of every sample line."""
    out = set()
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out.add(m.group(1) + (m.group(2) or ""))
    return out


async def wait_clients_gone(guard: Guard, timeout: float = 5.0) -> None:
    """Guard has noticed every client connection go away."""
    server = guard.runtime.server
    assert server is not None
    await poll(
        lambda: not server.connections,
        timeout,
        lambda: f"{len(server.connections)} client connections still open in guard",
    )


def one_backend(backend: Backend, max_active: int = 5) -> str:
    return "backends:\n" + backend.yaml(max_active)


async def read_head_then(
    reader: asyncio.StreamReader, between: Callable[[], None], timeout: float = 5.0
) -> RawResponse:
    """Read one response, calling `between()` once its head has arrived (to let a scripted
    backend fail only after guard has committed to the response)."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
    between()
    rest = asyncio.StreamReader()
    rest.feed_data(head)

    async def pump() -> None:
        try:
            while data := await reader.read(65536):
                rest.feed_data(data)
        except ConnectionError as exc:
            rest.set_exception(exc)
            return
        rest.feed_eof()

    task = asyncio.ensure_future(pump())
    try:
        return await read_response(rest, timeout)
    finally:
        task.cancel()
