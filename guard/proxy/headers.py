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
from collections.abc import Iterable, Sequence
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
SOLD_OUT_HEADER: Final = b"x-guard-room"
"""A backend's "X-Guard-Room: sold-out" (closes a room when enabled): never reaches a client,
whatever the rule, so a shopper cannot learn how to trip it."""
_RESPONSE_DROP: Final = HOP_BY_HOP | {b"content-length", SOLD_OUT_HEADER}
# A response header whose name has none of these lengths is forwarded without a look.
_RESPONSE_DROP_LENGTHS: Final = frozenset(len(name) for name in _RESPONSE_DROP)

_REQUEST_IDS: Final = count(1)
_REQUEST_ID_PREFIX: Final = os.urandom(4).hex().encode() + b"-"
_HOST: Final = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~%!$&'()*+;=]+)(:[0-9]{1,5})?")


def request_drop(strip: Iterable[str]) -> frozenset[bytes]:
    """The request headers never forwarded as received: those guard re-derives, plus the
    configured `strip_headers` (headers a WAS may trust, such as X-Real-IP)."""
    return _REQUEST_DROP | {name.lower().encode("latin-1") for name in strip}


DEFAULT_DROP: Final = request_drop(
    (
        "x-real-ip",
        "true-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-forwarded-port",
        "x-forwarded-prefix",
    )
)


def absolute_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form request-target (http[s]://host[:port]/...), which
    wins over Host (RFC 9112 §3.2.2); None for any other form. An authority that is not one
    host[:port] (userinfo, a list, spaces) raises FramingError(400), as a bad Host does."""
    scheme = target[:8].lower()
    if scheme.startswith(b"http://"):
        rest = target[7:]
    elif scheme.startswith(b"https://"):
        rest = target[8:]
    else:
        return None
    end = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    if not _HOST.fullmatch(authority):
        raise FramingError(400)
    return authority


def backend_authority(host: str, port: int) -> bytes:
    """host:port of a backend, as the Host of a request that came without one."""
    if ":" in host:
        return b"[%s]:%d" % (host.encode("latin-1"), port)
    return b"%s:%d" % (host.encode("latin-1"), port)


def new_request_id() -> bytes:
    """Unique within the fleet with high probability; cheap (no uuid4 syscall per request)."""
    return _REQUEST_ID_PREFIX + b"%x" % next(_REQUEST_IDS)


# Per-request work remembered across requests: a site sees few distinct header names,
# Connection values and Host values. Each memo is bounded in entries and in the length of
# what it keeps; a full memo is cleared (as admission's block cache is), so junk cannot
# crowd real values out for good, and a flood of new or huge ones only costs computing.
_MEMO_MAX: Final = 1024
_MEMO_LEN: Final = 256  # bytes; real names, hosts and Connection values are far shorter
_LOWER: Final[dict[bytes, bytes]] = {}  # header name as received -> lower case
_LISTED: Final[dict[bytes, frozenset[bytes]]] = {}  # Connection value -> extra names it lists
_GOOD_HOSTS: Final[set[bytes]] = set()  # Host values that passed _HOST


def _lower(name: bytes) -> bytes:
    """name.lower(). Names with "_" are never remembered: scan_request refuses them in
    requests on a miss of _LOWER, so a miss must happen every time."""
    lname = _LOWER.get(name)
    if lname is None:
        lname = name.lower()
        if len(name) <= _MEMO_LEN and b"_" not in name:
            if len(_LOWER) >= _MEMO_MAX:
                _LOWER.clear()
            _LOWER[name] = lname
    return lname


def _listed(value: bytes) -> frozenset[bytes]:
    """The names a Connection header declares hop-by-hop, beyond those always dropped
    (nearly always none: "keep-alive", "close")."""
    found = _LISTED.get(value)
    if found is None:
        tokens = frozenset(t.strip().lower() for t in value.split(b",") if t.strip())
        found = tokens - _HOP_TOKENS
        if len(value) <= _MEMO_LEN:
            if len(_LISTED) >= _MEMO_MAX:
                _LISTED.clear()
            _LISTED[value] = found
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
        "backend_host",
        "chunked",
        "client",
        "content_length",
        "expect_continue",
        "forwarded",
        "host",
        "kept",
        "listed",
        "peer",
        "peer_trusted",
        "request_id",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self) -> None:
        self.host: bytes | None = None
        self.backend_host = b""  # Host for a request without one (HTTP/1.0): the backend's
        self.listed: frozenset[bytes] = frozenset()  # extra hop-by-hop names (Connection)
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


def scan_request(
    headers: Sequence[Header],
    version: bytes,
    meta: RequestMeta,
    drop: frozenset[bytes] = DEFAULT_DROP,
) -> None:
    """One pass over the request headers: framing checks (raising FramingError), the values
    guard reads, and the headers it forwards as-is (all but those in `drop`, see
    request_drop)."""
    hosts = 0
    kept = meta.kept
    for header in headers:
        name, value = header
        lname = _LOWER.get(name)
        if lname is None:
            if b"_" in name:
                raise FramingError(400)  # ambiguous with "-" after CGI-style normalisation
            lname = _lower(name)
        if lname not in drop:
            if lname == b"forwarded":
                meta.forwarded.append(value)
            else:
                kept.append(header)
                if lname == b"accept":
                    # find(), not `in`: bytes' `in` tries an int first and clears a TypeError.
                    meta.accept_html = value.find(b"text/html") >= 0
        elif lname == b"host":
            hosts += 1
            if value and value not in _GOOD_HOSTS:
                if not _HOST.fullmatch(value):
                    raise FramingError(400)  # one host[:port], never a list or anything else
                if len(value) <= _MEMO_LEN:
                    if len(_GOOD_HOSTS) >= _MEMO_MAX:
                        _GOOD_HOSTS.clear()
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
            meta.expect_continue = version == b"1.1"  # never to 1.0 (RFC 9110 §15.2)
        elif lname == b"x-forwarded-for":
            meta.xff = value if meta.xff is None else meta.xff + b", " + value
        elif lname == b"x-request-id":
            meta.request_id = value
        elif lname == b"x-forwarded-proto":
            meta.xfp = value
        elif lname == b"x-forwarded-host":
            meta.xfh = value
        elif lname == b"connection":
            extra = _listed(value)
            if extra:
                meta.listed = meta.listed | extra
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        raise FramingError(400)


def request_head(method: bytes, target: bytes, meta: RequestMeta, framing: bytes) -> bytes:
    """The request head sent to the backend. `framing` is b"" (no body),
    b"Content-Length: N\r\n" or b"Transfer-Encoding: chunked\r\n"."""
    # Appends, not `out += (...)`: compiled, each tuple would be built and then copied.
    out = [method, b" ", target]
    host = meta.host if meta.host is not None else meta.backend_host or None
    if host is not None:
        out.append(b" HTTP/1.1\r\nHost: ")
        out.append(host)
        out.append(b"\r\n")
    else:
        out.append(b" HTTP/1.1\r\n")
    listed = meta.listed
    for name, value in meta.kept:
        if not listed or _lower(name) not in listed:
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(b"\r\n")
    trusted = meta.peer_trusted
    if trusted:
        for value in meta.forwarded:
            out.append(b"Forwarded: ")
            out.append(value)
            out.append(b"\r\n")
    out.append(b"X-Forwarded-For: ")
    if trusted and meta.xff:
        out.append(meta.xff)
        out.append(b", ")
        out.append(meta.peer.encode())
    else:
        out.append(meta.client.encode())
    if trusted and meta.xfp:
        out.append(b"\r\nX-Forwarded-Proto: ")
        out.append(meta.xfp)
    else:
        out.append(b"\r\nX-Forwarded-Proto: http")
    fhost = meta.xfh if trusted and meta.xfh else meta.host
    if fhost:
        out.append(b"\r\nX-Forwarded-Host: ")
        out.append(fhost)
    out.append(b"\r\nX-Request-Id: ")
    out.append(meta.request_id or new_request_id())
    if framing:
        out.append(b"\r\n")
        out.append(framing)
        out.append(b"\r\n")
    else:
        out.append(b"\r\n\r\n")
    return b"".join(out)


def response_kept(headers: Sequence[Header]) -> tuple[bytes, int | None, bool]:
    """response_parts() without the sold-out flag."""
    block, length, chunked, _ = response_parts(headers)
    return block, length, chunked


def response_parts(headers: Sequence[Header]) -> tuple[bytes, int | None, bool, bool]:
    """One pass over a response head: (the end-to-end headers as one block of
    "Name: value\r\n" lines, forwarded as received; Content-Length; chunked; whether the
    backend said "X-Guard-Room: sold-out"). Hop-by-hop headers, those the Connection
    header lists, the framing and X-Guard-Room are left out. A transfer coding other than
    chunked raises FramingError(502)."""
    out: list[bytes] = []
    listed: frozenset[bytes] = frozenset()
    length: int | None = None
    chunked = False
    sold_out = False
    for name, value in headers:
        lname = _lower(name) if len(name) in _RESPONSE_DROP_LENGTHS else b""
        if lname not in _RESPONSE_DROP:
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(b"\r\n")
        elif lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                # Another transfer coding is hop-by-hop and guard does not decode it: the
                # client would get a coded body without the header that says so.
                raise FramingError(502)
            chunked = True
        elif lname == b"connection":
            extra = _listed(value)
            if extra:
                listed = listed | extra
        elif lname == SOLD_OUT_HEADER:
            sold_out = sold_out or value.strip().lower() == b"sold-out"
    if listed:  # rare (cold path): names Connection declares hop-by-hop, maybe listed after
        out = []
        for name, value in headers:
            lname = _lower(name)
            if lname not in _RESPONSE_DROP and lname not in listed:
                out += (name, b": ", value, b"\r\n")
    return b"".join(out), length, chunked, sold_out


_STATUS_LINES: Final[dict[int, bytes]] = {}


def response_head(
    status: int, block: bytes, framing: bytes, close: bool, version: bytes = b"1.1"
) -> bytes:
    """The response head sent to the client: the status line (with the standard reason
    phrase: clients ignore the backend's), `block` (from response_kept), and the framing
    re-derived by guard. An HTTP/1.0 client is told when the connection stays open (it
    assumes close otherwise)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))
        if len(_STATUS_LINES) < 256:  # a backend's few statuses in practice
            _STATUS_LINES[status] = line
    if close:
        return b"".join((line, block, b"Connection: close\r\n", framing, b"\r\n"))
    if version == b"1.0":
        return b"".join((line, block, b"Connection: keep-alive\r\n", framing, b"\r\n"))
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


def session_cookies(
    kept: list[Header], names: tuple[bytes, ...], own: bytes | None
) -> tuple[bytes | None, bytes | None]:
    """(guard's affinity cookie ``own``, the first session cookie among ``names``) of the
    request's Cookie headers, each None when absent. ``own`` is removed from the headers
    the backend receives (HAProxy's ``indirect``): it is guard's, not the application's.
    Called only when some backend has a route."""
    own_value: bytes | None = None
    session: bytes | None = None
    emptied = False
    for index in range(len(kept)):
        name, value = kept[index]
        if len(name) != 6 or name.lower() != b"cookie":
            continue
        pairs = [pair.strip() for pair in value.split(b";")]
        mine = False
        for pair in pairs:
            key, _, val = pair.partition(b"=")
            if own is not None and key == own:
                own_value, mine = val, True
            elif session is None and key in names:
                session = val
        if mine:
            rest = b"; ".join([p for p in pairs if p.partition(b"=")[0] != own])
            kept[index] = (name, rest)
            emptied = emptied or not rest
    if emptied:
        kept[:] = [h for h in kept if h[1] or len(h[0]) != 6 or h[0].lower() != b"cookie"]
    return own_value, session
