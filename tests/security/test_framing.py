"""Request framing that two HTTP parsers could read differently (request smuggling) and
malformed heads: guard answers 400/501/505/417 itself (RFC 9112), closes the connection
where the message boundary is lost, and never forwards a byte to the backend."""

from __future__ import annotations

import json

import pytest

from tests.support.rawhttp import RecordingBackend, exchange
from tests.support.security import assert_refused, recorder_yaml
from tests.support.servers import StartGuard

POST = b"POST /event/a HTTP/1.1\r\nHost: shop.example\r\n"
SMUGGLED = b"GET /admin/secret HTTP/1.1\r\nHost: shop.example\r\n\r\n"
CHUNKED_BODY = b"2\r\nab\r\n0\r\n\r\n"
EVENT_RULES = """
rules:
  - {name: admin, path: /admin/**, block: true}
  - {name: event, path: /event/**, max_active: 10}
"""


def te(value: bytes) -> bytes:
    return POST + b"Transfer-Encoding: " + value + b"\r\n\r\n" + CHUNKED_BODY + SMUGGLED


def chunk(size: bytes) -> bytes:
    return POST + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\nab\r\n0\r\n\r\n" + SMUGGLED


# (id, raw request, accepted statuses). Every one of these loses the message boundary, so
# the connection must be closed after the answer (RFC 9112 §6.3, §7.1, §11.2).
FRAMING = [
    (
        "cl-then-te",
        POST
        + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"0\r\n\r\nX"
        + SMUGGLED,
        {400},
    ),
    (
        "te-then-cl",
        POST
        + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
        + CHUNKED_BODY
        + SMUGGLED,
        {400},
    ),
    # chunked applied twice / not final / unknown coding: 400 (length undeterminable,
    # RFC 9112 §6.3 p4) or 501 (coding not understood, §6.1); always closed.
    ("te-chunked-chunked", te(b"chunked, chunked"), {400, 501}),
    (
        "te-two-lines",
        POST
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        + CHUNKED_BODY
        + SMUGGLED,
        {400, 501},
    ),
    ("te-xchunked", te(b"xchunked"), {400, 501}),
    ("te-chunked-identity", te(b"chunked, identity"), {400, 501}),
    ("te-identity", te(b"identity"), {400, 501}),
    ("te-gzip-chunked", te(b"gzip, chunked"), {400, 501}),
    ("te-chunked-comma", te(b"chunked,"), {400, 501}),
    ("te-vertical-tab", te(b"\x0bchunked"), {400, 501}),
    (
        "http10-chunked",
        b"POST /event/a HTTP/1.0\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n"
        + CHUNKED_BODY
        + SMUGGLED,
        {400},
    ),
    (
        "http10-chunked-and-cl",
        b"POST /event/a HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY + SMUGGLED,
        {400},
    ),
    (
        "cl-duplicate-different",
        POST + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\nab" + SMUGGLED,
        {400},
    ),
    (
        "cl-duplicate-same",
        POST + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nab" + SMUGGLED,
        {400},
    ),
    ("cl-list", POST + b"Content-Length: 2, 2\r\n\r\nab" + SMUGGLED, {400}),
    ("cl-plus", POST + b"Content-Length: +2\r\n\r\nab" + SMUGGLED, {400}),
    ("cl-negative", POST + b"Content-Length: -1\r\n\r\nab" + SMUGGLED, {400}),
    ("cl-hex", POST + b"Content-Length: 0x2\r\n\r\nab" + SMUGGLED, {400}),
    ("cl-space-before-colon", POST + b"Content-Length : 2\r\n\r\nab" + SMUGGLED, {400}),
    ("te-space-before-colon", POST + b"Transfer-Encoding : chunked\r\n\r\n" + CHUNKED_BODY, {400}),
    ("chunk-size-0x2", chunk(b"0x2"), {400}),
    ("chunk-size-plus", chunk(b"+2"), {400}),
    ("chunk-size-underscore", chunk(b"1_0"), {400}),
    ("chunk-size-2**64", chunk(b"10000000000000000"), {400}),
    ("chunk-size-2**64+2", chunk(b"10000000000000002"), {400}),
    ("chunk-size-negative", chunk(b"-2"), {400}),
    ("chunk-size-space", chunk(b" 2"), {400}),
    ("chunk-size-empty", chunk(b""), {400}),
    (
        "chunk-data-too-long",
        POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n" + SMUGGLED,
        {400},
    ),
    (
        "chunk-bare-lf",
        POST + b"Transfer-Encoding: chunked\r\n\r\n2\nab\n0\n\n" + SMUGGLED,
        {400},
    ),
    (
        "chunk-ext-bare-cr",
        POST + b"Transfer-Encoding: chunked\r\n\r\n2;a\rb\r\nab\r\n0\r\n\r\n" + SMUGGLED,
        {400},
    ),
]

# Malformed heads: 400 and never forwarded; closing is allowed but not required.
HEADS = [
    ("host-duplicate", b"GET /event/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("host-missing-1.1", b"GET /event/a HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("host-list", b"GET /event/a HTTP/1.1\r\nHost: a, b\r\n\r\n", {400}),
    ("bare-cr-in-value", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", {400}),
    ("bare-cr-line-end", b"GET /event/a HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", {400}),
    ("bare-cr-request-line", b"GET /event/a\rHTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("nul-in-value", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", {400}),
    ("nul-in-name", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n", {400}),
    ("nul-in-target", b"GET /event/a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("obs-fold", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", {400}),
    ("obs-fold-tab", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", {400}),
    ("space-before-colon", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", {400}),
    ("tab-before-colon", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", {400}),
    ("leading-space-first-header", b"GET /event/a HTTP/1.1\r\n Host: a\r\n\r\n", {400}),
    (
        "underscore-name",
        b"GET /event/a HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",
        {400},
    ),
    ("underscore-cl", POST + b"Content_Length: 2\r\n\r\nab", {400}),
    ("empty-header-name", b"GET /event/a HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", {400}),
    ("del-in-name", b"GET /event/a HTTP/1.1\r\nHost: a\r\nX\x7fA: b\r\n\r\n", {400}),
    ("http-2.0", b"GET /event/a HTTP/2.0\r\nHost: a\r\n\r\n", {505}),
    ("http-3.0", b"GET /event/a HTTP/3.0\r\nHost: a\r\n\r\n", {505}),
    ("http-0.9", b"GET /event/a\r\n\r\n", {400, 505}),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}),
    ("garbage-version", b"GET /event/a HTTX/1.1\r\nHost: a\r\n\r\n", {400}),
    ("expect-unknown", POST + b"Content-Length: 2\r\nExpect: 200-ok\r\n\r\nab", {417}),
]


@pytest.mark.parametrize(("raw", "statuses"), [c[1:] for c in FRAMING], ids=[c[0] for c in FRAMING])
async def test_ambiguous_framing_refused_closed_never_forwarded(
    start_guard: StartGuard, recorder: RecordingBackend, raw: bytes, statuses: set[int]
) -> None:
    guard = await start_guard(recorder_yaml(recorder, EVENT_RULES))
    await assert_refused(guard, recorder, raw, statuses, must_close=True)
    status = await guard.status()
    counts = {r["name"]: r["counts"] for r in status["rules"]}
    assert counts["event"].get("admitted", 0) == 0
    assert counts["admin"].get("blocked", 0) == 0  # the smuggled request was never parsed


@pytest.mark.parametrize(("raw", "statuses"), [c[1:] for c in HEADS], ids=[c[0] for c in HEADS])
async def test_malformed_head_refused_never_forwarded(
    start_guard: StartGuard, recorder: RecordingBackend, raw: bytes, statuses: set[int]
) -> None:
    guard = await start_guard(recorder_yaml(recorder, EVENT_RULES))
    await assert_refused(guard, recorder, raw, statuses, must_close=False)


async def test_well_formed_bodies_do_reach_the_backend(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    """Control for the refusals above: the same requests, well framed, are forwarded with
    guard's own framing and the smuggled-looking tail is just the next request."""
    guard = await start_guard(recorder_yaml(recorder, EVENT_RULES))
    res = await exchange(guard.port, POST + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY)
    assert res.status == 200
    seen = json.loads(res.body)
    assert seen["target"] == "/event/a" and seen["body"] == 2
    res = await exchange(guard.port, POST + b"Content-Length: 2\r\n\r\nab")
    assert res.status == 200 and json.loads(res.body)["body"] == 2
    assert backend_lines(recorder).count(b"content-length: 2") == 1
    await guard.wait_idle()


def backend_lines(backend: RecordingBackend) -> list[bytes]:
    return [line.lower() for line in bytes(backend.received).split(b"\r\n")]
