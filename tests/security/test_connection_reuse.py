"""A pooled backend connection must never carry bytes of one exchange into another.

Regression tests for two desyncs found in review: a backend that answers before reading
the request body (the connection must not be reused: the backend still expects the body,
so the next request would be read as body — request smuggling past a block rule), and a
backend that writes more than one response (the extra bytes must never reach a client).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.support.rawhttp import exchange, read_request_head, scripted_backend
from tests.support.servers import StartGuard


async def test_early_answer_before_the_body_cannot_smuggle_a_request(
    start_guard: StartGuard,
) -> None:
    admin_hits: list[str] = []

    async def needs_login(request: web.Request) -> web.Response:
        return web.Response(status=401, text="login first")  # the body is never read

    async def api(request: web.Request) -> web.Response:
        return web.Response(text=f"api got {len(await request.read())} bytes")

    async def admin(request: web.Request) -> web.Response:
        admin_hits.append(request.path)
        return web.Response(text="TOP SECRET")

    app = web.Application()
    app.router.add_post("/login-required", needs_login)
    app.router.add_post("/api/x", api)
    app.router.add_get("/admin/secret", admin)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        guard = await start_guard(
            f"backends:\n  - {{name: b1, url: 'http://127.0.0.1:{port}', max_active: 10}}\n"
            "rules:\n  - {name: admin, path: /admin/**, block: true}\n"
            "timeouts: {read: 3s}\n"
        )
        smuggled = b"GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n"
        # Exactly the head guard will write for the second request (its request id is kept).
        head2 = (
            b"POST /api/x HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.1\r\n"
            b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\nX-Request-Id: r1\r\n"
            b"Content-Length: %d\r\n\r\n" % len(smuggled)
        )
        first = await exchange(
            guard.port,
            b"POST /login-required HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(head2),
        )
        assert first.status == 401
        second = await exchange(
            guard.port,
            b"POST /api/x HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\n"
            b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled,
        )
        assert second.status == 200
        assert second.body == b"api got %d bytes" % len(smuggled)
        assert admin_hits == []  # the block rule held
        await guard.wait_idle()
    finally:
        await runner.cleanup()


async def test_extra_bytes_after_a_response_never_reach_the_next_client(
    start_guard: StartGuard,
) -> None:
    served = [0]

    async def backend(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request_head(r)
            served[0] += 1
            if served[0] == 1:  # a broken backend writes a second response after the first
                w.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nEVIL"
                )
            else:
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean")
            await w.drain()

    server, port = await scripted_backend(backend)
    guard = await start_guard(
        f"backends:\n  - {{name: b1, url: 'http://127.0.0.1:{port}', max_active: 10}}\n"
    )
    first = await exchange(guard.port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.status == 200 and first.body == b"ok"
    second = await exchange(guard.port, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert second.status == 200 and second.body == b"clean"
    assert b"EVIL" not in second.body
    await guard.wait_idle()
    server.close()
