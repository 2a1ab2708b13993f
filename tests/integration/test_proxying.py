"""Proxying through the real guard: headers, streaming, backend faults, disconnects."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import psutil

from tests.support.rawhttp import (
    exchange,
    read_request_head,
    read_response,
    scripted_backend,
)
from tests.support.servers import StartGuard, StartWas, backends_yaml


async def test_forwarding_headers_and_hop_by_hop_stripping(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    raw = (
        b"GET /__was/echo-headers HTTP/1.1\r\nHost: shop.example\r\n"
        b"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"X-Forwarded-Host: evil.example\r\nX-Request-Id: abc-123\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    res = await exchange(guard.port, raw)
    assert res.status == 200
    import json

    seen = {k.lower(): v for k, v in json.loads(res.body)["headers"]}
    for hop in ("x-secret", "keep-alive", "te", "proxy-connection", "upgrade", "http2-settings"):
        assert hop not in seen, hop
    assert seen["host"] == "shop.example"
    assert (
        seen["x-forwarded-for"] == "127.0.0.1"
    )  # the spoofed chain from an untrusted peer is dropped
    assert seen["x-forwarded-host"] == "shop.example"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-request-id"] == "abc-123"
    assert seen["accept-encoding"] == "gzip"  # never decompressed, never rewritten


async def test_response_hop_by_hop_stripped_and_request_id_generated(
    start_guard: StartGuard,
) -> None:
    seen: list[bytes] = []

    async def backend(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(await read_request_head(r))
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Internal\r\n"
            b"X-Internal: secret\r\nKeep-Alive: timeout=3\r\nContent-Encoding: gzip\r\n\r\nok"
        )
        await w.drain()

    server, port = await scripted_backend(backend)
    guard = await start_guard(
        f"backends:\n  - {{name: b, url: 'http://127.0.0.1:{port}', max_active: 5}}\n"
    )
    res = await exchange(guard.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert res.status == 200 and res.body == b"ok"
    names = {k.lower() for k, _ in res.headers}
    assert "x-internal" not in names and "keep-alive" not in names
    assert res.header("Content-Encoding") == "gzip"
    assert b"X-Request-Id: " in seen[0]
    server.close()


async def test_trusted_proxy_chain(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was)
        + "trusted_proxies: [127.0.0.0/8]\n"
        + "rules:\n  - {name: c, path: /c/**, rate: 1/m, burst: 1, per_client: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        h = {"X-Forwarded-For": "198.51.100.7, 127.0.0.2", "X-Forwarded-Proto": "https"}
        async with s.get(f"{guard.url}/__was/echo-headers", headers=h) as r:
            seen = {k.lower(): v for k, v in (await r.json())["headers"]}
        assert seen["x-forwarded-for"] == "198.51.100.7, 127.0.0.2, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "https"
        # per-client buckets key on the rightmost untrusted address
        for ip, expected in (("198.51.100.7", 200), ("198.51.100.7", 429), ("198.51.100.8", 200)):
            async with s.get(f"{guard.url}/c/1", headers={"X-Forwarded-For": ip}) as r:
                assert r.status == expected, ip


async def test_large_download_and_upload_stream_with_flat_memory(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + "client_max_size: 1g\n")
    proc = psutil.Process(os.getpid())
    size = 256 * 1024 * 1024
    async with aiohttp.ClientSession() as s:
        rss_before = proc.memory_info().rss
        got = 0
        async with s.get(f"{guard.url}/__was/bytes?n={size}") as r:
            async for chunk in r.content.iter_chunked(1 << 16):
                got += len(chunk)
        assert got == size

        async def body():  # type: ignore[no-untyped-def]
            block = b"x" * (1 << 16)
            for _ in range(size // len(block)):
                yield block

        async with s.post(f"{guard.url}/__was/sink", data=body()) as r:
            assert (await r.json())["received"] == size
        grown = proc.memory_info().rss - rss_before
    # 512 MiB went through this process (client, guard and WAS); none of it was held.
    assert grown < 48 * 1024 * 1024, grown
    await guard.wait_idle()


async def test_backend_down_retry_then_cooldown(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was("was-2")
    from tests.support.servers import free_port

    dead = free_port()  # nothing listens here
    guard = await start_guard(
        "backends:\n"
        f"  - {{name: was-1, url: 'http://127.0.0.1:{dead}', max_active: 5, cooldown: 60s}}\n"
        f"  - {{name: was-2, url: '{was.url}', max_active: 5}}\n"
    )
    async with aiohttp.ClientSession() as s:
        for _ in range(4):  # GETs are retried on the other backend; never an error
            async with s.get(f"{guard.url}/x") as r:
                assert r.status == 200
    status = await guard.status()
    up = {b["name"]: b["up"] for b in status["backends"]}
    assert up == {"was-1": False, "was-2": True}
    assert (
        'guard_upstream_errors_total{backend="was-1",kind="connect"} 1.0' in await guard.metrics()
    )
    assert 'guard_backend_up{backend="was-1"} 0.0' in await guard.metrics()
    await guard.wait_idle()


async def test_post_is_not_retried(start_guard: StartGuard) -> None:
    from tests.support.servers import free_port

    guard = await start_guard(
        f"backends:\n  - {{name: was-1, url: 'http://127.0.0.1:{free_port()}', max_active: 5}}\n"
    )
    async with aiohttp.ClientSession() as s, s.post(f"{guard.url}/order", data=b"x") as r:
        assert r.status == 502
    await guard.wait_idle()


async def test_read_timeout_gives_504_and_releases(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + "timeouts: {read: 200ms}\n")
    async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/__was/hold") as r:
        assert r.status == 504
    await guard.wait_idle()
    assert 'kind="timeout"} 1.0' in await guard.metrics()
    await was.release()


async def test_backend_closing_mid_body_aborts_the_client_response(start_guard: StartGuard) -> None:
    async def backend(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request_head(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        await w.drain()

    server, port = await scripted_backend(backend)
    guard = await start_guard(
        f"backends:\n  - {{name: b, url: 'http://127.0.0.1:{port}', max_active: 5}}\n"
    )
    res = await exchange(guard.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert res.status == 200 and not res.complete  # never a clean short response
    await guard.wait_idle()
    server.close()


async def test_client_gone_before_headers_keeps_slot_until_backend_answers(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was, max_active=3))
    _reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"GET /__was/hold HTTP/1.1\r\nHost: a\r\n\r\n")
    await writer.drain()
    await was.wait_active(1)
    writer.close()
    await writer.wait_closed()
    # The WAS thread is still busy: the slot stays taken ...
    assert guard.active()["backend:was-1"] == 1
    await was.release()
    # ... and is given back once the backend answered.
    await guard.wait_idle()


async def test_keep_alive_and_pipelining(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(b"".join(b"GET /p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(50)))
    import json

    for i in range(50):
        res = await read_response(reader)
        assert res.status == 200
        assert json.loads(res.body)["raw_path"] == f"/p{i}"  # in order
    writer.close()


async def test_forwarded_header_only_from_trusted_peers(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    import json

    was = await start_was()
    untrusted = await start_guard(backends_yaml(was))
    trusted = await start_guard(backends_yaml(was) + "trusted_proxies: [127.0.0.0/8]\n")
    raw = (
        b"GET /__was/echo-headers HTTP/1.1\r\nHost: a\r\nForwarded: for=6.6.6.6;proto=https\r\n\r\n"
    )
    seen = []
    for guard in (untrusted, trusted):
        res = await exchange(guard.port, raw)
        seen.append({k.lower(): v for k, v in json.loads(res.body)["headers"]})
    assert "forwarded" not in seen[0]
    assert seen[1]["forwarded"] == "for=6.6.6.6;proto=https"
