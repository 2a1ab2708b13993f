"""Backend connections: asyncio.Protocol + httptools, pooled per backend with keep-alive.

One `UpstreamConnection` carries one exchange at a time. The forwarding coroutine writes
the request head, then streams the body; the response head arrives as a future, and the
body is piped straight to a sink (the client connection) from the parser callbacks, with
back-pressure both ways: no per-chunk await, no buffering beyond the transports' own.

Errors are classified for `guard_upstream_errors_total{kind}`:
connect (refused/unreachable/connect timeout), timeout (read idle timeout),
reset (connection closed before the response was complete), protocol (bad framing).
"aborted" is guard's own doing (the client went away) and is not a backend error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol, cast

import httptools

from guard.proxy.headers import Header, connection_tokens

MAX_RESPONSE_HEAD = 64 * 1024


class UpstreamError(Exception):
    def __init__(self, kind: str, detail: str, sent: bool = True) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        # False when no byte of the request may have reached the backend (safe to retry).
        self.sent = sent


class BodySink(Protocol):
    """Where the response body goes (the client connection)."""

    def upstream_body(self, chunk: bytes) -> None: ...
    def upstream_complete(self) -> None: ...


class ResponseHead:
    __slots__ = (
        "chunked",
        "connection",
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(self, status: int, headers: list[Header], keep_alive: bool) -> None:
        self.status = status
        self.reason = b""
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length: int | None = None
        self.chunked = False
        self.connection: frozenset[bytes] = frozenset()  # names listed in Connection


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one backend."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.parser = httptools.HttpResponseParser(self)
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.head_future: asyncio.Future[ResponseHead] | None = None
        self.done: asyncio.Future[None] | None = None
        self.headers: list[Header] = []
        self.head_size = 0
        self.head: ResponseHead | None = None
        self.sink: BodySink | None = None
        self.pending: list[bytes] = []  # body that arrived before a sink was attached
        self.complete = False
        self.head_request = False
        self.last_read = 0.0
        self.read_timeout = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.got_bytes = False
        self.request_sink: RequestBodySource | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        self.got_bytes = True
        if self.head_future is None:  # bytes on an idle connection: the backend is confused
            self._fail(UpstreamError("protocol", "unsolicited response bytes"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", str(exc)))
            return
        if self.head_request and self.complete:
            # llhttp cannot be told the response answers HEAD; start a clean parser instead.
            self.parser = httptools.HttpResponseParser(self)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.timer is not None:
            self.timer.cancel()
        head = self.head
        if not self.complete and head is not None and exc is None and _close_delimited(head):
            self.complete = True  # the end of a close-delimited body is the connection's end
            self._finish()
        elif not self.complete and self.head_future is not None:
            sent = self.got_bytes or not self.reused
            self._fail(UpstreamError("reset", "connection closed by backend", sent=sent))

    def pause_writing(self) -> None:
        if self.request_sink is not None:
            self.request_sink.pause_body()

    def resume_writing(self) -> None:
        if self.request_sink is not None:
            self.request_sink.resume_body()

    # -- httptools callbacks ------------------------------------------------------------
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
        head = ResponseHead(status, self.headers, self.parser.should_keep_alive())
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                head.content_length = int(value)
            elif lname == b"transfer-encoding":
                head.chunked = True
            elif lname == b"connection":
                head.connection = head.connection | connection_tokens([(name, value)])
        self.head = head
        if self.head_request:
            self.complete = True
        if self.head_future is not None and not self.head_future.done():
            self.head_future.set_result(head)
        if self.head_request:
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.upstream_body(body)
        else:
            self.pending.append(body)

    def on_message_complete(self) -> None:
        if self.head is None:  # end of a 1xx interim message
            return
        if not self.complete:
            self.complete = True
            self._finish()

    # -- exchange -----------------------------------------------------------------------
    def start(self, head: bytes, head_request: bool, read_timeout: float) -> None:
        assert self.transport is not None
        self.head_future = self.loop.create_future()
        self.done = self.loop.create_future()
        self.head_request = head_request
        self.read_timeout = read_timeout
        self.last_read = self.loop.time()
        self.timer = self.loop.call_at(self.last_read + read_timeout, self._check_idle)
        self.transport.write(head)

    def _check_idle(self) -> None:
        self.timer = None
        if self.complete or self.closed:
            return
        deadline = self.last_read + self.read_timeout
        if self.loop.time() >= deadline:
            self._fail(UpstreamError("timeout", "backend read timeout"))
            self.abort()
        else:
            self.timer = self.loop.call_at(deadline, self._check_idle)

    def attach(self, sink: BodySink) -> None:
        """Start piping the response body to `sink` (called once the head was sent on)."""
        self.sink = sink
        for chunk in self.pending:
            sink.upstream_body(chunk)
        self.pending.clear()
        if self.complete:
            sink.upstream_complete()

    def _finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sink is not None:
            self.sink.upstream_complete()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.complete = True  # nothing more is expected on this exchange
        for fut in (self.head_future, self.done):
            if fut is not None and not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: the owner may already have moved on
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        """Guard gives up on this exchange (the client went away or broke its request):
        close the backend connection and wake whoever waits on it."""
        self._fail(UpstreamError("aborted", "exchange aborted by guard"))

    def release_transport(self) -> None:
        """Close an idle connection (nothing is waiting on it)."""
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def release(self) -> None:
        """The exchange is over: back to the pool if the connection is clean, else close."""
        unused = self.head_future is None and not self.closed
        reusable = unused or (
            self.complete
            and not self.closed
            and self.head is not None
            and self.head.keep_alive
            and self.done is not None
            and self.done.done()
            and self.done.exception() is None
            and self.request_sink is None
        )
        if self.timer is not None:
            self.timer.cancel()
        self._reset_exchange()
        self.reused = True
        if reusable:
            self.pool.put_idle(self)
        elif self.transport is not None:
            self.transport.abort()


def _close_delimited(head: ResponseHead) -> bool:
    return head.content_length is None and not head.chunked


class RequestBodySource(Protocol):
    """The client side of a request body, paused when the backend cannot take more."""

    def pause_body(self) -> None: ...
    def resume_body(self) -> None: ...


class Pool:
    """Idle keep-alive connections to one backend. Active connections are not capped here:
    admission already bounds them by the backend's max_active."""

    def __init__(self, host: str, port: int, max_idle: int, connect_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.idle: deque[UpstreamConnection] = deque()

    async def acquire(self) -> UpstreamConnection:
        while self.idle:
            conn = self.idle.pop()  # most recently used: least likely to be timed out
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return await self._connect()

    async def _connect(self) -> UpstreamConnection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await self.loop.create_connection(
                    lambda: UpstreamConnection(self), self.host, self.port
                )
        except TimeoutError:
            raise UpstreamError("connect", "connect timeout", sent=False) from None
        except OSError as exc:
            raise UpstreamError("connect", exc.strerror or str(exc), sent=False) from None
        return proto

    def put_idle(self, conn: UpstreamConnection) -> None:
        if len(self.idle) >= self.max_idle:
            conn.release_transport()
            return
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().release_transport()
