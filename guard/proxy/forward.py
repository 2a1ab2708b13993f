"""The one request path: canonicalize -> match -> admit -> forward or answer.

Rules this module keeps:
- A refusal, a bad request or a static asset is answered synchronously, inside the parser
  callback that completed the request head: shedding load costs no task and no future.
- An admitted request becomes an `Exchange`. Its ticket is released in `Exchange.finish()`,
  the single exit every path goes through — response complete, backend failure, read
  timeout, client gone, shutdown — and `finish()` is idempotent.
- The slot is held until the backend's work is over. A client that leaves or breaks its
  request before the response head, or a 504 after timeouts.read, ends the client's side
  only: the exchange is "orphaned" (counted per backend) and keeps its slot and its backend
  connection until the backend answers (the answer is read and dropped, the connection
  closed) or the deadline passes: timeouts.read after an aborted request, timeouts.abandon
  after a 504. An orphaned connection is never reused.
- A request is forwarded only with its declared framing accounted for: a body that ended
  short of its Content-Length is refused, and a backend connection returns to the pool only
  if every declared body byte was written to it (upstream.py counts them).
- A task exists only while a new backend connection is being opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from guard.core.admission import Refusal, Ticket
from guard.core.affinity import Affinity
from guard.core.paths import BadPath, CanonicalTarget, canonicalize, param_route, route_of
from guard.core.rules import CompiledRule
from guard.core.state import Counter
from guard.core.stats import Outcome
from guard.proxy.headers import (
    backend_authority,
    client_address,
    new_request_id,
    request_head,
    response_head,
    session_cookies,
)
from guard.proxy.responses import STATIC_PREFIX
from guard.proxy.room_gate import QUEUE_PATH, Passage, enter, poll
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
        "orphans",
        "outcome",
        "own_cookie",
        "passage",
        "path",
        "released",
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
        self.passage: Passage | None = None  # a room's part: pass lease, cookies to set
        self.up: UpstreamConnection | None = None
        self.head_out: bytes | None = None  # response head not yet written (coalescing)
        self.request_bytes = b""
        self.own_cookie: bytes | None = None  # the client's affinity cookie (sticky_cookie)
        self.retry_left = 1 if req.method in IDEMPOTENT else 0
        self.done = False  # the client's side: answered (or gone) and logged
        self.released = False  # the backend's side: the slot given back
        self.orphans: Counter | None = None  # set while orphaned (see the module doc)

    # -- admission ----------------------------------------------------------------------
    def route(self) -> None:
        gen, req = self.gen, self.req
        adm = gen.admission
        head = req.method == b"HEAD"
        if req.error or _short_body(req):
            status = req.error or 400
            adm.record(adm.default_rule, "bad_request")
            return self.answer(gen.pages.error(status, True, head), status)
        try:
            target = canonicalize(req.target.decode("latin-1"), adm.session_params)
        except BadPath:
            adm.record(adm.default_rule, "bad_request")
            return self.answer(gen.pages.error(400, True, head), 400)
        self.path = target.path
        if target.path.startswith(STATIC_PREFIX):
            self.outcome = "static"
            adm.record(adm.default_rule, "static")
            return self.answer(gen.pages.asset(target.path, _closes(req), head), 200)
        if target.path == QUEUE_PATH:
            return poll(self, target.forward)
        rule = adm.match(req.method.decode("latin-1"), target.path)
        self.rule = rule.name
        # A block rule refuses at once instead; a streaming rule is admitted at the head.
        if req.has_body and not req.body_complete and not rule.block:  # noqa: SIM102
            if rule.name not in gen.streaming_rules:
                return self.buffer_body(rule, target)
        self.admit(rule, target)

    def buffer_body(self, rule: CompiledRule, target: CanonicalTarget) -> None:
        """Request buffering: admit once the whole body is here, so that a slow or aborted
        upload holds no slot and never reaches a backend."""
        req, limits = self.req, self.conn.limits
        if req.expect_continue:
            self.conn.write(_CONTINUE)  # the client waits for it before it sends the body
            req.expect_continue = False
        then = lambda: self.body_buffered(rule, target)  # noqa: E731 - a closure, compiled
        req.buffer_then(limits.body_buffer_size, limits.body_temp_dir, then)

    def body_buffered(self, rule: CompiledRule, target: CanonicalTarget) -> None:
        req = self.req
        gen = self.conn.server.gen
        if gen is not self.gen:
            # A reload while the body arrived: admission is now, so the config now in force
            # decides (a backend it removed must not get the request, its ceilings rule).
            self.gen = gen
            rule = gen.admission.match(req.method.decode("latin-1"), target.path)
            self.rule = rule.name
        if req.error:  # stalled (408), too large (413), client gone (499), disk (500)
            # ... or guard shutting down (503): guard's own decision, not the client's fault.
            outcome: Outcome = "unavailable" if req.error == 503 else "bad_request"
            self.outcome = outcome
            self.gen.admission.record(rule, outcome)
            page = self.gen.pages.error(req.error, True, req.method == b"HEAD")
            return self.answer(page, req.error)
        try:
            self.admit(rule, target)
        except BaseException:
            self.fail_internal()
            raise

    def admit(self, rule: CompiledRule, target: CanonicalTarget) -> None:
        gen, req = self.gen, self.req
        adm = gen.admission
        affinity = adm.affinity  # None unless some backend has a route: no cost then
        route = None if affinity is None else self.session_route(affinity, target.forward)
        room = gen.rooms.by_rule.get(rule.name) if gen.rooms is not None else None
        if room is None:
            decision = adm.admit(rule, req.meta.client, route)
        else:
            entered = enter(room, self, rule, route)
            if entered is None:  # the room answered: queue page, short retry
                return None
            decision = entered
        if isinstance(decision, Refusal):
            return self.refuse(decision)
        self.outcome = decision.outcome  # "admitted", or a dry run's "would_..."
        adm.record(rule, decision.outcome)
        self.ticket = decision
        if req.meta.host is None:  # HTTP/1.0 without Host: the backend's, as nginx sends
            req.meta.backend_host = backend_authority(decision.backend.host, decision.backend.port)
        self.request_bytes = request_head(
            req.method, target.forward.encode("latin-1"), req.meta, req.framing()
        )
        self.conn.server.exchanges.add(self)
        self.send()

    def session_route(self, affinity: Affinity, forward: str) -> str | None:
        """The route the request's session names: guard's cookie, a session cookie, or
        the kept path parameter (guard.core.affinity)."""
        own, session = session_cookies(self.req.meta.kept, affinity.cookies, affinity.cookie)
        self.own_cookie = own
        if own:
            return own.decode("latin-1")
        if session is not None:
            return route_of(session.decode("latin-1"))
        return param_route(forward)

    def refuse(self, refusal: Refusal) -> None:
        req, pages = self.req, self.gen.pages
        self.outcome = refusal.outcome
        self.gen.admission.record(refusal.rule, refusal.outcome)
        head = req.method == b"HEAD"
        close = _closes(req)
        if refusal.outcome == "blocked":
            return self.answer(pages.error(403, close, head), 403)
        html = not refusal.reject and req.meta.accept_html
        rid = req.meta.request_id
        data = pages.refusal(
            refusal.rule.name, refusal.outcome, refusal.status, html, close, head, rid
        )
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
        ticket.backend.health.mark_failure(adm.clock(), ticket.backend.cooldown, f"passive: {err}")
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
        length = -1 if req.chunked else req.content_length or 0
        up.start(self.request_bytes, req.method == b"HEAD", self.gen.read_timeout, self, length)
        req.attach(up)

    # -- Listener: called from the backend connection's parser --------------------------
    def upstream_head(self, head: ResponseHead) -> None:
        req, conn = self.req, self.conn
        ticket = self.ticket
        assert ticket is not None and self.up is not None
        if not ticket.backend.health.up:
            ticket.backend.health.mark_success()
        if self.orphans is not None:
            return  # the late answer of an orphaned request: read, never forwarded
        self.status = head.status
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
        affinity = self.gen.admission.affinity
        if affinity is not None and affinity.cookie is not None:
            framing += self.affinity_cookie(affinity, ticket.backend.route)
        passage = self.passage
        block = head.block if passage is None else passage.response_block(head.block, head.sold_out)
        self.head_out = response_head(head.status, block, framing, close, req.version)

    def affinity_cookie(self, affinity: Affinity, route: str | None) -> bytes:
        """Set-Cookie for guard's affinity cookie, when the client's differs (insert)."""
        if route is None or (self.own_cookie is not None and self.own_cookie == route.encode()):
            return b""
        return affinity.set_cookie.get(route, b"")

    def upstream_body(self, chunk: bytes) -> None:
        if self.orphans is not None:
            return
        out = self.head_out
        if out is not None:
            self.head_out = None
            if len(chunk) < _COALESCE and not self.conn.out_chunked:
                self.conn.write(out + chunk)  # the common small response: one write
                return
            self.conn.write(out)
        self.conn.upstream_body(chunk)

    def upstream_complete(self) -> None:
        if self.orphans is not None:
            return self.release()  # the backend's work is over; upstream closes it
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
        if self.orphans is not None:
            if err.kind != "timeout":  # a timeout was counted when the client got its answer
                adm.upstream_error(backend, err.kind)
            return self.release()
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

    def upstream_late(self) -> None:
        """timeouts.read passed before the response head: the client gets its 504 now, the
        backend (most likely still working on the request) keeps its slot until it answers
        or timeouts.abandon, counted like timeouts.read, passes."""
        ticket = self.ticket
        assert ticket is not None
        self.gen.admission.upstream_error(ticket.backend.name, "timeout")
        gen = self.gen
        self.orphan(gen.clock() + gen.abandon_timeout - gen.read_timeout)
        self.fail(499 if self.conn.gone else self.req.error or 504)

    def client_left(self) -> None:
        """The client went away or broke its request (its body unfinished) before the
        response head: answer it if it is still there; the backend keeps its slot until it
        answers or timeouts.read passes."""
        self.orphan(self.gen.clock() + self.gen.read_timeout)
        self.fail(self.req.error or 499)

    def orphan(self, deadline: float) -> None:
        ticket, up = self.ticket, self.up
        assert ticket is not None and up is not None
        self.req.detach()  # no more request body towards the backend
        up.orphan(deadline)
        self.orphans = orphans = ticket.backend.orphaned
        orphans.value += 1

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
            meta = req.meta
            page = self.gen.pages.error(
                status, not req.keep_alive, head, meta.accept_html, meta.request_id
            )
            conn.write(page)
        self.finish()

    def fail_internal(self) -> None:
        """A bug in guard: never leak the slot, never leave the client hanging."""
        if self.up is not None:
            self.up.close()
        self.conn.abort()
        self.status = 500
        self.release()
        self.finish()

    def abort(self) -> None:
        """Shutdown past its deadline: guard ends the exchange -- a 503 when no response
        head went out yet, else the client's connection is reset -- logged as guard's 503."""
        up, conn = self.up, self.conn
        if up is not None:
            up.close()
        if self.done:
            return self.release()  # orphaned: the client's side was over already
        if self.head_out is None and conn.streaming is not None:
            conn.abort(reset=True)  # the head went out: the client must see a cut response
            self.status = 503
            return self.finish()
        self.head_out = None
        conn.streaming = None
        self.fail(503)

    def finish(self) -> None:
        """The client's side is over: the slot goes back first (the next request on this
        connection may need it) unless the backend still works on this one (orphaned)."""
        if self.done:
            return
        if self.orphans is None:
            self.release()
        self.done = True
        gen, conn = self.gen, self.conn
        conn.streaming = None
        meta, req = self.req.meta, self.req
        took = gen.clock() - self.started
        conn.server.live.finished(
            self.rule, self.backend, self.outcome, self.status, took,
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
            took,
            meta.request_id.decode("latin-1") if meta.request_id else None,
        )
        conn.request_done(req)

    def release(self) -> None:
        """The backend's side is over: give the slot back (once)."""
        if self.released:
            return
        self.released = True
        if self.orphans is not None:
            self.orphans.value -= 1
        if self.passage is not None:
            self.passage.release()  # the per-pass lease ends with the ticket, exactly once
        ticket = self.ticket
        if ticket is not None:
            ticket.release()
            self.gen.admission.observe(ticket.rule, self.gen.clock() - self.started)
            self.conn.server.exchanges.discard(self)
        self.up = None  # it may be back in the pool now, carrying someone else's request
        self.req.close_body()  # a buffered body's memory or file: the backend is done reading


def _short_body(req: Request) -> bool:
    """A body the parser ended before its declared length (an upgrade request's body is
    skipped by llhttp, for one): forwarding its Content-Length would let the next bytes
    on the backend connection be read as this body."""
    if not req.body_complete or req.chunked or req.content_length is None:
        return False
    return req.body_bytes != req.content_length


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
