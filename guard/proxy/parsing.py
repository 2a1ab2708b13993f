"""Reading requests: slicing input into the llhttp parser and its callbacks.

The parser is fed in slices (1 KiB while reading heads, 8 KiB in bodies) so that nothing it
buffers internally can outgrow the limits; framing that two parsers could read differently
is refused (see headers.scan_request); a refusal is answered here only when no other answer
is due on the connection.
"""

from __future__ import annotations

from typing import Final

import httptools

from guard.proxy.connection import PHASE_BODY, PHASE_HEAD, PHASE_IDLE, PHASE_WAIT
from guard.proxy.flow import INF, PAUSE_PIPELINE, FlowControl
from guard.proxy.headers import FramingError, scan_request, simple_response
from guard.proxy.request import DISCARD_LIMIT, Request

SLICE: Final = 8192  # the parser is fed at most this much at a time while reading a body
HEAD_SLICE: Final = 1024  # ... and this much while reading heads, bounding what it buffers unseen
PIPELINE_MAX: Final = 16


class RequestParsing(FlowControl):
    """Part of ClientConnection: input, parser callbacks, refusals of broken input."""

    __slots__ = ()

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
        pos, size = 0, len(data)
        # Most segments are one small request: fed whole, without a memoryview.
        view = memoryview(data) if size > HEAD_SLICE else None
        while pos < size and not self.closing and not self.stop_parsing:
            if len(self.pipeline) >= PIPELINE_MAX:
                self.pending_input = data[pos:]
                self._pause(PAUSE_PIPELINE, True)
                return
            piece: bytes | memoryview = data
            if view is not None:
                piece = view[pos : pos + (SLICE if self.phase == PHASE_BODY else HEAD_SLICE)]
            pos += len(piece)
            if self.phase == PHASE_IDLE or self.phase == PHASE_WAIT:
                # First byte of a new request: its head must arrive within header_timeout.
                self.deadline = self.clock() + self.limits.header_timeout
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                self._stop_after_upgrade()
            except httptools.HttpParserError as exc:
                # httptools wraps what a callback raised; our own refusals carry a status.
                cause = exc.__cause__ or exc.__context__
                self._refuse(cause.status if isinstance(cause, _Refuse) else _status_of(exc))
            if self.phase == PHASE_BODY and self.parsing is not None and self.parsing.chunked:
                self._bound_chunk_overhead(len(piece))
            elif self.phase == PHASE_HEAD and not self.closing:
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
            self.server.count_bad_request(status)
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
        self.phase = PHASE_HEAD
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
        if self.phase == PHASE_BODY:  # trailers: read, bounded, never forwarded
            if self.head_size > self.limits.max_trailer_size:
                raise _Refuse(431)
            return
        if len(self.headers) >= self.limits.max_headers:
            raise _Refuse(431)
        if self.head_size + len(self.url) > self.limits.max_header_size:
            raise _Refuse(431)
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
        now = self.clock()
        if req.has_body:
            self.phase = PHASE_BODY
            self.body_started = now
            self.body_seen = 0
            self.overhead_fed = 0
            self.deadline = now + self.limits.body_timeout
            if req.content_length is not None and req.content_length > self.limits.max_body:
                req.error = 413
        else:
            self.phase = PHASE_WAIT
            self.deadline = INF
        self.pipeline.append(req)  # dispatched once the parser returns (see _feed_slices)

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None:
            return
        self.deadline = self.clock() + self.limits.body_timeout
        if req.body_bytes + len(body) > self.limits.max_body:
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
        self.phase = PHASE_WAIT
        self.deadline = INF
        if req is not None:
            req.finish()
        self.parsing = None


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
