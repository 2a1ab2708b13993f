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
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from itertools import count

Header = tuple[bytes, bytes]
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]

# Names that describe one hop only; lower-case.
HOP_BY_HOP = frozenset(
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
_REQUEST_DROP = HOP_BY_HOP | {
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"host",
}
# RFC 7239 Forwarded is believed only from trusted proxies, like X-Forwarded-*.
_UNTRUSTED_DROP = _REQUEST_DROP | {b"forwarded"}
_RESPONSE_DROP = HOP_BY_HOP | {b"content-length"}

_REQUEST_IDS = count(1)
_REQUEST_ID_PREFIX = os.urandom(4).hex()


def new_request_id() -> bytes:
    """Unique within the fleet with high probability; cheap (no uuid4 syscall per request)."""
    return f"{_REQUEST_ID_PREFIX}-{next(_REQUEST_IDS):x}".encode()


def _tokens(value: bytes) -> frozenset[bytes]:
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """Lower-case names listed in every Connection header (they are hop-by-hop too)."""
    tokens: frozenset[bytes] = frozenset()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens = tokens | _tokens(value)
    return tokens


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


class RequestMeta:
    """What the forwarding headers need to know about the incoming request."""

    __slots__ = (
        "client",
        "connection",
        "host",
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
        self.xff: bytes | None = None
        self.xfp: bytes | None = None
        self.xfh: bytes | None = None
        self.request_id: bytes | None = None
        self.peer_trusted = False
        self.peer = ""  # the TCP peer: appended to a trusted chain
        self.client = ""  # the address limits and block lists apply to


def scan_request(headers: Sequence[Header], meta: RequestMeta) -> None:
    """Pick the headers guard itself reads (one pass, lower-casing each name once)."""
    for name, value in headers:
        lname = name.lower()
        if lname == b"host":
            meta.host = value
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


def request_head(
    method: bytes,
    target: bytes,
    headers: Sequence[Header],
    meta: RequestMeta,
    framing: bytes,
) -> bytes:
    """The request head sent to the backend. `framing` is b"" (no body),
    b"Content-Length: N\\r\\n" or b"Transfer-Encoding: chunked\\r\\n"."""
    drop = _REQUEST_DROP if meta.peer_trusted else _UNTRUSTED_DROP
    if meta.connection:
        drop = drop | meta.connection
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    if meta.host is not None:
        out += (b"Host: ", meta.host, b"\r\n")
    for name, value in headers:
        if name.lower() not in drop:
            out += (name, b": ", value, b"\r\n")
    if meta.peer_trusted and meta.xff:
        out += (b"X-Forwarded-For: ", meta.xff, b", ", meta.peer.encode(), b"\r\n")
    else:
        out += (b"X-Forwarded-For: ", meta.client.encode(), b"\r\n")
    proto = meta.xfp if meta.peer_trusted and meta.xfp else b"http"
    out += (b"X-Forwarded-Proto: ", proto, b"\r\n")
    fhost = meta.xfh if meta.peer_trusted and meta.xfh else meta.host
    if fhost:
        out += (b"X-Forwarded-Host: ", fhost, b"\r\n")
    out += (b"X-Request-Id: ", meta.request_id or new_request_id(), b"\r\n", framing, b"\r\n")
    return b"".join(out)


def response_head(
    status: int,
    reason: bytes,
    headers: Sequence[Header],
    framing: bytes,
    close: bool,
    listed: frozenset[bytes] = frozenset(),
) -> bytes:
    """The response head sent to the client, hop-by-hop stripped (with the names `listed`
    in its Connection header), framing re-derived."""
    drop = _RESPONSE_DROP | listed if listed else _RESPONSE_DROP
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", reason or _reason(status), b"\r\n"]
    for name, value in headers:
        if name.lower() not in drop:
            out += (name, b": ", value, b"\r\n")
    if close:
        out.append(b"Connection: close\r\n")
    out += (framing, b"\r\n")
    return b"".join(out)


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


_REASONS = {int(s): s.phrase.encode() for s in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")
