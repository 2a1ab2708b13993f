"""The one request path: canonicalize -> match -> admit -> forward or answer.

Every admitted request holds a Ticket; `finally: ticket.release()` is the only release,
so cancellation, timeouts, client disconnects and backend failures all give the slot back
exactly once. The slot is held until the backend's work is over: its response complete,
its connection aborted, or the read timeout fired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from guard.core.admission import Refusal, Ticket
from guard.core.paths import BadPath, CanonicalTarget, canonicalize
from guard.proxy.headers import client_address, request_head, response_head, scan_request
from guard.proxy.responses import STATIC_PREFIX, wants_html
from guard.proxy.upstream import ResponseHead, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from guard.proxy.request import Request
    from guard.proxy.server import ClientConnection
    from guard.runtime import Generation

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUS = (204, 304)


class Outcome(Protocol):
    status: int
    backend: str


class Exchange:
    """What the access log needs to know about one request."""

    __slots__ = ("backend", "outcome", "path", "rule", "status")

    def __init__(self) -> None:
        self.rule = "default"
        self.backend = "-"
        self.outcome = "bad_request"
        self.status = 0
        self.path = ""


async def handle(gen: Generation, conn: ClientConnection, req: Request) -> None:
    loop = conn.loop
    started = loop.time()
    ex = Exchange()
    meta = req.meta
    scan_request(req.headers, meta)
    meta.peer_trusted = conn.peer_trusted
    meta.peer = conn.peer
    meta.client = client_address(conn.peer, conn.peer_trusted, meta.xff, gen.trusted)
    try:
        await _route(gen, conn, req, ex)
    finally:
        gen.access_log.log(
            meta.client,
            req.method.decode("latin-1"),
            ex.path or req.target.decode("latin-1"),
            ex.rule,
            ex.backend,
            ex.outcome,
            ex.status,
            loop.time() - started,
            (meta.request_id or b"").decode("latin-1"),
        )


async def _route(gen: Generation, conn: ClientConnection, req: Request, ex: Exchange) -> None:
    adm = gen.admission
    head = req.method == b"HEAD"
    if req.error:
        adm.record(adm.default_rule, "bad_request")
        return _answer(conn, req, ex, gen.pages.error(req.error, True, head), req.error)
    try:
        target = canonicalize(req.target.decode("latin-1"))
    except BadPath:
        adm.record(adm.default_rule, "bad_request")
        return _answer(conn, req, ex, gen.pages.error(400, True, head), 400)
    ex.path = target.path
    if target.path.startswith(STATIC_PREFIX):
        ex.outcome = "static"
        close = not req.keep_alive
        return _answer(conn, req, ex, gen.pages.asset(target.path, close, head), 200)
    rule = adm.match(req.method.decode("latin-1"), target.path)
    ex.rule = rule.name
    decision = adm.admit(rule, req.meta.client)
    if isinstance(decision, Refusal):
        ex.outcome = decision.outcome
        adm.record(rule, decision.outcome)
        html = not decision.reject and decision.outcome != "blocked" and wants_html(req.headers)
        close = not req.keep_alive or req.has_body
        if decision.outcome == "blocked":
            data = gen.pages.error(403, close, head)
        else:
            data = gen.pages.refusal(
                rule.name, decision.outcome, decision.status, html, close, head
            )
        return _answer(conn, req, ex, data, decision.status)
    ex.outcome = "admitted"
    adm.record(rule, "admitted")
    if decision is None:  # a bypass rule with no backend up
        return _answer(conn, req, ex, gen.pages.error(502, not req.keep_alive, head), 502)
    started = conn.loop.time()
    try:
        await _forward(gen, conn, req, decision, target, ex)
    finally:
        decision.release()
        adm.observe(rule, conn.loop.time() - started)


def _answer(conn: ClientConnection, req: Request, ex: Exchange, data: bytes, status: int) -> None:
    ex.status = status
    conn.write(data)
    if status >= 400 and not req.body_complete:
        req.keep_alive = False  # the unread body makes the next request boundary unknown


async def _forward(
    gen: Generation,
    conn: ClientConnection,
    req: Request,
    ticket: Ticket,
    target: CanonicalTarget,
    ex: Exchange,
) -> None:
    adm = gen.admission
    head = req.method == b"HEAD"
    retry_left = 1 if req.method in IDEMPOTENT else 0
    request_bytes = request_head(
        req.method, target.forward.encode("latin-1"), req.headers, req.meta, req.framing()
    )
    continue_sent = False
    while True:
        backend = ticket.backend
        ex.backend = backend.name
        try:
            up = await gen.pools[backend.name].acquire()
        except UpstreamError as err:
            adm.upstream_error(backend.name, err.kind)
            backend.health.mark_failure(adm.clock(), backend.cooldown)
            if retry_left and ticket.reroute(adm.clock()):
                retry_left -= 1
                continue
            return _fail(gen, conn, req, ex, 502)
        if req.error or conn.gone:  # the client side ended while we were connecting
            up.release()
            return _fail(gen, conn, req, ex, req.error or 499)
        if req.expect_continue and not continue_sent and not req.body_complete:
            conn.write(_CONTINUE)
            continue_sent = True
        up.start(request_bytes, head, gen.read_timeout)
        req.attach(up)
        try:
            resp = await up.head_future  # type: ignore[misc]
        except UpstreamError as err:
            req.detach()
            up.release()
            if req.error or err.kind == "aborted":
                return _fail(gen, conn, req, ex, req.error or 499)
            adm.upstream_error(backend.name, err.kind)
            if err.kind == "reset" and not err.sent and retry_left:
                retry_left -= 1  # a stale keep-alive connection: try a fresh one
                continue
            return _fail(gen, conn, req, ex, 504 if err.kind == "timeout" else 502)
        except BaseException:  # cancelled (shutdown): the backend must not keep working
            req.detach()
            up.abort()
            up.release()
            raise
        if not backend.health.up:
            backend.health.mark_success()
        return await _relay(gen, conn, req, up, resp, ex)


async def _relay(
    gen: Generation,
    conn: ClientConnection,
    req: Request,
    up: UpstreamConnection,
    resp: ResponseHead,
    ex: Exchange,
) -> None:
    """Send the response head on and pipe the body until the backend is done."""
    ex.status = resp.status
    if conn.gone:
        req.detach()
        up.abort()
        up.release()
        ex.status = 499
        return
    close = not req.keep_alive or not req.body_complete or conn.server.closing
    no_body = req.method == b"HEAD" or resp.status in _NO_BODY_STATUS
    framing, chunked = _response_framing(resp, req, no_body)
    if chunked is None:  # close-delimited towards an HTTP/1.0 client
        close, chunked = True, False
    req.keep_alive = not close
    head_bytes = response_head(
        resp.status, resp.reason, resp.headers, framing, close, resp.connection
    )
    conn.out_chunked = chunked
    conn.out_done = False
    if up.complete and not chunked and up.pending:
        conn.write(head_bytes + b"".join(up.pending))  # the common small response: one write
        up.pending.clear()
        conn.out_done = True
    else:
        conn.write(head_bytes)
        conn.streaming = up
        up.attach(conn)
    try:
        await up.done  # type: ignore[misc]
    except UpstreamError as err:
        if err.kind != "aborted":
            gen.admission.upstream_error(ex.backend, err.kind)
        conn.abort(reset=True)  # mid-body failure: the client must see an aborted response
    except BaseException:
        up.abort()
        conn.abort(reset=True)
        raise
    finally:
        conn.streaming = None
        req.detach()
        up.release()


def _response_framing(resp: ResponseHead, req: Request, no_body: bool) -> tuple[bytes, bool | None]:
    if resp.content_length is not None and (not resp.chunked):
        return b"Content-Length: %d\r\n" % resp.content_length, False
    if no_body:
        return b"", False
    if req.version == b"1.1":
        return b"Transfer-Encoding: chunked\r\n", True
    return b"", None


def _fail(gen: Generation, conn: ClientConnection, req: Request, ex: Exchange, status: int) -> None:
    ex.status = status
    if status == 499 or conn.gone:
        return
    req.keep_alive = False if not req.body_complete else req.keep_alive
    conn.write(gen.pages.error(status, not req.keep_alive, req.method == b"HEAD"))
