"""One parsed client request and its body on its way to the backend.

Buffered (the default, see buffering.py): once its rule is known the body is received in
full, then admitted, then sent from memory or its temporary file, paced by the backend's
back-pressure, with Content-Length: the bytes received (a chunked upload included).
Streamed (a rule with `request_buffering: false`): chunks go straight to the upstream
transport once one is attached, and before that at most BODY_BUFFER bytes wait here (the
client is paused past it); framing towards the backend is Content-Length as received, or
chunked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from guard.proxy.buffering import BodyBuffer
from guard.proxy.headers import Header, RequestMeta

if TYPE_CHECKING:
    from guard.proxy.upstream import UpstreamConnection

BODY_BUFFER: Final = 64 * 1024
# A request answered before its body arrived keeps its connection if guard can read the
# rest of the body and throw it away: up to this many bytes (beyond, the connection closes).
DISCARD_LIMIT: Final = 1024 * 1024
_LAST_CHUNK: Final = b"0\r\n\r\n"


class Request:
    __slots__ = (
        "body",
        "body_bytes",
        "body_complete",
        "buffered",
        "chunked",
        "chunks",
        "content_length",
        "discarding",
        "dispatched",
        "error",
        "expect_continue",
        "headers",
        "keep_alive",
        "meta",
        "method",
        "on_buffered",
        "on_discarded",
        "on_pressure",
        "pump_paused",
        "rate_mark",
        "rate_mark_bytes",
        "target",
        "upstream",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[Header],
        keep_alive: bool,
        on_pressure: Callable[[bool], None],
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.meta = RequestMeta()
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.body_complete = False
        self.body_bytes = 0
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.upstream: UpstreamConnection | None = None
        self.error = 0  # an HTTP status guard must answer instead of the backend's
        self.discarding = False
        self.dispatched = False  # handed to the request path (it will be answered)
        self.on_discarded: Callable[[], None] | None = None
        self.on_pressure = on_pressure  # True: pause reading the client; False: resume
        self.body: BodyBuffer | None = None  # a buffered body (buffer_then)
        self.on_buffered: Callable[[], None] | None = None  # admission, once it is whole
        self.pump_paused = False  # the backend takes no more of a buffered body for now
        # The body rate is checked per window: bytes received since this mark (flow.py).
        self.rate_mark = 0.0
        self.rate_mark_bytes = 0

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def discardable(self) -> bool:
        """Can the connection survive an answer sent before this body was read?"""
        if self.body_complete:
            return True
        if self.error or not self.keep_alive:
            return False
        return self.chunked or (self.content_length or 0) <= DISCARD_LIMIT

    def discard_rest(self, then: Callable[[], None]) -> None:
        """Read the rest of the body into the void, then call `then`."""
        self.discarding = True
        self.on_discarded = then
        self.chunks.clear()
        self.buffered = 0
        self.close_body()
        self.on_pressure(False)

    def buffer_then(self, limit: int, temp_dir: str | None, then: Callable[[], None]) -> None:
        """Receive the rest of the body in full (in memory up to `limit` bytes, beyond in
        an anonymous file), then call `then`; `then` also runs when the body fails (error
        set: 408, 413, 499, 500 for a disk error)."""
        body = BodyBuffer(limit, temp_dir)
        self.body = body
        self.on_buffered = then
        try:
            for chunk in self.chunks:
                body.add(chunk)
        except OSError:
            self.fail(500)
            return
        self.chunks.clear()
        self.buffered = 0
        self.on_pressure(False)

    def close_body(self) -> None:
        """The request is over: free the buffered body (and its file)."""
        body = self.body
        if body is not None:
            self.body = None
            body.close()

    def framing(self) -> bytes:
        if self.chunked:
            return b"Transfer-Encoding: chunked\r\n"
        if self.content_length:
            return b"Content-Length: %d\r\n" % self.content_length
        return b""

    # -- from the client parser -------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.discarding:
            return  # the server closes the connection past DISCARD_LIMIT
        body = self.body
        if body is not None:
            if self.on_buffered is not None:
                try:
                    body.add(chunk)
                except OSError:
                    self.fail(500)  # disk full or gone: the client gets 500, nothing leaks
            return
        up = self.upstream
        if up is not None:
            up.write(self._frame(chunk))
            return
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > BODY_BUFFER:
            self.on_pressure(True)

    def finish(self) -> None:
        self.body_complete = True
        if self.discarding and self.on_discarded is not None:
            self.discarding = False
            self.on_discarded()
            return
        then = self.on_buffered
        if then is not None:
            self.on_buffered = None
            # Sent with its length, now known: a chunked upload reaches the backend as one
            # Content-Length body (as nginx sends it).
            self.chunked = False
            self.content_length = self.body_bytes
            then()
            return
        up = self.upstream
        if up is not None:
            self._sent_all(up)

    def fail(self, status: int) -> None:
        """A client-side problem (deadline, size, framing) ends this exchange."""
        if not self.error:
            self.error = status
        then = self.on_buffered
        if then is not None:  # not admitted yet: the waiting exchange answers the error
            self.on_buffered = None
            then()
            return
        if self.upstream is not None:
            self.upstream.abort()

    # -- towards the backend -----------------------------------------------------------
    def attach(self, up: UpstreamConnection) -> None:
        """Send what is buffered and stream the rest as it arrives."""
        if not self.has_body:
            up.body_done()
            return
        self.upstream = up
        up.request_sink = self
        up.body_streaming()
        if self.body is not None:
            try:
                self.body.rewind()
            except OSError:
                return self.fail(500)
            return self._pump(up)
        if self.chunks:
            data = b"".join([self._frame(c) for c in self.chunks])
            self.chunks.clear()
            self.buffered = 0
            # Resume the client before the write: the write may pause it again (the
            # backend's pause_writing), and that pause must stand.
            self.on_pressure(False)
            up.write(data)
        if self.body_complete:
            self._sent_all(up)

    def _sent_all(self, up: UpstreamConnection) -> None:
        if self.chunked:
            up.write(_LAST_CHUNK)
        self.upstream = None
        up.body_done()  # the only way a connection with a body becomes reusable
        self.on_pressure(False)

    def detach(self) -> None:
        """Stop streaming to the backend before the body was sent in full (the exchange
        ended early): the connection keeps body_sent False and is never reused."""
        up = self.upstream
        if up is not None:
            up.request_sink = None
            self.upstream = None
            self.on_pressure(False)

    def _pump(self, up: UpstreamConnection) -> None:
        """Send the buffered body until it is all sent or the backend pauses us (its
        pause_writing calls pause_body from inside up.write)."""
        body = self.body
        while body is not None and self.upstream is up and not self.pump_paused:
            try:
                data = body.read()
            except OSError:
                return self.fail(500)
            if not data:
                return self._sent_all(up)
            up.write(data)

    def pause_body(self) -> None:
        if self.body is not None:
            self.pump_paused = True
        else:
            self.on_pressure(True)

    def resume_body(self) -> None:
        if self.body is None:
            self.on_pressure(False)
        elif self.pump_paused:
            self.pump_paused = False
            if self.upstream is not None:
                self._pump(self.upstream)

    def _frame(self, chunk: bytes) -> bytes:
        if self.chunked:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk
