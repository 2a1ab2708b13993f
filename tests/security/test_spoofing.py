"""Hop-by-hop headers never reach the backend, headers listed in Connection cannot strip
what guard itself sets, and a spoofed X-Forwarded-For from an untrusted peer changes
neither the client address used for per-client limits and block lists nor the chain."""

from __future__ import annotations

import asyncio
import json

from tests.support.rawhttp import exchange, peer_closes, read_response
from tests.support.security import reply
from tests.support.servers import Guard, StartGuard, StartWas, Was, backends_yaml, read_access_log

HOP = ("connection", "keep-alive", "te", "proxy-connection", "upgrade", "http2-settings", "trailer")


async def seen_headers(
    guard: Guard, extra: bytes, check_close: bool = False
) -> tuple[list[tuple[str, str]], bool]:
    """Headers the WAS received for a GET with `extra` header lines; and whether guard
    closed the client connection after answering."""
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"GET /__was/echo-headers HTTP/1.1\r\nHost: shop.example\r\n" + extra + b"\r\n")
    res = await read_response(reader)
    assert res.status == 200, (res.status, res.body[:200])
    closed = await peer_closes(reader, 1.0) if check_close else False
    writer.close()
    return [(k.lower(), v) for k, v in json.loads(res.body)["headers"]], closed


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


async def plain_guard(start_was: StartWas, start_guard: StartGuard, extra: str = "") -> Guard:
    was = await start_was()
    return await start_guard(backends_yaml(was) + extra)


async def test_connection_cannot_strip_the_headers_guard_sets(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    headers, closed = await seen_headers(
        guard,
        b"Connection: close, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, "
        b"X-Request-Id, Host\r\nX-Forwarded-For: 6.6.6.6\r\n",
        check_close=True,
    )
    assert values(headers, "x-forwarded-for") == ["127.0.0.1"]
    assert values(headers, "x-forwarded-proto") == ["http"]
    assert values(headers, "x-forwarded-host") == ["shop.example"]
    assert values(headers, "host") == ["shop.example"]
    assert len(values(headers, "x-request-id")) == 1
    assert values(headers, "connection") == []
    assert closed  # the client asked for close
    await guard.wait_idle()


async def test_connection_listed_custom_header_is_dropped(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    headers, _ = await seen_headers(
        guard, b"Connection: X-Internal-Auth\r\nX-Internal-Auth: admin\r\nX-Keep: 1\r\n"
    )
    assert values(headers, "x-internal-auth") == []
    assert values(headers, "x-keep") == ["1"]


async def test_hop_by_hop_headers_never_reach_the_backend(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    headers, _ = await seen_headers(
        guard,
        b"Connection: keep-alive\r\nKeep-Alive: timeout=600, max=1000\r\nTE: trailers, deflate\r\n"
        b"Proxy-Connection: keep-alive\r\nTrailer: X-Checksum\r\n",
    )
    names = {k for k, _ in headers}
    assert not names & set(HOP), names & set(HOP)
    await guard.wait_idle()


async def test_h2c_upgrade_is_never_forwarded_nor_switched(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(
        b"GET /__was/echo-headers HTTP/1.1\r\nHost: shop.example\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    res = await read_response(reader)
    assert res.status == 200  # never 101: guard speaks HTTP/1.1 only
    headers = [(k.lower(), v) for k, v in json.loads(res.body)["headers"]]
    names = {k for k, _ in headers}
    assert not names & set(HOP), names & set(HOP)
    assert res.header("Upgrade") is None
    writer.close()
    await guard.wait_idle()


async def test_websocket_upgrade_is_not_tunnelled(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    headers, _ = await seen_headers(
        guard,
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    assert values(headers, "upgrade") == [] and values(headers, "connection") == []


async def test_request_after_an_upgrade_request_is_answered_or_the_connection_closed(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """After refusing to switch protocols, the bytes that follow are either parsed as the
    next HTTP/1.1 request or the connection is closed -- never silently swallowed."""
    guard = await plain_guard(start_was, start_guard)
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(
        b"GET /first HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    first = await read_response(reader)
    assert first.status == 200
    second = await reply(reader, 2.0)
    if second.status:
        assert second.status == 200 and json.loads(second.body)["raw_path"] == "/second"
    else:
        assert await peer_closes(reader, 0.5), "the pipelined request was swallowed"
    writer.close()
    await guard.wait_idle()


async def test_spoofed_forwarding_headers_from_untrusted_peer_are_replaced(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    headers, _ = await seen_headers(
        guard,
        b"X-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 192.168.0.1, 10.1.1.1\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: admin.internal\r\n",
    )
    assert values(headers, "x-forwarded-for") == ["127.0.0.1"]
    assert values(headers, "x-forwarded-proto") == ["http"]
    assert values(headers, "x-forwarded-host") == ["shop.example"]


PER_CLIENT = """
rules:
  - {name: c, path: /c/**, rate: 1/m, burst: 1, per_client: true}
"""


async def get_as(guard: Guard, path: str, xff: str) -> int:
    raw = f"GET {path} HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: {xff}\r\n\r\n".encode()
    return (await exchange(guard.port, raw)).status


async def test_spoofed_xff_does_not_buy_a_fresh_per_client_bucket(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard, PER_CLIENT)
    assert await get_as(guard, "/c/1", "198.51.100.1") == 200
    for ip in ("198.51.100.2", "198.51.100.3", "10.0.0.1, 198.51.100.4", "garbage"):
        assert await get_as(guard, "/c/1", ip) == 429, ip  # all the same peer: 127.0.0.1
    log = read_access_log(guard)
    assert {line["client"] for line in log} == {"127.0.0.1"}, log
    await guard.wait_idle()


async def test_spoofed_xff_does_not_escape_a_block_list(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard, "block_ips: [127.0.0.1/32]\n")
    for ip in ("203.0.113.9", "203.0.113.9, 198.51.100.1", "::1"):
        assert await get_as(guard, "/x", ip) == 403, ip
    await guard.wait_idle()


async def test_spoofed_xff_does_not_get_someone_else_blocked(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was: Was = await start_was()
    guard = await start_guard(backends_yaml(was) + "block_ips: [203.0.113.0/24]\n")
    assert await get_as(guard, "/x", "203.0.113.9") == 200
    assert (await was.stats())["served"] == 1
