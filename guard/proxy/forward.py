"""The one request path: canonicalize -> match -> admit -> forward or answer.

Rules this module keeps:
- A refusal, a bad request or a static asset is answered synchronously, inside the parser
  callback that completed the request head: shedding load costs no task and no future.
- An admitted request becomes an `Exchange`. Its ticket is released in `Exchange.finish()`,
  the single exit every path goes through — response complete, backend failure, read
  timeout, client gone, shutdown — and `finish()` is idempotent.
- The slot is held until the backend's work is over: its response complete, its connection
  aborted, or the read timeout fired. A client that leaves while the backend still works
  on its request does not free the slot early.
- A task exists only while a new backend connection is being opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from guard.core.admission import Refusal, Ticket
from guard.core.paths import BadPath, canonicalize
from guard.proxy.headers import client_address, new_request_id, request_head, response_head
from guard.proxy.responses import STATIC_PREFIX
from guard.proxy.upstream import ResponseHead, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from guard.proxy.client import ClientConnection
    from guard.proxy.request import Request
    from guard.proxy.server import Generation

IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUS: Final = (204, 304)
_COALESCE: Final = 16 * 1024  # response head and first body chunk go out in one write below this


def dispatch(gen: Generation, conn: ClientConnection, req: Request) -> None:
    """Answer or start forwarding `req`; `conn.request_done(req)` follows, now or later."""
    started = gen.clock()  # the data path's one clock (uvloop's loop.time() ticks in ms)
    meta = req.meta
    if meta.request_id is None:
        meta.request_id = new_request_id()  # the backend and the access log see the same id
    meta.peer_trusted = conn.peer_trusted
    meta.peer = conn.peer
    meta.client = client_address(conn.peer, conn.peer_trusted, meta.xff, gen.trusted)
    ex = Exchange(gen, conn, req, started)
    try:
        ex.route()
    except BaseException:
        ex.fail_internal()
        raise


class Exchange:
    """One request from admission to the end of the backend's work."""

    __slots__ = (
        "backend",
        "conn",
        "done",
        "gen",
        "head_out",
        "outcome",
        "path",
        "req",
        "request_bytes",
        "retry_left",
        "rule",
        "started",
        "status",
        "ticket",
        "up",
    )

    def __init__(self, gen: Generation, conn: ClientConnection, req: Request, t: float) -> None:
        self.gen = gen
        self.conn = conn
        self.req = req
        self.started = t
        self.rule = "default"
        self.backend: str | None = None
        self.outcome = "bad_request"
        self.status = 0
        self.path = ""
        self.ticket: Ticket | None = None
        self.up: UpstreamConnection | None = None
        self.head_out: bytes | None = None  # response head not yet written (coalescing)
        self.request_bytes = b""
        self.retry_left = 1 if req.method in IDEMPOTENT else 0
        self.done = False

    # -- admission ----------------------------------------------------------------------
    def route(self) -> None:
        gen, req = self.gen, self.req
        adm = gen.admission
        head = req.method == b"HEAD"
        if req.error:
            adm.record(adm.default_rule, "bad_request")
            return self.answer(gen.pages.error(req.error, True, head), req.error)
        try:
            target = canonicalize(req.target.decode("latin-1"))
        except BadPath:
            adm.record(adm.default_rule, "bad_request")
            return self.answer(gen.pages.error(400, True, head), 400)
        self.path = target.path
        if target.path.startswith(STATIC_PREFIX):
            self.outcome = "static"
            return self.answer(gen.pages.asset(target.path, _closes(req), head), 200)
        rule = adm.match(req.method.decode("latin-1"), target.path)
        self.rule = rule.name
        decision = adm.admit(rule, req.meta.client)
        if isinstance(decision, Refusal):
            return self.refuse(decision)
        self.outcome = "admitted"
        adm.record(rule, "admitted")
        if decision is None:  # a bypass rule with no backend up
            return self.answer(gen.pages.error(502, _closes(req), head), 502)
        self.ticket = decision
        self.request_bytes = request_head(
            req.method, target.forward.encode("latin-1"), req.meta, req.framing()
        )
        self.conn.server.exchanges.add(self)
        self.send()

    def refuse(self, refusal: Refusal) -> None:
        req, pages = self.req, self.gen.pages
        self.outcome = refusal.outcome
        self.gen.admission.record(refusal.rule, refusal.outcome)
        head = req.method == b"HEAD"
        close = _closes(req)
        if refusal.outcome == "blocked":
            return self.answer(pages.error(403, close, head), 403)
        html = not refusal.reject and req.meta.accept_html
        data = pages.refusal(refusal.rule.name, refusal.outcome, refusal.status, html, close, head)
        self.answer(data, refusal.status)

    def answer(self, data: bytes, status: int) -> None:
        """guard answers by itself; nothing was (or is any longer) at a backend."""
        self.status = status
        self.conn.write(data)
        self.finish()

    # -- towards the backend ------------------------------------------------------------
    def send(self) -> None:
        ticket = self.ticket
        assert ticket is not None
        self.backend = ticket.backend.name
        up = self.gen.pools[self.backend].take_idle()
        if up is None:
            self.conn.server.spawn(self.connect())
        else:
            self.start_on(up)

    async def connect(self) -> None:
        ticket = self.ticket
        assert ticket is not None
        try:
            up = await self.gen.pools[ticket.backend.name].connect()
        except UpstreamError as err:
            return self.connect_failed(err)
        except BaseException:
            self.fail(503)  # shutdown cancelled the connect
            raise
        self.start_on(up)

    def connect_failed(self, err: UpstreamError) -> None:
        adm, ticket = self.gen.admission, self.ticket
        assert ticket is not None
        adm.upstream_error(ticket.backend.name, err.kind)
        ticket.backend.health.mark_failure(adm.clock(), ticket.backend.cooldown)
        if self.retry_left and ticket.reroute(adm.clock()):
            self.retry_left -= 1
            return self.send()
        self.fail(502)

    def start_on(self, up: UpstreamConnection) -> None:
        req, conn = self.req, self.conn
        if self.done or req.error or conn.gone:  # the client side ended meanwhile
            up.pool.put_idle(up)
            return self.fail(req.error or 499)
        if req.expect_continue and not req.body_complete:
            conn.write(_CONTINUE)
            req.expect_continue = False
        self.up = up
        up.start(self.request_bytes, req.method == b"HEAD", self.gen.read_timeout, self)
        req.attach(up)

    # -- Listener: called from the backend connection's parser --------------------------
    def upstream_head(self, head: ResponseHead) -> None:
        req, conn = self.req, self.conn
        ticket = self.ticket
        assert ticket is not None and self.up is not None
        self.status = head.status
        if not ticket.backend.health.up:
            ticket.backend.health.mark_success()
        if conn.gone:
            self.up.abort()  # the backend answered; nobody is left to read it
            return
        close = not req.keep_alive or not req.body_complete or conn.server.closing
        no_body = req.method == b"HEAD" or head.status in _NO_BODY_STATUS
        framing, chunked = _response_framing(head, req, no_body)
        if chunked is None:  # close-delimited towards an HTTP/1.0 client
            close, chunked = True, False
        req.keep_alive = not close
        conn.out_chunked = chunked
        conn.out_done = False
        conn.streaming = self.up
        if conn.output_paused:
            self.up.pause_reading()  # the client is still behind on earlier answers
        self.head_out = response_head(head.status, head.block, framing, close)

    def upstream_body(self, chunk: bytes) -> None:
        out = self.head_out
        if out is not None:
            self.head_out = None
            if len(chunk) < _COALESCE and not self.conn.out_chunked:
                self.conn.write(out + chunk)  # the common small response: one write
                return
            self.conn.write(out)
        self.conn.upstream_body(chunk)

    def upstream_complete(self) -> None:
        if self.head_out is not None:
            self.conn.write(self.head_out)
            self.head_out = None
        self.conn.upstream_complete()
        self.req.detach()
        self.finish()

    def upstream_failed(self, err: UpstreamError) -> None:
        req, adm, ticket = self.req, self.gen.admission, self.ticket
        assert ticket is not None
        backend = ticket.backend.name
        self.req.detach()
        self.up = None
        if self.head_out is None and self.conn.streaming is not None:
            # The head went out already: the client must see an aborted response.
            if err.kind != "aborted":
                adm.upstream_error(backend, err.kind)
            self.conn.abort(reset=True)
            return self.finish()
        self.head_out = None
        self.conn.streaming = None
        if req.error or err.kind == "aborted":
            return self.fail(req.error or 499)
        adm.upstream_error(backend, err.kind)
        if self.conn.gone:
            return self.fail(499)
        if err.kind == "reset" and not err.sent and self.retry_left and not req.has_body:
            # A stale keep-alive connection: try a fresh one (a body already streamed into
            # the dead connection cannot be sent again, so only bodiless requests).
            self.retry_left -= 1
            return self.send()
        self.fail(504 if err.kind == "timeout" else 502)

    # -- the end --------------------------------------------------------------------------
    def fail(self, status: int) -> None:
        """An error answer for an admitted request whose backend gave nothing usable."""
        if self.done:
            return  # one answer per request, whatever ended it first
        req, conn = self.req, self.conn
        self.status = status
        if status != 499 and not conn.gone:
            if not req.discardable:
                req.keep_alive = False
            head = req.method == b"HEAD"
            conn.write(self.gen.pages.error(status, not req.keep_alive, head))
        self.finish()

    def fail_internal(self) -> None:
        """A bug in guard: never leak the slot, never leave the client hanging."""
        if self.up is not None:
            self.up.listener = None
            self.up.release_transport()
        self.conn.abort()
        self.status = 500
        self.finish()

    def abort(self) -> None:
        """Shutdown past its deadline: end the exchange now."""
        if self.up is not None:
            self.up.abort()
        if not self.done:
            self.fail(503)

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        gen, conn = self.gen, self.conn
        now = gen.clock()
        ticket = self.ticket
        if ticket is not None:
            ticket.release()
            gen.admission.observe(ticket.rule, now - self.started)
            conn.server.exchanges.discard(self)
        conn.streaming = None
        self.up = None  # it may be back in the pool now, carrying someone else's request
        meta, req = self.req.meta, self.req
        conn.server.live.finished(
            self.rule, self.backend, self.outcome, self.status, now - self.started,
            req.method, self.path, meta.client,
        )  # fmt: skip
        gen.access_log.log(
            meta.client,
            req.method.decode("latin-1"),
            self.path or req.target.decode("latin-1"),
            self.rule,
            self.backend,
            self.outcome,
            self.status,
            now - self.started,
            meta.request_id.decode("latin-1") if meta.request_id else None,
        )
        conn.request_done(req)


def _closes(req: Request) -> bool:
    """Will the connection close after guard's own answer to `req`?"""
    return not req.keep_alive or not req.discardable


def _response_framing(head: ResponseHead, req: Request, no_body: bool) -> tuple[bytes, bool | None]:
    if head.content_length is not None and not head.chunked:
        return b"Content-Length: %d\r\n" % head.content_length, False
    if no_body:
        return b"", False
    if req.version == b"1.1":
        return b"Transfer-Encoding: chunked\r\n", True
    return b"", None
