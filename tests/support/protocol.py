"""Protocol-level tests: a ClientConnection driven in-process on a recording transport.

The client side has no socket: the test feeds bytes with `conn.data_received` and reads what
guard wrote from the transport; time is a FakeClock, and deadlines fire when the test calls
the sweeper (`Harness.sweep_after`), not after real seconds. Everything behind the
connection is real: the config file, the admission core, the backend pools and the
simulated WAS on loopback. (uvicorn's tests/protocols/test_http.py is the model.)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from guard.core.clock import FakeClock
from guard.proxy.client import ClientConnection
from guard.proxy.server import ProxyServer
from guard.runtime import Runtime
from tests.support.servers import Guard

HIGH_WATER = 64 * 1024  # unread output past which the transport calls pause_writing
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


class RecordingTransport:
    """The parts of a uvloop transport that guard calls, recorded. While `client_reads` is
    False the output piles up unread, and past HIGH_WATER the protocol is told to pause
    writing, as a real transport does for a client that does not read."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.peer = peer
        self.protocol: ClientConnection | None = None
        self.received = bytearray()  # what the client has read
        self.unread = bytearray()  # written by guard, not yet read by the client
        self.client_reads = True
        self.writing_paused = False
        self.reading = True  # False while guard paused reading the client
        self.closing = False
        self.aborted = False
        self.gone = False  # closed or aborted: connection_lost is on its way
        self.lost = asyncio.Event()  # connection_lost was delivered

    # -- what guard calls -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if self.client_reads:
            self.received += data
            return
        self.unread += data
        if len(self.unread) > HIGH_WATER and not self.writing_paused:
            self.writing_paused = True
            assert self.protocol is not None
            self.protocol.pause_writing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return len(self.unread)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        """Like a real transport: the connection ends once the output is read."""
        self.closing = True
        if not self.unread:
            self._lose()

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.unread.clear()
        self._lose()

    # -- what the test does -----------------------------------------------------------
    def statuses(self) -> list[int]:
        """Status codes of the responses the client has read, in order."""
        return [int(m.group(1)) for m in _STATUS.finditer(bytes(self.received))]

    def _lose(self) -> None:
        if self.gone or self.protocol is None:
            return
        self.gone = True
        # A real transport reports the loss from the event loop, not inside close().
        asyncio.get_running_loop().call_soon(self._deliver_lost, self.protocol)

    def _deliver_lost(self, protocol: ClientConnection) -> None:
        protocol.connection_lost(None)
        self.lost.set()


@dataclass
class Harness:
    """A guard without a listener: its runtime, proxy server and fake clock."""

    runtime: Runtime
    server: ProxyServer
    clock: FakeClock
    guard: Guard  # for its views of the core's counts (active, all_zero)
    transports: list[RecordingTransport] = field(default_factory=list)

    def connect(self) -> tuple[ClientConnection, RecordingTransport]:
        conn = ClientConnection(self.server)
        transport = RecordingTransport()
        transport.protocol = conn
        conn.connection_made(cast(asyncio.Transport, transport))
        self.transports.append(transport)
        return conn, transport

    def sweep_after(self, seconds: float) -> None:
        """Let `seconds` pass and run the deadline sweeper once."""
        self.clock.advance(seconds)
        self.server.sweep(self.clock.now)

    @property
    def active(self) -> Callable[[], dict[str, int]]:
        return self.guard.active

    def all_zero(self) -> bool:
        return self.guard.all_zero()

    def close(self) -> None:
        for transport in self.transports:
            if transport.protocol is not None and not transport.gone:
                transport.abort()
        for pool in self.runtime.gen.pools.values():
            pool.close()
        self.runtime.gen.access_log.close()


def build_harness(config_path: Path) -> Harness:
    """A guard from `config_path` on a FakeClock; call inside the test's event loop."""
    clock = FakeClock(now=1000.0)
    runtime = Runtime(config_path, clocks=clock.clocks())
    runtime.server = server = ProxyServer(runtime.gen)
    view = Guard(runtime, cast(web.AppRunner, None), config_path)
    return Harness(runtime, server, clock, view)
