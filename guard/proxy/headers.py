"""Header rewriting as pure functions: no sockets, no event loop.

Request direction: hop-by-hop headers (RFC 9110 §7.6.1, plus every name listed in
`Connection`) never reach the backend; framing headers are re-derived by guard, so a
smuggling attempt cannot pass a second framing to the WAS; X-Forwarded-* are set by guard
unless the peer is a trusted proxy; X-Request-Id is kept or generated.

Response direction: the same hop-by-hop stripping, framing re-derived for the client.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from http import HTTPStatus
from itertools import count
from typing import Final

Header = tuple[bytes, bytes]
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

# Names that describe one hop only; lower-case.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Re-derived by guard on each hop rather than copied.
_REQUEST_DROP: Final = HOP_BY_HOP | {
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"host",
}
# Connection tokens naming headers that are dropped anyway need no second filter.
_HOP_TOKENS: Final = frozenset({b"close", b"keep-alive"}) | HOP_BY_HOP
_RESPONSE_DROP: Final = HOP_BY_HOP | {b"content-length"}

_REQUEST_IDS: Final = count(1)
_REQUEST_ID_PREFIX: Final = os.urandom(4).hex().encode()
_HOST: Final = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~%!$&'()*+;=]+)(:[0-9]{1,5})?")


def new_request_id() -> bytes:
    """Unique within the fleet with high probability; cheap (no uuid4 syscall per request)."""
    return b"%s-%x" % (_REQUEST_ID_PREFIX, next(_REQUEST_IDS))


_TOKEN_CACHE: Final[dict[bytes, frozenset[bytes]]] = {}
_GOOD_HOSTS: Final[set[bytes]] = set()  # Host values that passed _HOST


def _tokens(value: bytes) -> frozenset[bytes]:
    found = _TOKEN_CACHE.get(value)
    if found is None:
        found = frozenset(t.strip().lower() for t in value.split(b",") if t.strip())
        if len(_TOKEN_CACHE) < 256:  # "keep-alive", "close" and a few more in practice
            _TOKEN_CACHE[value] = found
    return found


def is_trusted(address: str, trusted: Networks) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str, peer_trusted: bool, xff: bytes | None, trusted: Networks) -> str:
    """The TCP peer, or, from a trusted peer, the rightmost X-Forwarded-For hop not trusted."""
    if not peer_trusted or not xff:
        return peer
    hops = [h.strip() for h in xff.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled chain is not evidence of anything
        if not is_trusted(hop, trusted):
            return hop
    return peer


class FramingError(Exception):
    """A request head two parsers could frame differently: refuse with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class RequestMeta:
    """What guard reads from a request head, gathered in one pass (`scan_request`)."""

    __slots__ = (
        "accept_html",
        "chunked",
        "client",
        "connection",
        "content_length",
        "expect_continue",
        "forwarded",
        "host",
        "kept",
        "peer",
        "peer_trusted",
        "request_id",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self) -> None:
        self.host: bytes | None = None
        self.connection: frozenset[bytes] = frozenset()  # names listed in Connection
        self.kept: list[Header] = []  # end-to-end headers forwarded as received
        self.forwarded: list[bytes] = []  # RFC 7239, forwarded only from trusted peers
        self.xff: bytes | None = None
        self.xfp: bytes | None = None
        self.xfh: bytes | None = None
        self.request_id: bytes | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.accept_html = False
        self.peer_trusted = False
        self.peer = ""  # the TCP peer: appended to a trusted chain
        self.client = ""  # the address limits and block lists apply to


def scan_request(headers: Sequence[Header], version: bytes, meta: RequestMeta) -> None:
    """One pass over the request headers, lower-casing each name once: framing checks
    (raising FramingError), the values guard reads, and the headers it forwards as-is."""
    hosts = 0
    kept = meta.kept
    for header in headers:
        name, value = header
        lname = name.lower()
        if lname not in _REQUEST_DROP:
            if lname == b"forwarded":
                meta.forwarded.append(value)
            else:
                kept.append(header)
                if lname == b"accept":
                    meta.accept_html = b"text/html" in value
        elif lname == b"host":
            hosts += 1
            if value and value not in _GOOD_HOSTS:
                if not _HOST.fullmatch(value):
                    raise FramingError(400)  # one host[:port], never a list or anything else
                if len(_GOOD_HOSTS) < 1024:  # the site's few names; a flood cannot grow it
                    _GOOD_HOSTS.add(value)
            meta.host = value
        elif lname == b"transfer-encoding":
            if version == b"1.0":
                raise FramingError(400)
            if value.strip().lower() != b"chunked":
                raise FramingError(501)
            meta.chunked = True
        elif lname == b"content-length":
            meta.content_length = int(value)  # llhttp already refused anything but digits
        elif lname == b"expect":
            if value.strip().lower() != b"100-continue":
                raise FramingError(417)
            meta.expect_continue = True
        elif lname == b"x-forwarded-for":
            meta.xff = value if meta.xff is None else meta.xff + b", " + value
        elif lname == b"x-request-id":
            meta.request_id = value
        elif lname == b"x-forwarded-proto":
            meta.xfp = value
        elif lname == b"x-forwarded-host":
            meta.xfh = value
        elif lname == b"connection":
            meta.connection = meta.connection | _tokens(value)
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        raise FramingError(400)


def request_head(method: bytes, target: bytes, meta: RequestMeta, framing: bytes) -> bytes:
    """The request head sent to the backend. `framing` is b"" (no body),
    b"Content-Length: N\r\n" or b"Transfer-Encoding: chunked\r\n"."""
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    if meta.host is not None:
        out += (b"Host: ", meta.host, b"\r\n")
    listed = meta.connection - _HOP_TOKENS if meta.connection else meta.connection
    for name, value in meta.kept:
        if not listed or name.lower() not in listed:
            out += (name, b": ", value, b"\r\n")
    trusted = meta.peer_trusted
    if trusted:
        for value in meta.forwarded:
            out += (b"Forwarded: ", value, b"\r\n")
    if trusted and meta.xff:
        out += (b"X-Forwarded-For: ", meta.xff, b", ", meta.peer.encode(), b"\r\n")
    else:
        out += (b"X-Forwarded-For: ", meta.client.encode(), b"\r\n")
    proto = meta.xfp if trusted and meta.xfp else b"http"
    out += (b"X-Forwarded-Proto: ", proto, b"\r\n")
    fhost = meta.xfh if trusted and meta.xfh else meta.host
    if fhost:
        out += (b"X-Forwarded-Host: ", fhost, b"\r\n")
    out += (b"X-Request-Id: ", meta.request_id or new_request_id(), b"\r\n", framing, b"\r\n")
    return b"".join(out)


def response_kept(headers: Sequence[Header]) -> tuple[bytes, int | None, bool]:
    """One pass over a response head: (the end-to-end headers as one block of
    "Name: value\r\n" lines, forwarded as received; Content-Length; chunked).
    Hop-by-hop headers, those the Connection header lists, and the framing are left out."""
    out: list[bytes] = []
    listed: frozenset[bytes] = frozenset()
    length: int | None = None
    chunked = False
    for name, value in headers:
        lname = name.lower()
        if lname not in _RESPONSE_DROP:
            out += (name, b": ", value, b"\r\n")
        elif lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding":
            chunked = True
        elif lname == b"connection":
            listed = listed | _tokens(value)
    listed = listed - _HOP_TOKENS if listed else listed
    if listed:  # rare: names the Connection header declares hop-by-hop, maybe listed after
        out = []
        for name, value in headers:
            lname = name.lower()
            if lname not in _RESPONSE_DROP and lname not in listed:
                out += (name, b": ", value, b"\r\n")
    return b"".join(out), length, chunked


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def response_head(status: int, reason: bytes, block: bytes, framing: bytes, close: bool) -> bytes:
    """The response head sent to the client: the status line, `block` (from response_kept),
    and the framing re-derived by guard."""
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason or _reason(status))
        if len(_STATUS_LINES) < 256:  # a backend's few statuses and reasons in practice
            _STATUS_LINES[(status, reason)] = line
    if close:
        return b"".join((line, block, b"Connection: close\r\n", framing, b"\r\n"))
    return b"".join((line, block, framing, b"\r\n"))


def simple_response(
    status: int, headers: Sequence[Header], body: bytes, close: bool, head_only: bool = False
) -> bytes:
    """A complete response generated by guard itself (refusals, errors, static assets)."""
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", _reason(status), b"\r\n"]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    out += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
    if close:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    if not head_only:
        out.append(body)
    return b"".join(out)


_REASONS: Final = {int(s): s.phrase.encode() for s in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")
