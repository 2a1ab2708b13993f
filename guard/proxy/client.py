"""Client connections: an asyncio protocol + httptools (llhttp, strict mode).

Rules this module keeps (RFC 9112 and what nginx/HAProxy promise):
- One request is handled at a time per connection; pipelined requests wait in a short
  queue and reading pauses while it is full, so memory per connection stays bounded.
- The parser is fed in slices, so an endless header line cannot grow past the head limit.
- Framing that two parsers could read differently is refused with 400 and the connection
  closed: CL with TE (llhttp), TE other than exactly "chunked" (501), TE on HTTP/1.0,
  duplicate Host, "_" in a header name. Only HTTP/1.0 and 1.1 are spoken.
- Deadlines (checked by one sweeper, not a timer per request): an idle keep-alive
  connection, a request head, gaps in a request body, a client that does not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import TYPE_CHECKING, Final, cast

import httptools

from guard.proxy.connection import PHASE_HEAD, PHASE_IDLE, PHASE_WAIT
from guard.proxy.flow import INF, PAUSE_OUTPUT, PAUSE_PIPELINE
from guard.proxy.headers import Header, is_trusted
from guard.proxy.parsing import PIPELINE_MAX, RequestParsing
from guard.proxy.request import Request

if TYPE_CHECKING:
    from guard.proxy.server import ProxyServer
    from guard.proxy.upstream import UpstreamConnection

log: Final = logging.getLogger("guard.server")

_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class ClientConnection(RequestParsing):
    __slots__ = ()  # every field is declared in ConnectionState: no per-connection dict

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.limits = server.limits
        self.clock = server.clock
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.peer_trusted = False
        self.pipeline: list[Request] = []  # a deque preallocates ~600 B per connection
        self.active: Request | None = None
        self.feeding = False
        self.dispatching = False
        self.parsing: Request | None = None
        self.url = b""
        self.headers: list[Header] = []
        self.head_size = 0
        self.head_fed = 0
        self.phase = PHASE_HEAD
        self.deadline = INF
        self.send_deadline = INF
        self.body_started = INF
        self.body_seen = 0
        self.overhead_fed = 0
        self.pause_bits = 0
        self.paused_at = 0.0
        self.pending_input = b""
        self.gone = False
        self.closing = False
        self.stop_parsing = False
        # Response streaming (BodySink for the upstream connection).
        self.streaming: UpstreamConnection | None = None
        self.out_chunked = False
        self.out_done = False

    # -- connection lifecycle ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # From here on a reload updates this connection (server.connections): take the
        # limits now, in case one ran between __init__ and this call.
        self.limits = self.server.limits
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.peer_trusted = is_trusted(self.peer, self.server.gen.trusted)
        self.deadline = self.clock() + self.limits.header_timeout
        self.server.connections.add(self)
        if len(self.server.connections) > self.limits.max_connections or self.server.closing:
            self.abort()

    def eof_received(self) -> bool:
        return False  # the client half-closed: close (asyncio.Protocol's default)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.server.connections.discard(self)
        self.pipeline.clear()
        req = self.active
        if req is not None and not req.body_complete:
            req.fail(499)  # the backend would wait for a body that will never come
        if self.streaming is not None:
            self.streaming.abort()  # backend output has nowhere to go: stop it now

    def abort(self, reset: bool = False) -> None:
        """Close at once; with `reset`, send a TCP RST so that even a close-delimited
        response cannot be mistaken for a complete one."""
        self.closing = True
        if self.transport is None:
            return
        if reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.transport.abort()

    def close_after_write(self) -> None:
        self.closing = True
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size() and self.send_deadline == INF:
                # close() waits for the output to drain: a client that never reads must
                # not keep the connection (and its place under max_connections) forever.
                self.send_deadline = self.clock() + self.limits.send_timeout
            transport.close()

    # -- request handling -------------------------------------------------------------
    def _start_next(self) -> None:
        """Dispatch queued requests in order. A loop, not recursion: a request answered
        synchronously calls request_done, which lands back here while we are in the loop."""
        if self.dispatching:
            return
        self.dispatching = True
        try:
            while self.active is None and self.pipeline and not self.closing:
                if self.pause_bits & PAUSE_OUTPUT:
                    return  # answer the next one when the client has read the previous answers
                req = self.pipeline.pop(0)
                self.active = req
                req.dispatched = True
                try:
                    self.server.dispatch(self, req)
                except Exception:
                    log.exception("request handler failed")  # the exchange released its slot
                    self.abort()
        finally:
            self.dispatching = False

    def request_done(self, req: Request) -> None:
        """The exchange for `req` is over (answered, failed or aborted)."""
        if self.active is not req:
            return
        self.streaming = None
        if not req.body_complete and req.discardable and not self.gone and not self.closing:
            # Answered before its body arrived: read the body away, keep the connection.
            req.discard_rest(lambda: self.request_done(req))
            return
        self.active = None
        if not req.keep_alive or not req.body_complete or req.error or self.server.closing:
            self.close_after_write()
            return
        if self.pipeline:
            self._start_next()
        elif self.phase == PHASE_WAIT:
            self.phase = PHASE_IDLE
            self.deadline = self.clock() + self.limits.keepalive_timeout
        if self.pending_input and not self.feeding and len(self.pipeline) < PIPELINE_MAX:
            data, self.pending_input = self.pending_input, b""
            self._pause(PAUSE_PIPELINE, False)
            self._feed(data)

    # -- output (also the BodySink of a streaming upstream response) ------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.gone:
            self.transport.write(data)

    def upstream_body(self, chunk: bytes) -> None:
        if self.transport is None or self.gone:
            return
        if self.out_chunked:
            self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.transport.write(chunk)

    def upstream_complete(self) -> None:
        if self.out_chunked and not self.out_done and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self.out_done = True
