"""Client connections: asyncio.Protocol + httptools (llhttp, strict mode).

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
from typing import TYPE_CHECKING, cast

import httptools

from guard.proxy.headers import FramingError, Header, is_trusted, scan_request, simple_response
from guard.proxy.request import DISCARD_LIMIT, Request

if TYPE_CHECKING:
    from guard.proxy.upstream import UpstreamConnection
    from guard.runtime import ProxyServer

log = logging.getLogger("guard.server")

SLICE = 8192  # the parser is fed at most this much at a time while reading a body
HEAD_SLICE = 1024  # ... and this much while reading heads, bounding what it buffers unseen
PIPELINE_MAX = 16
INF = float("inf")
# Reasons to pause reading from the client, as bits (reading resumes when none is left).
PAUSE_BODY, PAUSE_PIPELINE, PAUSE_OUTPUT = 1, 2, 4

_HEAD, _BODY, _WAIT, _IDLE = "head", "body", "wait", "idle"
_LINGER_RESET = struct.pack("ii", 1, 0)


class ClientConnection(asyncio.Protocol):
    # Slots: an idle keep-alive connection should cost bytes, not a dict (10k of them).
    __slots__ = (
        "active",
        "body_seen",
        "body_started",
        "closing",
        "deadline",
        "dispatching",
        "feeding",
        "gone",
        "head_fed",
        "head_size",
        "headers",
        "limits",
        "loop",
        "out_chunked",
        "out_done",
        "overhead_fed",
        "parser",
        "parsing",
        "pause_bits",
        "paused_at",
        "peer",
        "peer_trusted",
        "pending_input",
        "phase",
        "pipeline",
        "send_deadline",
        "server",
        "stop_parsing",
        "streaming",
        "transport",
        "url",
    )

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = server.loop
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
        self.phase = _HEAD
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
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.peer_trusted = is_trusted(self.peer, self.server.config.trusted_proxies)
        self.deadline = self.loop.time() + self.limits.header_timeout
        self.server.connections.add(self)
        if len(self.server.connections) > self.limits.max_connections or self.server.closing:
            self.abort()

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
                self.send_deadline = self.loop.time() + self.limits.send_timeout
            transport.close()

    # -- input ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closing or self.stop_parsing:
            return
        if self.pending_input:
            self.pending_input += data
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        # The parser is not re-entrant: a request answered inside one of its callbacks
        # must not feed it again (request_done checks this flag).
        self.feeding = True
        try:
            self._feed_slices(data)
        finally:
            self.feeding = False
        # Decide on complete requests once everything received so far is parsed: a framing
        # error later in the same segment refuses a request before it is admitted.
        if self.active is None and self.pipeline:
            self._start_next()

    def _feed_slices(self, data: bytes) -> None:
        view = memoryview(data)
        pos, size = 0, len(data)
        while pos < size and not self.closing and not self.stop_parsing:
            if len(self.pipeline) >= PIPELINE_MAX:
                self.pending_input = bytes(view[pos:])
                self._pause(PAUSE_PIPELINE, True)
                return
            piece = view[pos : pos + (SLICE if self.phase == _BODY else HEAD_SLICE)]
            pos += len(piece)
            if self.phase == _IDLE or self.phase == _WAIT:
                # First byte of a new request: its head must arrive within header_timeout.
                self.deadline = self.loop.time() + self.limits.header_timeout
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self._stop_after_upgrade()
            except httptools.HttpParserError as exc:
                # httptools wraps what a callback raised; our own refusals carry a status.
                cause = exc.__cause__ or exc.__context__
                self._refuse(cause.status if isinstance(cause, _Refuse) else _status_of(exc))
            if self.phase == _BODY and self.parsing is not None and self.parsing.chunked:
                self._bound_chunk_overhead(len(piece))
            elif self.phase == _HEAD and not self.closing:
                # A line still being received is buffered inside the parser: bound it too.
                self.head_fed += len(piece)
                if self.head_fed > self.limits.max_header_size + self.limits.max_request_line:
                    self._refuse(431)

    def _bound_chunk_overhead(self, fed: int) -> None:
        """Bytes of a chunked body that carry no data (chunk lines, trailers) are buffered
        by the parser until their line ends: refuse once they exceed the trailer limit."""
        req = self.parsing
        assert req is not None
        if req.body_bytes != self.body_seen:
            self.body_seen = req.body_bytes
            self.overhead_fed = 0
            return
        self.overhead_fed += fed
        if self.overhead_fed > self.limits.max_trailer_size + SLICE:
            self._refuse(431)

    def _stop_after_upgrade(self) -> None:
        """guard never switches protocols: the upgrade request is answered as a plain
        request, then the connection closes (what follows it was never parsed)."""
        self.stop_parsing = True
        last = self.pipeline[-1] if self.pipeline else self.active
        if last is not None:
            last.keep_alive = False

    def _refuse(self, status: int) -> None:
        """Unrecoverable input: answer now if nothing else is being answered, then close."""
        self.stop_parsing = True
        self.pipeline.clear()
        active, parsing = self.active, self.parsing
        if active is None:
            if parsing is not None and parsing.dispatched:
                self.close_after_write()  # it was answered already: one answer, one outcome
                return
            self.server.count_bad_request(self, status)
            self._write_final(status)
        elif active.discarding:
            self.close_after_write()  # its answer went out; the rest of its body is not read
        else:
            active.keep_alive = False
            if not active.body_complete:
                active.fail(status)

    def _write_final(self, status: int) -> None:
        if self.transport is not None and not self.closing:
            body = b'{"error": "bad_request"}' if status != 408 else b'{"error": "timeout"}'
            self.transport.write(
                simple_response(status, [(b"Content-Type", b"application/json")], body, True)
            )
        self.close_after_write()

    # -- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.phase = _HEAD
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.head_fed = 0
        self.parsing = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_line:
            raise _Refuse(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.phase == _BODY:  # trailers: read, bounded, never forwarded
            if self.head_size > self.limits.max_trailer_size:
                raise _Refuse(431)
            return
        if len(self.headers) >= self.limits.max_headers:
            raise _Refuse(431)
        if self.head_size + len(self.url) > self.limits.max_header_size:
            raise _Refuse(431)
        if b"_" in name:
            raise _Refuse(400)  # ambiguous with "-" after CGI-style normalisation
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Refuse(505)
        req = Request(
            parser.get_method(),
            self.url,
            version.encode(),
            self.headers,
            parser.should_keep_alive(),
            self._body_pressure,
        )
        meta = req.meta
        try:
            scan_request(req.headers, req.version, meta)
        except FramingError as err:
            raise _Refuse(err.status) from None
        if req.method in (b"CONNECT", b"TRACE"):
            raise _Refuse(405)
        req.content_length = meta.content_length
        req.chunked = meta.chunked
        req.expect_continue = meta.expect_continue
        self.parsing = req
        self.url, self.headers = b"", []  # now owned by the request
        self.head_size = 0
        now = self.loop.time()
        if req.has_body:
            self.phase = _BODY
            self.body_started = now
            self.body_seen = 0
            self.overhead_fed = 0
            self.deadline = now + self.limits.body_timeout
            if req.content_length is not None and req.content_length > self.server.max_body:
                req.error = 413
        else:
            self.phase = _WAIT
            self.deadline = INF
        self.pipeline.append(req)  # dispatched once the parser returns (see _feed_slices)

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None:
            return
        self.deadline = self.loop.time() + self.limits.body_timeout
        if req.body_bytes + len(body) > self.server.max_body:
            if req is self.active:
                req.fail(413)
            else:
                req.error = 413
            raise _Refuse(413)
        req.feed(body)
        if req.discarding and req.body_bytes > DISCARD_LIMIT:
            raise _Refuse(413)  # too much to read away: close instead

    def on_message_complete(self) -> None:
        req = self.parsing
        self.phase = _WAIT
        self.deadline = INF
        if req is not None:
            req.finish()
        self.parsing = None

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
        elif self.phase == _WAIT:
            self.phase = _IDLE
            self.deadline = self.loop.time() + self.limits.keepalive_timeout
        if self.pending_input and not self.feeding and len(self.pipeline) < PIPELINE_MAX:
            data, self.pending_input = self.pending_input, b""
            self._pause(PAUSE_PIPELINE, False)
            self._feed(data)

    # -- flow control -----------------------------------------------------------------
    def _pause(self, bit: int, on: bool) -> None:
        before = self.pause_bits
        self.pause_bits = before | bit if on else before & ~bit
        if self.transport is None or self.closing or bool(before) == bool(self.pause_bits):
            return
        now = self.loop.time()
        if self.pause_bits:
            self.paused_at = now
            self.transport.pause_reading()
        else:
            # Guard stopped reading, not the client: its read deadlines move by the pause.
            shift = now - self.paused_at
            self.deadline += shift
            self.body_started += shift
            self.transport.resume_reading()

    @property
    def output_paused(self) -> bool:
        return bool(self.pause_bits & PAUSE_OUTPUT)

    def _body_pressure(self, on: bool) -> None:
        self._pause(PAUSE_BODY, on)

    def pause_writing(self) -> None:
        """The client reads slower than we answer: stop reading its requests and the
        backend's response until it catches up, and start the send deadline."""
        self.send_deadline = self.loop.time() + self.limits.send_timeout
        self._pause(PAUSE_OUTPUT, True)
        if self.streaming is not None:
            self.streaming.pause_reading()

    def resume_writing(self) -> None:
        self.send_deadline = INF
        self._pause(PAUSE_OUTPUT, False)
        if self.streaming is not None:
            self.streaming.resume_reading()
        self._start_next()

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

    # -- deadlines --------------------------------------------------------------------
    def check_deadlines(self, now: float) -> None:
        if now >= self.send_deadline:
            self.abort()  # a client that does not read releases its slot with the abort
        elif self.pause_bits:
            return  # guard is not reading: the client cannot be late
        elif now >= self.deadline or self._body_too_slow(now):
            self.deadline = INF
            self._read_deadline_expired()

    def _read_deadline_expired(self) -> None:
        active, parsing = self.active, self.parsing
        self.stop_parsing = True
        if self.phase == _IDLE:
            self.close_after_write()
        elif self.phase == _BODY and parsing is not None and parsing is active:
            parsing.keep_alive = False
            parsing.fail(408)
            if parsing.discarding:  # no exchange is left to end the connection
                self.close_after_write()
        elif active is None:
            self._write_final(408)
        else:
            # A queued request is late while an earlier one is answered: let that answer
            # finish, then close (the late request was never dispatched).
            self.pipeline.clear()
            active.keep_alive = False

    def _body_too_slow(self, now: float) -> bool:
        """After a grace of body_timeout, the body must average limits.min_body_rate."""
        if self.phase != _BODY or self.parsing is None:
            return False
        late = now - self.body_started - self.limits.body_timeout
        return late > 0 and self.parsing.body_bytes < self.limits.min_body_rate * late


class _Refuse(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _status_of(exc: httptools.HttpParserError) -> int:
    text = str(exc)
    if "HTTP version" in text or "Invalid major version" in text:
        return 505
    if "Transfer-Encoding" in text and "invalid" in text.lower():
        return 501 if "Request has invalid" in text else 400
    return 400
