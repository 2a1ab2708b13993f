"""The body of an upgrade request.

guard does not tunnel upgrades: a request asking for one (`Upgrade: websocket`, or `h2c`
as `curl --http2` sends) is forwarded as a plain HTTP/1.1 request, Upgrade, HTTP2-Settings
and Connection stripped like every hop-by-hop header (headers.py), and its body is
forwarded and accounted like any other body.

httptools tells llhttp to skip the body of a request that asks for an upgrade (the body
would be the new protocol's bytes) and stops with HttpParserUpgrade where the body starts.
So that body is read by a second llhttp parser, fed a head that carries only the request's
framing (Content-Length or chunked): llhttp keeps decoding chunks and counting lengths, and
the body goes through the connection's own callbacks (limits, deadlines, streaming) as any
body does. After it the connection closes: what follows was never meant to be HTTP/1.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httptools

from guard.proxy.headers import Header

if TYPE_CHECKING:
    from guard.proxy.parsing import RequestParsing


class UpgradeBody:
    """Parser callbacks for the body of one upgrade request (see the module doc)."""

    def __init__(self, conn: RequestParsing) -> None:
        self.conn = conn
        self.in_body = False
        self.ended = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_body and not self.ended:
            self.conn.on_header(name, value)  # trailers: bounded there, never forwarded

    def on_headers_complete(self) -> None:
        self.in_body = not self.ended

    def on_body(self, body: bytes) -> None:
        if self.in_body and not self.ended:
            self.conn.on_body(body)

    def on_message_complete(self) -> None:
        if self.in_body and not self.ended:
            self.ended = True
            self.in_body = False
            self.conn.stop_parsing = True
            self.conn.on_message_complete()


def body_parser(conn: RequestParsing, chunked: bool, length: int) -> httptools.HttpRequestParser:
    """A parser positioned at the start of a body of the given framing."""
    parser = httptools.HttpRequestParser(UpgradeBody(conn))
    framing: Header = (
        (b"Transfer-Encoding", b"chunked") if chunked else (b"Content-Length", b"%d" % length)
    )
    parser.feed_data(b"POST / HTTP/1.1\r\n%b: %b\r\n\r\n" % framing)
    return parser
