"""Header rewriting: what reaches the backend and the client, what is refused, and that the
memos behind it stay bounded and never change an answer."""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections.abc import Sequence

import pytest

from guard.proxy.headers import (
    FramingError,
    Header,
    RequestMeta,
    client_address,
    new_request_id,
    request_head,
    response_head,
    response_kept,
    scan_request,
)

# Module-level memos are read (never changed) through the module object.
headers_module = importlib.import_module("guard.proxy.headers")

TRUSTED = [ipaddress.ip_network("10.0.0.0/8")]
HOST = (b"Host", b"shop.example")


def scan(headers: Sequence[Header], version: bytes = b"1.1") -> RequestMeta:
    meta = RequestMeta()
    scan_request(headers, version, meta)
    return meta


def refused(headers: Sequence[Header], version: bytes = b"1.1") -> int:
    with pytest.raises(FramingError) as info:
        scan(headers, version)
    return info.value.status


def head_lines(head: bytes) -> list[bytes]:
    """The header lines of a head, without the request/status line and the blank line."""
    assert head.endswith(b"\r\n\r\n")
    return head[: -len(b"\r\n\r\n")].split(b"\r\n")[1:]


def values(head: bytes, name: bytes) -> list[bytes]:
    prefix = name.lower() + b": "
    return [line[len(prefix) :] for line in head_lines(head) if line.lower().startswith(prefix)]


# --- scan_request -------------------------------------------------------------------------


def test_scan_keeps_end_to_end_headers_in_order_as_received() -> None:
    received = [
        (b"User-Agent", b"Mozilla/5.0"),
        HOST,
        (b"accept-LANGUAGE", b"ko-KR"),
        (b"Cookie", b"a=1"),
        (b"X-Custom", b"  spaced  "),
        (b"Cookie", b"b=2"),
    ]
    meta = scan(received)
    assert meta.kept == [h for h in received if h is not HOST]
    assert meta.host == b"shop.example"


def test_scan_drops_hop_by_hop_and_rederived_headers_and_records_them() -> None:
    meta = scan(
        [
            (b"Accept", b"text/html,application/xhtml+xml;q=0.9"),
            (b"Connection", b"keep-alive"),
            (b"Keep-Alive", b"timeout=5"),
            (b"TE", b"trailers"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"42"),
            (b"HOST", b"shop.example:8080"),
            (b"X-Forwarded-For", b"198.51.100.1"),
            (b"x-forwarded-for", b"198.51.100.2, 198.51.100.3"),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-Host", b"front.example"),
            (b"X-Request-Id", b"abc-123"),
            (b"Expect", b"100-continue"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Upgrade", b"h2c"),
            (b"Trailer", b"X-Checksum"),
            (b"Proxy-Authorization", b"Basic Zm9vOmJhcg=="),
            (b"Referer", b"http://shop.example/"),
        ]
    )
    assert meta.kept == [
        (b"Accept", b"text/html,application/xhtml+xml;q=0.9"),
        (b"Referer", b"http://shop.example/"),
    ]
    assert meta.host == b"shop.example:8080"
    assert meta.content_length == 42
    assert meta.chunked is True
    assert meta.xff == b"198.51.100.1, 198.51.100.2, 198.51.100.3"
    assert meta.xfp == b"https"
    assert meta.xfh == b"front.example"
    assert meta.request_id == b"abc-123"
    assert meta.expect_continue is True
    assert meta.accept_html is True


def test_scan_defaults_when_nothing_is_declared() -> None:
    meta = scan([HOST, (b"Accept", b"application/json")])
    assert meta.content_length is None
    assert meta.chunked is False
    assert meta.xff is None
    assert meta.request_id is None
    assert meta.expect_continue is False
    assert meta.accept_html is False
    assert meta.listed == frozenset()


def test_scan_accepts_case_variants_of_framing_values() -> None:
    meta = scan([HOST, (b"Transfer-Encoding", b" Chunked "), (b"Expect", b"100-Continue")])
    assert meta.chunked is True
    assert meta.expect_continue is True


@pytest.mark.parametrize(
    ("headers", "version", "status"),
    [
        ([HOST, (b"X_Forwarded_For", b"1.2.3.4")], b"1.1", 400),
        ([HOST, (b"content_length", b"5")], b"1.1", 400),
        ([HOST, (b"Accept_", b"*/*")], b"1.0", 400),
        ([HOST, (b"Host", b"shop.example")], b"1.1", 400),
        ([HOST, (b"host", b"other.example")], b"1.0", 400),
        ([(b"Accept", b"*/*")], b"1.1", 400),
        ([(b"Host", b"a.example, b.example")], b"1.1", 400),
        ([(b"Host", b"a.example/x")], b"1.1", 400),
        ([(b"Host", b"a.example x")], b"1.1", 400),
        ([(b"Host", b"user@a.example")], b"1.1", 400),
        ([HOST, (b"Transfer-Encoding", b"chunked")], b"1.0", 400),
        ([HOST, (b"Transfer-Encoding", b"gzip, chunked")], b"1.1", 501),
        ([HOST, (b"Transfer-Encoding", b"identity")], b"1.1", 501),
        ([HOST, (b"Expect", b"200-ok")], b"1.1", 417),
    ],
)
def test_scan_refuses_ambiguous_framing(headers: list[Header], version: bytes, status: int) -> None:
    assert refused(headers, version) == status


def test_scan_allows_missing_host_in_http_1_0_only() -> None:
    meta = scan([(b"Accept", b"*/*")], b"1.0")
    assert meta.host is None
    assert meta.kept == [(b"Accept", b"*/*")]
    assert refused([(b"Accept", b"*/*")], b"1.1") == 400


GOOD_HOSTS = [
    b"shop.example",
    b"shop.example:8080",
    b"127.0.0.1:80",
    b"[::1]:8443",
    b"[2001:db8::1]",
    b"",  # RFC 9112 §3.2: an empty Host when the target has no authority
]


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_scan_accepts_a_single_host_and_port(host: bytes) -> None:
    assert scan([(b"Host", host)]).host == host


def test_underscore_names_are_refused_every_time_even_after_a_response_carried_them() -> None:
    # Responses may carry underscore names (forwarded verbatim), including names of the
    # lengths response_kept lower-cases (14 = len(b"content-length"), 10, 17).
    names = [b"Content_Length", b"content_length", b"X_Secret_1", b"Transfer_Encoding"]
    for name in names:
        block, length, chunked = response_kept([(name, b"5")])
        assert block == name + b": 5\r\n"
        assert (length, chunked) == (None, False)
        # The second response pass (a Connection list) lower-cases every name.
        block, _, _ = response_kept([(name, b"5"), (b"Connection", b"x-other")])
        assert block == name + b": 5\r\n"
    for _ in range(3):
        for name in names:
            assert refused([HOST, (name, b"5")]) == 400
            assert refused([(name, b"5"), HOST]) == 400


def test_host_values_are_judged_the_same_every_time() -> None:
    for _ in range(3):
        assert scan([(b"Host", b"again.example:8443")]).host == b"again.example:8443"
        assert refused([(b"Host", b"again.example/admin")]) == 400
        assert refused([(b"Host", b"again.example, evil.example")]) == 400


def test_scan_lists_connection_tokens_beyond_close_and_keep_alive() -> None:
    assert scan([HOST, (b"Connection", b"close, X-Secret")]).listed == {b"x-secret"}
    assert scan([HOST, (b"Connection", b"Keep-Alive")]).listed == frozenset()
    meta = scan(
        [
            (b"Connection", b"X-A"),
            HOST,
            (b"X-A", b"1"),
            (b"connection", b" x-b , close,X-C"),
        ]
    )
    assert meta.listed == {b"x-a", b"x-b", b"x-c"}


# --- request_head -------------------------------------------------------------------------


def untrusted_meta(headers: Sequence[Header]) -> RequestMeta:
    meta = scan(headers)
    meta.peer = meta.client = "192.0.2.7"
    meta.request_id = meta.request_id or b"rid-1"
    return meta


def test_request_head_simple_get_exact_bytes() -> None:
    meta = untrusted_meta([(b"User-Agent", b"ua"), HOST, (b"Accept", b"*/*")])
    assert request_head(b"GET", b"/a?b=1", meta, b"") == (
        b"GET /a?b=1 HTTP/1.1\r\n"
        b"Host: shop.example\r\n"
        b"User-Agent: ua\r\n"
        b"Accept: */*\r\n"
        b"X-Forwarded-For: 192.0.2.7\r\n"
        b"X-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: shop.example\r\n"
        b"X-Request-Id: rid-1\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize("framing", [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"])
def test_request_head_carries_only_the_framing_guard_derived(framing: bytes) -> None:
    # A smuggling attempt: both framings in the request; the backend sees only guard's.
    meta = untrusted_meta([HOST, (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")])
    head = request_head(b"POST", b"/cart", meta, framing)
    assert head.startswith(b"POST /cart HTTP/1.1\r\nHost: shop.example\r\n")
    assert head.endswith(b"X-Request-Id: rid-1\r\n" + framing + b"\r\n")
    framings = [
        line
        for line in head_lines(head)
        if line.lower().startswith((b"content-length:", b"transfer-encoding:"))
    ]
    assert framings == [framing[: -len(b"\r\n")]]


def test_request_head_keeps_an_incoming_request_id() -> None:
    meta = untrusted_meta([HOST, (b"x-request-id", b"from-client-7")])
    assert values(request_head(b"GET", b"/", meta, b""), b"X-Request-Id") == [b"from-client-7"]


def test_request_head_generates_a_request_id_when_none_came() -> None:
    meta = scan([HOST])
    meta.peer = meta.client = "192.0.2.7"
    first = values(request_head(b"GET", b"/", meta, b""), b"X-Request-Id")
    second = values(request_head(b"GET", b"/", meta, b""), b"X-Request-Id")
    assert len(first) == len(second) == 1
    assert first[0] and second[0] and first != second


def test_request_head_without_host_has_no_host_lines() -> None:
    meta = scan([(b"Accept", b"*/*")], b"1.0")
    meta.peer = meta.client = "192.0.2.7"
    meta.request_id = b"r"
    head = request_head(b"GET", b"/", meta, b"")
    assert head.startswith(b"GET / HTTP/1.1\r\nAccept: */*\r\n")
    assert values(head, b"Host") == []
    assert values(head, b"X-Forwarded-Host") == []


def test_request_head_does_not_forward_headers_listed_in_connection() -> None:
    meta = untrusted_meta(
        [
            (b"X-SECRET", b"s1"),
            HOST,
            (b"Connection", b"close, x-Secret, X-Other"),
            (b"x-secret", b"s2"),
            (b"X-Other", b"o"),
            (b"X-Kept", b"k"),
        ]
    )
    head = request_head(b"GET", b"/", meta, b"")
    assert values(head, b"X-Secret") == []
    assert values(head, b"X-Other") == []
    assert values(head, b"X-Kept") == [b"k"]
    assert values(head, b"Connection") == []


FORWARDING = [
    HOST,
    (b"X-Forwarded-For", b"203.0.113.9"),
    (b"X-Forwarded-For", b"10.1.1.1"),
    (b"X-Forwarded-Proto", b"https"),
    (b"X-Forwarded-Host", b"www.shop.example"),
    (b"Forwarded", b"for=203.0.113.9;proto=https"),
]


def test_request_head_extends_a_trusted_peers_chain() -> None:
    meta = scan(FORWARDING)
    meta.peer_trusted = True
    meta.peer = "10.0.0.2"
    meta.client = "203.0.113.9"
    meta.request_id = b"r"
    head = request_head(b"GET", b"/", meta, b"")
    assert values(head, b"X-Forwarded-For") == [b"203.0.113.9, 10.1.1.1, 10.0.0.2"]
    assert values(head, b"X-Forwarded-Proto") == [b"https"]
    assert values(head, b"X-Forwarded-Host") == [b"www.shop.example"]
    assert values(head, b"Forwarded") == [b"for=203.0.113.9;proto=https"]
    assert values(head, b"Host") == [b"shop.example"]


def test_request_head_trusted_peer_without_a_chain_starts_one() -> None:
    meta = scan([HOST])
    meta.peer_trusted = True
    meta.peer = meta.client = "10.0.0.2"
    meta.request_id = b"r"
    head = request_head(b"GET", b"/", meta, b"")
    assert values(head, b"X-Forwarded-For") == [b"10.0.0.2"]
    assert values(head, b"X-Forwarded-Proto") == [b"http"]
    assert values(head, b"X-Forwarded-Host") == [b"shop.example"]


def test_request_head_replaces_an_untrusted_peers_forwarding_headers() -> None:
    meta = scan(FORWARDING)
    meta.peer = meta.client = "198.51.100.20"
    meta.request_id = b"r"
    head = request_head(b"GET", b"/", meta, b"")
    assert values(head, b"X-Forwarded-For") == [b"198.51.100.20"]
    assert values(head, b"X-Forwarded-Proto") == [b"http"]
    assert values(head, b"X-Forwarded-Host") == [b"shop.example"]
    assert values(head, b"Forwarded") == []
    assert b"203.0.113.9" not in head
    assert b"www.shop.example" not in head


# --- response_kept ------------------------------------------------------------------------


def test_response_kept_forwards_end_to_end_headers_verbatim_in_order() -> None:
    block, length, chunked = response_kept(
        [
            (b"Content-Type", b"text/html; charset=utf-8"),
            (b"Set-Cookie", b"a=1; Path=/"),
            (b"Connection", b"keep-alive"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Set-Cookie", b"b=2"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Trailer", b"X-Checksum"),
            (b"Content-Digest", b"sha-256=:x:"),  # a droppable length, not dropped
            (b"x-CUSTOM", b" v "),
        ]
    )
    assert block == (
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Set-Cookie: a=1; Path=/\r\n"
        b"Set-Cookie: b=2\r\n"
        b"Content-Digest: sha-256=:x:\r\n"
        b"x-CUSTOM:  v \r\n"
    )
    assert length is None
    assert chunked is True


def test_response_kept_parses_content_length() -> None:
    block, length, chunked = response_kept([(b"Content-Length", b"1234"), (b"ETag", b'"e"')])
    assert (block, length, chunked) == (b'ETag: "e"\r\n', 1234, False)


@pytest.mark.parametrize("name", [b"CONTENT-LENGTH", b"content-length", b"Content-length"])
def test_response_kept_recognises_content_length_in_any_case(name: bytes) -> None:
    assert response_kept([(name, b"7"), (b"Vary", b"Accept")]) == (b"Vary: Accept\r\n", 7, False)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"TRANSFER-ENCODING", b"chunked"), (b"KEEP-ALIVE", b"timeout=1"), (b"Vary", b"Accept")],
        [(b"transfer-encoding", b"chunked"), (b"connection", b"close"), (b"Vary", b"Accept")],
        [(b"Vary", b"Accept"), (b"TE", b"trailers"), (b"Transfer-Encoding", b"chunked")],
    ],
)
def test_response_kept_recognises_hop_by_hop_in_any_case(headers: list[Header]) -> None:
    assert response_kept(headers) == (b"Vary: Accept\r\n", None, True)


def test_response_kept_drops_names_listed_in_connection_before_and_after_it() -> None:
    block, length, chunked = response_kept(
        [
            (b"X-Internal", b"secret-1"),
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"3"),
            (b"Connection", b"close, x-internal, X-Debug-Token"),
            (b"X-INTERNAL", b"secret-2"),
            (b"x-debug-token", b"t"),
            (b"X-After", b"1"),
        ]
    )
    assert block == b"Content-Type: text/plain\r\nX-After: 1\r\n"
    assert (length, chunked) == (3, False)


def test_response_kept_accumulates_several_connection_headers() -> None:
    block, _, _ = response_kept(
        [
            (b"X-A", b"1"),
            (b"Connection", b"X-A"),
            (b"X-B", b"2"),
            (b"Connection", b"x-b"),
            (b"X-C", b"3"),
        ]
    )
    assert block == b"X-C: 3\r\n"


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"identity", b"chunked, gzip"])
def test_response_kept_refuses_transfer_codings_guard_cannot_forward(coding: bytes) -> None:
    # guard re-frames responses itself and decodes no transfer coding but chunked: the
    # client would get a coded body without the header that says so. The backend is at fault.
    with pytest.raises(FramingError) as info:
        response_kept([(b"Content-Type", b"text/plain"), (b"Transfer-Encoding", coding)])
    assert info.value.status == 502


# --- response_head ------------------------------------------------------------------------


def test_response_head_exact_bytes() -> None:
    block = b"Content-Type: text/plain\r\n"
    framing = b"Content-Length: 3\r\n"
    assert response_head(200, block, framing, False) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
    )
    assert response_head(200, block, framing, True) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: 3\r\n\r\n"
    )
    assert response_head(204, b"", b"", False) == b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (404, b"HTTP/1.1 404 Not Found\r\n"),
        (503, b"HTTP/1.1 503 Service Unavailable\r\n"),
        (599, b"HTTP/1.1 599 Unknown\r\n"),
    ],
)
def test_response_head_has_the_standard_phrase(status: int, line: bytes) -> None:
    for _ in range(2):  # the second time from the memo
        assert response_head(status, b"", b"Content-Length: 0\r\n", False) == (
            line + b"Content-Length: 0\r\n\r\n"
        )


# --- new_request_id -----------------------------------------------------------------------


def test_request_ids_are_unique_and_share_a_process_prefix() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    # "<8 hex digits of this process>-<hex counter>": a plain token in any header or log.
    assert all(re.fullmatch(rb"[0-9a-f]{8}-[0-9a-f]+", i) for i in ids)
    assert len({i.split(b"-")[0] for i in ids}) == 1


# --- client_address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "peer_trusted", "xff", "expected"),
    [
        ("203.0.113.5", False, None, "203.0.113.5"),
        ("203.0.113.5", False, b"198.51.100.7", "203.0.113.5"),
        ("10.0.0.2", True, None, "10.0.0.2"),
        ("10.0.0.2", True, b"", "10.0.0.2"),
        ("10.0.0.2", True, b"198.51.100.7", "198.51.100.7"),
        ("10.0.0.2", True, b"198.51.100.7, 10.0.0.3", "198.51.100.7"),
        ("10.0.0.2", True, b"1.1.1.1, 198.51.100.7,10.9.9.9", "198.51.100.7"),
        ("10.0.0.2", True, b"198.51.100.7, , 10.0.0.3", "198.51.100.7"),
        ("10.0.0.2", True, b"10.0.0.3, 10.0.0.4", "10.0.0.2"),
        ("10.0.0.2", True, b"2001:db8::1", "2001:db8::1"),
        ("10.0.0.2", True, b"198.51.100.7, not-an-ip", "10.0.0.2"),
        ("10.0.0.2", True, b"evil, 10.0.0.3", "10.0.0.2"),
        ("10.0.0.2", True, b"198.51.100.7:1234", "10.0.0.2"),
    ],
)
def test_client_address(peer: str, peer_trusted: bool, xff: bytes | None, expected: str) -> None:
    assert client_address(peer, peer_trusted, xff, TRUSTED) == expected


# --- memo bounds (keep last: the flood fills the memos for the rest of the session) ------


def test_memos_keep_no_huge_values() -> None:
    # Entries are bounded in number and in size: a few huge ones must not pin megabytes.
    memo_len: int = headers_module._MEMO_LEN
    huge_host = b"h" * 8000 + b".example"
    huge_name = b"X-" + b"n" * 8000
    huge_list = b"close, " + b"x" * 8000
    for _ in range(2):
        meta = scan([(b"Host", huge_host), (huge_name, b"1"), (b"Connection", huge_list)])
        assert meta.host == huge_host and meta.kept == [(huge_name, b"1")]
        assert meta.listed == {b"x" * 8000}
    assert huge_host not in headers_module._GOOD_HOSTS
    assert huge_name not in headers_module._LOWER
    assert huge_list not in headers_module._LISTED
    for memo in (headers_module._GOOD_HOSTS, headers_module._LOWER, headers_module._LISTED):
        assert all(len(key) <= memo_len for key in memo)


def test_memos_stay_bounded_and_answers_stay_right_after_a_flood() -> None:
    memo_max: int = headers_module._MEMO_MAX
    for i in range(5_000):
        name = b"X-Flood-%d" % i
        meta = scan(
            [
                (b"Host", b"h%d.flood.example" % i),
                (name, b"v"),
                (b"Connection", b"close, %s" % name),
            ]
        )
        assert meta.kept == [(name, b"v")]
        assert meta.listed == {name.lower()}
        meta.peer = meta.client = "192.0.2.1"
        assert name not in request_head(b"GET", b"/", meta, b"")
        block, _, _ = response_kept(
            [(b"X-Resp-%06d" % i, b"1"), (b"Connection", b"Y-Flood-%d" % i)]
        )
        assert block == b"X-Resp-%06d: 1\r\n" % i
        status = 100 + i % 500
        assert response_head(status, b"", b"", False).startswith(b"HTTP/1.1 %d " % status)

    assert len(headers_module._LOWER) <= memo_max
    assert len(headers_module._LISTED) <= memo_max
    assert len(headers_module._GOOD_HOSTS) <= memo_max
    assert len(headers_module._STATUS_LINES) <= 256

    # New names, lists, hosts and statuses once every memo is full.
    for _ in range(2):
        meta = scan(
            [
                (b"Host", b"after.flood.example:81"),
                (b"X-After-Flood", b"1"),
                (b"X-Hidden-After", b"2"),
                (b"Connection", b"X-HIDDEN-after"),
                (b"Content-Length", b"9"),
            ]
        )
        assert meta.host == b"after.flood.example:81"
        assert meta.content_length == 9
        assert meta.listed == {b"x-hidden-after"}
        meta.peer = meta.client = "192.0.2.1"
        meta.request_id = b"r"
        head = request_head(b"GET", b"/", meta, b"Content-Length: 9\r\n")
        assert values(head, b"X-After-Flood") == [b"1"]
        assert values(head, b"X-Hidden-After") == []
        assert refused([(b"Host", b"after.flood.example/x")]) == 400
        assert refused([HOST, (b"X_After_Flood", b"1")]) == 400
        assert response_kept(
            [(b"X-Drop-After", b"1"), (b"CONTENT-LENGTH", b"4"), (b"Connection", b"x-drop-after")]
        ) == (b"", 4, False)
        assert response_head(418, b"", b"", True) == (
            b"HTTP/1.1 418 I'm a Teapot\r\nConnection: close\r\n\r\n"
        )
        assert response_head(200, b"", b"", False) == b"HTTP/1.1 200 OK\r\n\r\n"
