"""Broken backends: refused, silent, hanging mid-response, dying mid-body, malformed framing.

Every case ends with the active counts back at exactly 0, and the failure counted under
guard_upstream_errors_total with the right kind. Non-idempotent requests are never retried:
scripted backends count their connections to prove it.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.faults import (
    Backend,
    StartBackend,
    metric,
    one_backend,
    read_head,
    read_head_then,
    rst_close,
)
from tests.support.polling import poll
from tests.support.rawhttp import RawResponse, exchange, read_response
from tests.support.servers import StartGuard, StartWas, free_port

FAST = "timeouts: {read: 300ms, shutdown: 1s}\n"
ERRORS = "guard_upstream_errors_total"


def raw(method: str, path: str = "/x", body: bytes = b"", version: str = "1.1") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: shop\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def read_request(b: Backend, r: asyncio.StreamReader) -> bytes:
    """The head and, when it announces one, the Content-Length body."""
    head = await read_head(b, r)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await r.readexactly(int(line.split(b":")[1]))
    return head


async def exchange_head(port: int, data: bytes, head: bool) -> RawResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await read_response(reader, head_request=head)
    finally:
        writer.close()


# -- connection refused -----------------------------------------------------------------


async def test_refused_connection_post_502_idempotent_retried_elsewhere(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    live = await start_was("live")
    dead = free_port()  # nothing listens: connect is refused
    guard = await start_guard(
        "backends:\n"
        f"  - {{name: dead, url: 'http://127.0.0.1:{dead}', max_active: 5, cooldown: 0s}}\n"
        f"  - {{name: live, url: '{live.url}', max_active: 5}}\n" + FAST
    )
    # cooldown 0: the dead backend stays in the round robin, so half the requests try it.
    posts = [(await exchange(guard.port, raw("POST", body=b"order"))).status for _ in range(4)]
    assert sorted(posts) == [200, 200, 502, 502], posts
    assert (await live.stats())["served"] == 2  # no POST went on to the live backend
    await guard.wait_idle()

    for method in ("GET", "HEAD", "OPTIONS", "GET", "HEAD", "OPTIONS"):
        res = await exchange_head(guard.port, raw(method), method == "HEAD")
        assert res.status == 200 and res.complete, method
    assert (await live.stats())["served"] == 2 + 6
    text = await guard.metrics()
    assert metric(text, ERRORS, backend="dead", kind="connect") >= 2 + 3
    assert metric(text, ERRORS, backend="live", kind="connect") == 0
    await guard.wait_idle()


# -- POST is never retried ---------------------------------------------------------------


async def _close_after_head(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(b, r)  # then close without a word (FIN)


async def _reset_after_head(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(b, r)
    rst_close(w)


async def _silent(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(b, r)
    await b.hang_until_closed(r)


@pytest.mark.parametrize(
    ("script", "status", "kind"),
    [
        (_close_after_head, 502, "reset"),
        (_reset_after_head, 502, "reset"),
        (_silent, 504, "timeout"),
    ],
    ids=["fin", "rst", "silent"],
)
async def test_post_is_never_retried(
    start_guard: StartGuard, backend: StartBackend, script: object, status: int, kind: str
) -> None:
    one, two = await backend(script, "one"), await backend(script, "two")
    guard = await start_guard("backends:\n" + one.yaml() + two.yaml() + FAST)
    res = await exchange(guard.port, raw("POST", "/order", b"pay=1"))
    assert res.status == status
    assert one.connections + two.connections == 1  # one attempt, on one backend, ever
    text = await guard.metrics()
    assert sum(metric(text, ERRORS, backend=n, kind=kind) for n in ("one", "two")) == 1
    await guard.wait_idle()


async def test_stale_keepalive_post_not_retried_get_retried(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    """The backend closes a pooled connection just as the next request arrives on it."""

    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if b.connections == 1:  # the first connection serves one request, then dies
            await read_request(b, r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await w.drain()
            await read_request(b, r)
            return
        while True:
            await read_request(b, r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await w.drain()

    for method, status, connections in (("POST", 502, 1), ("GET", 200, 2)):
        b = await backend(script)
        guard = await start_guard(one_backend(b) + FAST)
        assert (await exchange(guard.port, raw("GET"))).status == 200  # pools the connection
        res = await exchange(guard.port, raw(method, body=b"x" if method == "POST" else b""))
        assert (method, res.status) == (method, status)
        assert b.connections == connections, method
        await guard.wait_idle()


# -- accepts and never answers --------------------------------------------------------------


async def test_silent_backend_gives_504_after_read_timeout(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    b = await backend(_silent)
    guard = await start_guard(one_backend(b) + FAST)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(exchange(guard.port, raw("GET")))
    await poll(lambda: guard.active()["site"] == 1)
    res = await task
    elapsed = loop.time() - started
    assert res.status == 504 and res.complete
    assert 0.29 <= elapsed < 3.0, elapsed  # not before timeouts.read, not much after
    await b.wait_guard_closed()  # the upstream connection is closed, not pooled
    assert metric(await guard.metrics(), ERRORS, backend="b", kind="timeout") == 1
    await guard.wait_idle()


# -- answers the head, then hangs ------------------------------------------------------------

HANGING_HEADS = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n" + b"x" * 10 + b"\r\n",
}


@pytest.mark.parametrize("framing", sorted(HANGING_HEADS))
async def test_head_then_hang_aborts_client_after_read_timeout(
    start_guard: StartGuard, backend: StartBackend, framing: str
) -> None:
    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(b, r)
        w.write(HANGING_HEADS[framing])
        await w.drain()
        await b.hang_until_closed(r)

    b = await backend(script)
    guard = await start_guard(one_backend(b) + FAST)
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    started = loop.time()
    writer.write(raw("GET"))
    res = await read_response(reader, timeout=5.0)
    elapsed = loop.time() - started
    writer.close()
    assert res.status == 200
    assert not res.complete, "a hung backend must never look like a complete response"
    assert len(res.body) <= 10
    assert 0.29 <= elapsed < 3.0, elapsed
    await b.wait_guard_closed()
    assert metric(await guard.metrics(), ERRORS, backend="b", kind="timeout") == 1
    await guard.wait_idle()


# -- closes mid-body ---------------------------------------------------------------------

PARTIAL = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n"
    + b"x" * 100
    + b"\r\n",
    "close-delimited": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 100,
}
CASES = [
    ("content-length", "fin"),
    ("content-length", "rst"),
    ("chunked", "fin"),
    ("chunked", "rst"),
    ("close-delimited", "rst"),  # with FIN this is a complete response (next test)
]


@pytest.mark.parametrize(("framing", "close"), CASES, ids=[f"{f}-{c}" for f, c in CASES])
@pytest.mark.parametrize("client", ["1.1", "1.0"])
async def test_backend_dies_mid_body_client_sees_an_aborted_response(
    start_guard: StartGuard, backend: StartBackend, framing: str, close: str, client: str
) -> None:
    go = asyncio.Event()

    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(b, r)
        w.write(PARTIAL[framing])
        await w.drain()
        await go.wait()  # die only once guard has sent the head on
        if close == "rst":
            rst_close(w)

    b = await backend(script)
    guard = await start_guard(one_backend(b) + FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(raw("GET", version=client))
    res = await read_head_then(reader, go.set)
    writer.close()
    assert res.status == 200
    assert not res.complete, f"clean short response: {res.headers} {len(res.body)} bytes"
    assert res.body == b"x" * len(res.body) and len(res.body) <= 100
    assert metric(await guard.metrics(), ERRORS, backend="b", kind="reset") == 1
    await guard.wait_idle()


async def test_close_delimited_body_ended_by_fin_is_complete(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    """The counterpart: a FIN is the legitimate end of a close-delimited body."""

    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(b, r)
        w.write(PARTIAL["close-delimited"])
        await w.drain()

    b = await backend(script)
    guard = await start_guard(one_backend(b) + FAST)
    res = await exchange(guard.port, raw("GET"))
    assert res.status == 200 and res.complete and res.body == b"x" * 100
    assert metric(await guard.metrics(), ERRORS, backend="b", kind="reset") == 0
    await guard.wait_idle()


# -- malformed framing from the backend ------------------------------------------------------

MALFORMED = {
    "duplicate-content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"
    ),
    "content-length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "garbage-status-line": b"HTTP/1.1 2xx OK\r\nContent-Length: 2\r\n\r\nok",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
    # Transfer codings other than chunked are hop-by-hop and guard does not decode them:
    # forwarding the coded body without its header would hand the client garbage.
    "transfer-coding-gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    "transfer-coding-gzip-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_response_framing_is_502_protocol(
    start_guard: StartGuard, backend: StartBackend, case: str
) -> None:
    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(b, r)
        w.write(MALFORMED[case])
        await w.drain()
        await b.hang_until_closed(r)

    b = await backend(script)
    guard = await start_guard(one_backend(b) + FAST)
    res = await exchange(guard.port, raw("POST", "/order", b"pay=1"))
    assert res.status == 502 and res.complete
    assert b"ok" not in res.body
    assert b.connections == 1  # not retried
    await b.wait_guard_closed()  # a connection that spoke nonsense is never pooled
    text = await guard.metrics()
    assert metric(text, ERRORS, backend="b", kind="protocol") == 1
    await guard.wait_idle()


async def test_bad_chunk_mid_body_aborts_client_and_counts_protocol(
    start_guard: StartGuard, backend: StartBackend
) -> None:
    go = asyncio.Event()

    async def script(b: Backend, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(b, r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
        await w.drain()
        await go.wait()
        w.write(b"zz\r\nnonsense\r\n")
        await w.drain()
        await b.hang_until_closed(r)

    b = await backend(script)
    guard = await start_guard(one_backend(b) + FAST)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(raw("GET"))
    res = await read_head_then(reader, go.set)
    writer.close()
    assert res.status == 200 and not res.complete
    assert b"nonsense" not in res.body
    await b.wait_guard_closed()
    assert metric(await guard.metrics(), ERRORS, backend="b", kind="protocol") == 1
    await guard.wait_idle()
