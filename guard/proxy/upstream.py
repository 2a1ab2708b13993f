"""Backend connections: asyncio protocols + httptools, pooled per backend with keep-alive.

One `UpstreamConnection` carries one exchange at a time. The exchange's listener (the
forwarding code) is called straight from the parser callbacks: the response head, each body
chunk, the end, or one failure — exactly one of `upstream_complete` / `upstream_failed`.
No future or task sits between the backend's bytes and the client's socket.

Errors are classified for `guard_upstream_errors_total{kind}`:
connect (refused/unreachable/connect timeout), timeout (read idle timeout),
reset (connection closed before the response was complete), protocol (bad framing).
"aborted" is guard's own doing (the client went away) and is not a backend error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, cast

import httptools

from guard.core.clock import Clock
from guard.proxy.headers import FramingError, Header, response_parts

if TYPE_CHECKING:
    # The listener is the forwarding side of one exchange (upstream_head, upstream_body,
    # upstream_complete, upstream_failed). Typed as the concrete class, not a Protocol, so
    # the compiled calls are direct C calls rather than attribute lookups.
    from guard.proxy.forward import Exchange as Listener

MAX_RESPONSE_HEAD: Final = 64 * 1024
INF: Final = float("inf")


def protocol_factory(make: Callable[[], object]) -> Callable[[], asyncio.BaseProtocol]:
    """guard's connection classes have asyncio.Protocol's methods without inheriting from it:
    compiled by mypyc, a class with a Python base gets a per-instance __dict__ (~1 KB per
    idle connection), and the event loop only ever calls the methods."""
    return cast("Callable[[], asyncio.BaseProtocol]", make)


class UpstreamError(Exception):
    def __init__(self, kind: str, detail: str, sent: bool = True) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        # False when no byte of the request may have reached the backend (safe to retry).
        self.sent = sent


class RequestBodySource(Protocol):
    """The client side of a request body, paused when the backend cannot take more."""

    def pause_body(self) -> None: ...
    def resume_body(self) -> None: ...


class ResponseHead:
    __slots__ = ("block", "chunked", "content_length", "keep_alive", "sold_out", "status")

    def __init__(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.block = b""  # end-to-end header lines, forwarded as received
        self.keep_alive = keep_alive
        self.content_length: int | None = None
        self.chunked = False
        self.sold_out = False  # "X-Guard-Room: sold-out" (stripped from block)


class UpstreamConnection:  # an asyncio.Protocol by shape (see protocol_factory)
    """A keep-alive connection to one backend."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.clock = pool.clock
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.reading_paused = False
        self.parser = httptools.HttpResponseParser(self)
        self.listener: Listener | None = None
        self.request_sink: RequestBodySource | None = None
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.headers: list[Header] = []
        self.head_size = 0
        self.head: ResponseHead | None = None
        self.complete = False
        self.recycle = False
        self.head_request = False
        self.deadline = INF  # the read timeout, checked by the server's sweeper
        self.read_timeout = 0.0
        self.got_bytes = False
        # Only a connection whose request was sent in full may carry another: a backend
        # that answered early still expects the rest of the body (request smuggling).
        # "In full" is counted here, not trusted: the body bytes written must equal the
        # declared length (-1: chunked, whose last chunk is written before body_done).
        self.body_sent = False
        self.body_length = 0
        self.body_written = 0
        # The client side ended before the answer: the backend keeps working (and its slot
        # stays taken) until it answers, is closed at the deadline, and is never reused.
        self.orphaned = False

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.listener is None:
            # Bytes on an idle connection: the backend is confused, and whatever it sent
            # must never be read as the answer to another client's request.
            self.pool.forget(self)
            self.release_transport()
            return
        if not self.orphaned:  # an orphan's deadline is fixed: a trickle must not extend it
            self.deadline = self.clock() + self.read_timeout
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", str(exc)))
            return
        if self.recycle:  # the exchange ended inside the parser: recycle now it returned
            self._recycle()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        head = self.head
        if self.listener is None or self.complete:
            return
        if head is not None and exc is None and _close_delimited(head):
            self._finish()  # the end of a close-delimited body is the connection's end
        else:
            sent = self.got_bytes or not self.reused
            self._fail(UpstreamError("reset", "connection closed by backend", sent=sent))

    def pause_writing(self) -> None:
        if self.request_sink is not None:
            self.request_sink.pause_body()
            # The backend stopped taking the body: from now on it is the one stalling.
            self.deadline = self.clock() + self.read_timeout

    def resume_writing(self) -> None:
        if self.request_sink is not None:
            self.request_sink.resume_body()
            self.deadline = INF  # taking the body again: the client's deadlines govern

    def body_streaming(self) -> None:
        """The request body is being streamed: the backend is not late while it reads."""
        self.deadline = INF

    def body_done(self) -> None:
        """The request was sent in full: the read timeout starts now."""
        self.body_sent = True
        self.request_sink = None
        if not self.complete:
            self.deadline = self.clock() + self.read_timeout

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete or self.listener is None:
            # Bytes after the end of the response: never let them reach the next client.
            raise httptools.HttpParserError("unsolicited response after the end of the exchange")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_RESPONSE_HEAD:
            raise httptools.HttpParserError("response head too large")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise httptools.HttpParserError("unexpected 101 Switching Protocols")
            self.headers = []  # interim response: wait for the final one
            return
        head = ResponseHead(status, self.parser.should_keep_alive())
        try:
            head.block, head.content_length, head.chunked, head.sold_out = response_parts(
                self.headers
            )
        except FramingError:
            raise httptools.HttpParserError("transfer coding other than chunked") from None
        self.head = head
        if self.listener is not None:
            self.listener.upstream_head(head)
        if self.head_request:
            # llhttp cannot be told the response answers HEAD: no body follows, and the
            # parser gets replaced before the next exchange.
            self.parser = httptools.HttpResponseParser(self)
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.head is None:
            raise httptools.HttpParserError("response body before a response head")
        if self.listener is not None:
            self.listener.upstream_body(body)

    def on_message_complete(self) -> None:
        if self.head is not None and not self.complete:  # not the end of a 1xx
            self._finish()

    # -- exchange -----------------------------------------------------------------------
    def start(
        self,
        head: bytes,
        head_request: bool,
        read_timeout: float,
        listener: Listener,
        body_length: int,
    ) -> None:
        """Send a request head; `body_length` is what its framing declares (-1: chunked)."""
        assert self.transport is not None
        self.listener = listener
        self.head_request = head_request
        self.read_timeout = read_timeout
        self.body_length = body_length
        self.deadline = self.clock() + read_timeout
        self.transport.write(head)

    def check_deadline(self, now: float) -> None:
        listener = self.listener
        if self.complete or listener is None or now < self.deadline:
            return
        if self.reading_paused:
            return  # guard holds the backend back for a slow client: it is not late
        if self.head is None and not self.orphaned:
            listener.upstream_late()  # answers 504; the backend may keep its slot a while
        else:
            self._fail(UpstreamError("timeout", "backend read timeout"))

    def orphan(self, deadline: float) -> None:
        """The client side is over; wait for the backend's answer (to throw it away) until
        `deadline`, then close. Never reused: the request may not have been sent in full."""
        self.orphaned = True
        self.request_sink = None
        self.deadline = deadline
        if self.reading_paused:
            self.resume_reading()

    def close(self) -> None:
        """Close now, telling nobody (the exchange has ended its side already)."""
        self.listener = None
        self.request_sink = None
        self.complete = True
        self.release_transport()

    def _finish(self) -> None:
        self.complete = True
        self.recycle = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_complete()

    def _fail(self, error: UpstreamError) -> None:
        self.complete = True
        self.recycle = False
        listener, self.listener = self.listener, None
        self.request_sink = None
        self.release_transport()
        if listener is not None:
            listener.upstream_failed(error)

    def abort(self) -> None:
        """The client went away or broke its request. Before the response head the backend
        may still be working on it: the exchange keeps its slot until it answers. After the
        head, the answer has nowhere to go: close the connection and tell the listener."""
        listener = self.listener
        if listener is not None and not self.complete and self.head is None:
            if not self.orphaned:
                listener.client_left()
        elif not self.complete:
            self._fail(UpstreamError("aborted", "exchange aborted by guard"))
        else:
            self.release_transport()

    def _recycle(self) -> None:
        """Back to the pool if the exchange ended cleanly, else close."""
        reusable = (
            not self.closed
            and not self.orphaned
            and self.head is not None
            and self.head.keep_alive
            and self.body_sent
            and self.request_sink is None
            and (self.body_length < 0 or self.body_written == self.body_length)
        )
        self._reset_exchange()
        self.reused = True
        if reusable and self.transport is not None:
            if self.reading_paused:  # paused for a slow client
                self.resume_reading()
            self.pool.put_idle(self)
        else:
            self.release_transport()

    def release_transport(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
            if self.deadline != INF and not self.orphaned:  # it stood still during the pause
                self.deadline = self.clock() + self.read_timeout

    def write(self, data: bytes) -> None:
        """Request body bytes (framed), counted against the declared length."""
        if self.transport is not None and not self.closed:
            self.body_written += len(data)
            self.transport.write(data)


def _close_delimited(head: ResponseHead) -> bool:
    return head.content_length is None and not head.chunked


class Pool:
    """Idle keep-alive connections to one backend. Active connections are not capped here:
    admission already bounds them by the backend's max_active."""

    def __init__(
        self, host: str, port: int, max_idle: int, connect_timeout: float, clock: Clock
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.clock = clock  # read deadlines, checked by the server's sweeper
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.idle: deque[UpstreamConnection] = deque()
        self.closed = False  # replaced by a reload: connections finishing late are closed

    def take_idle(self) -> UpstreamConnection | None:
        while self.idle:
            # The least recently used: a confused backend's stray late write has had the
            # longest time to arrive (and close the connection) before it carries a request.
            conn = self.idle.popleft()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await self.loop.create_connection(
                    protocol_factory(lambda: UpstreamConnection(self)), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamError("connect", "connect timeout", sent=False) from None
        except OSError as exc:
            raise UpstreamError("connect", exc.strerror or str(exc), sent=False) from None
        return cast(UpstreamConnection, proto)

    def put_idle(self, conn: UpstreamConnection) -> None:
        if self.closed or len(self.idle) >= self.max_idle:
            conn.release_transport()
            return
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().release_transport()
