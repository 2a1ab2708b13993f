"""The HTTP side of `guard surge`: keep-alive connections as raw asyncio Protocols, no task
per request. A connection carries one request at a time (no pipelining); httptools parses the
response and only the headers surge acts on (Set-Cookie, Retry-After, guard's X-Guard-Queue
mark of a waiting room's answer and its X-Guard-Place/-Pass tokens) are kept, and the body
only of a waiting room's answer (the shopper reads its status and position there).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast

import httptools

MAX_BODY_PARTS = 64  # a queue answer is a few KB; a larger body is cut (surge reads its start)


class Outcome:
    """A parsed response head, reused per connection (surge reads it before the next request)."""

    __slots__ = ("body", "cookies", "queue", "retry_after", "status", "tokens")

    def __init__(self) -> None:
        self.status = 0
        self.retry_after: float | None = None
        self.cookies: list[bytes] = []
        self.queue = False  # X-Guard-Queue: the waiting room's line answered, not the page
        self.tokens: list[tuple[str, str]] = []  # X-Guard-Place / X-Guard-Pass, as sent
        self.body: list[bytes] = []  # kept only for a queue answer


class Owner(Protocol):
    """The engine, as its connections call it back."""

    def response(self, conn: Connection, exchange: Any, outcome: Outcome, keep: bool) -> None: ...

    def failure(self, conn: Connection, exchange: Any, why: str) -> None: ...

    def lost(self, conn: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """One keep-alive connection."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Any = None  # the request in flight, None when idle
        self.outcome = Outcome()
        self.timed_out = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("bad response")
            self.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail("timeout" if self.timed_out else "reset")
        self.owner.lost(self)

    def pause_writing(self) -> None:
        """Requests are small and one at a time: nothing to pause."""

    def resume_writing(self) -> None:
        """See pause_writing."""

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.outcome.status = 0
        self.outcome.retry_after = None
        self.outcome.cookies = []
        self.outcome.queue = False
        self.outcome.tokens = []
        self.outcome.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 10 and name.lower() == b"set-cookie":
            self.outcome.cookies.append(value)
        elif len(name) == 11 and name.lower() == b"retry-after":
            try:
                self.outcome.retry_after = max(float(value), 0.0)
            except ValueError:  # an HTTP date: surge only follows delays in seconds
                self.outcome.retry_after = None
        elif len(name) == 13 and name.lower() == b"x-guard-queue":
            self.outcome.queue = True
        elif len(name) == 13 and name.lower() == b"x-guard-place":
            self.outcome.tokens.append(("X-Guard-Place", value.decode("latin-1")))
        elif len(name) == 12 and name.lower() == b"x-guard-pass":
            self.outcome.tokens.append(("X-Guard-Pass", value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.outcome.status = self.parser.get_status_code()

    def on_body(self, data: bytes) -> None:
        body = self.outcome.body
        if self.outcome.queue and len(body) < MAX_BODY_PARTS:
            body.append(data)

    def on_message_complete(self) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            self.close()  # a response nobody asked for: the connection cannot be trusted
            return
        keep = self.parser.should_keep_alive()
        if not keep:
            self.close()
        self.owner.response(self, exchange, self.outcome, keep)

    # used by the engine
    def send(self, exchange: Any, request: bytes, now: float) -> None:
        assert self.transport is not None
        exchange.sent = now
        self.exchange = exchange
        self.transport.write(request)

    def abort_for_timeout(self) -> None:
        self.timed_out = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, why: str) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            self.owner.failure(self, exchange, why)


def request_head(
    method: str, path: str, host: str, accept: str, cookies: dict[str, str],
    headers: dict[str, str] | None = None,
) -> bytes:  # fmt: skip
    """The bytes of one GET: surge sends no body."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "User-Agent: guard-surge",
        f"Accept: {accept}",
    ]
    if headers:
        lines.extend(f"{k}: {v}" for k, v in headers.items())
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def apply_set_cookies(jar: dict[str, str], headers: list[bytes]) -> None:
    """Set-Cookie -> the shopper's jar: name=value before the first ';'. Max-Age=0 or an
    empty value deletes (how sites log out); Path, Domain and Expires are not modelled."""
    for raw in headers:
        text = raw.decode("latin-1")
        pair, _, attributes = text.partition(";")
        name, eq, value = pair.strip().partition("=")
        if not eq or not name:
            continue
        expired = "max-age=0" in attributes.replace(" ", "").lower()
        if expired or not value:
            jar.pop(name, None)
        else:
            jar[name] = value
