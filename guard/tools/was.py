"""A simulated WAS (Tomcat-like) for the demo, the tests and the benchmark.

The model is a thread pool: ``workers`` slots (an ``asyncio.Semaphore``). A request
waits for a free slot -- so an overloaded WAS queues and slows down like a real one --
then holds it for ``service_time`` seconds (``?ms=NNN`` overrides it per request).

Endpoints (any method unless noted):

- ``/<anything>``            echo: name, method, the raw request-target, selected headers
- ``GET /__was/stats``       ``{"name", "active", "max_seen_active", "served", "queued", ...}``
- ``POST /__was/reset``      reset ``max_seen_active`` (to the current ``active``) and ``served``
- ``/__was/echo-headers``    every received header as ``[[name, value], ...]`` (duplicates kept)
- ``/__was/bytes?n=N``       streams N bytes in 64 KiB chunks (never holds N in memory)
- ``POST /__was/sink``       consumes a streamed body, answers ``{"received": n}``
- ``/__was/hold``            holds a slot until ``POST /__was/release``, which frees every
  request that arrived in /__was/hold before it (queued ones pass once they get a slot)
- ``GET /__was/wait?active=N&timeout=S``  answers once ``active >= N`` (504 after S seconds)
- ``/__was/slow-headers?ms=N``  waits N ms before sending the response headers

``active`` counts every request inside the WAS (queued or working) until its handler
returns; it is what guard must keep at or below a backend's ``max_active``. The control
endpoints (stats, reset, release, wait) take no slot and are not counted.

Run: ``python -m guard.tools.was --port 8081 --workers 20 --service-time 0.05 --name was-1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CHUNK = 64 * 1024
ECHOED_HEADERS = (
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Request-Id",
    "Connection",
    "Content-Length",
    "Transfer-Encoding",
    "User-Agent",
)


@dataclass
class WasState:
    """Live counters of one simulated WAS. Single event loop, so plain ints are safe."""

    name: str
    workers: int
    service_time: float
    slots: asyncio.Semaphore
    active: int = 0
    max_seen_active: int = 0
    busy: int = 0
    queued: int = 0
    held: int = 0
    served: int = 0
    release_event: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workers": self.workers,
            "active": self.active,
            "max_seen_active": self.max_seen_active,
            "busy": self.busy,
            "queued": self.queued,
            "held": self.held,
            "served": self.served,
        }

    def release_all(self) -> int:
        """Free every request that arrived in /__was/hold so far; later ones wait for the next."""
        released = self.held
        event, self.release_event = self.release_event, asyncio.Event()
        event.set()
        return released

    def _wake_waiters(self) -> None:
        still: list[tuple[int, asyncio.Future[None]]] = []
        for threshold, fut in self.waiters:
            if fut.done():
                continue
            if self.active >= threshold:
                fut.set_result(None)
            else:
                still.append((threshold, fut))
        self.waiters = still

    @contextlib.asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        """Count the request as active, wait for a worker slot, hold it until the block ends."""
        self.active += 1
        self.max_seen_active = max(self.max_seen_active, self.active)
        self._wake_waiters()
        self.queued += 1
        queued = True
        try:
            await self.slots.acquire()
            self.queued -= 1
            queued = False
            self.busy += 1
            try:
                yield
                self.served += 1
            finally:
                self.busy -= 1
                self.slots.release()
        finally:
            if queued:
                self.queued -= 1
            self.active -= 1


STATE: web.AppKey[WasState] = web.AppKey("was_state", WasState)


def _query_float(request: web.Request, key: str, default: float) -> float:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{key} must be a number\n") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"{key} must be >= 0\n")
    return value


def _delay(request: web.Request, default: float) -> float:
    """Seconds to hold the slot: ``?ms=NNN`` if given, else ``default``."""
    return _query_float(request, "ms", default * 1000.0) / 1000.0


async def _drain_body(request: web.Request) -> int:
    received = 0
    if request.body_exists:
        async for chunk in request.content.iter_any():
            received += len(chunk)
    return received


async def echo(request: web.Request) -> web.Response:
    state = request.app[STATE]
    async with state.in_flight():
        received = await _drain_body(request)
        await asyncio.sleep(_delay(request, state.service_time))
    info = {
        "name": state.name,
        "method": request.method,
        "raw_path": request.raw_path,
        "headers": {h: request.headers[h] for h in ECHOED_HEADERS if h in request.headers},
        "received": received,
    }
    if "text/html" in request.headers.get("Accept", ""):
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in info.items()
        )
        page = f"<!doctype html><title>{html.escape(state.name)}</title><table>{rows}</table>\n"
        return web.Response(text=page, content_type="text/html")
    return web.json_response(info)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.max_seen_active = state.active
    state.served = 0
    return web.json_response(state.stats())


async def echo_headers(request: web.Request) -> web.Response:
    state = request.app[STATE]
    async with state.in_flight():
        await asyncio.sleep(_delay(request, 0.0))
    return web.json_response(
        {"name": state.name, "headers": [[k, v] for k, v in request.headers.items()]}
    )


async def stream_bytes(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    n = int(_query_float(request, "n", 0))
    async with state.in_flight():
        await asyncio.sleep(_delay(request, 0.0))
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        response.content_length = n
        await response.prepare(request)
        chunk = b"x" * CHUNK
        left = n
        while left > 0:
            piece = chunk if left >= CHUNK else chunk[:left]
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
    return response


async def sink(request: web.Request) -> web.Response:
    state = request.app[STATE]
    async with state.in_flight():
        received = await _drain_body(request)
        await asyncio.sleep(_delay(request, 0.0))
    return web.json_response({"name": state.name, "received": received})


async def hold(request: web.Request) -> web.Response:
    state = request.app[STATE]
    event = state.release_event  # taken on arrival: a release frees queued holds too
    state.held += 1
    try:
        async with state.in_flight():
            await event.wait()
    finally:
        state.held -= 1
    return web.json_response({"name": state.name, "released": True})


async def release(request: web.Request) -> web.Response:
    return web.json_response({"released": request.app[STATE].release_all()})


async def wait_active(request: web.Request) -> web.Response:
    state = request.app[STATE]
    threshold = int(_query_float(request, "active", 1))
    timeout = _query_float(request, "timeout", 10.0)
    if state.active < threshold:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append((threshold, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return web.json_response(state.stats(), status=504)
    return web.json_response(state.stats())


async def slow_headers(request: web.Request) -> web.Response:
    state = request.app[STATE]
    async with state.in_flight():
        await asyncio.sleep(_delay(request, state.service_time))
    return web.json_response({"name": state.name, "raw_path": request.raw_path})


def make_was_app(workers: int, service_time: float, name: str) -> web.Application:
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if service_time < 0:
        raise ValueError("service_time must be >= 0")
    app = web.Application()
    app[STATE] = WasState(
        name=name, workers=workers, service_time=service_time, slots=asyncio.Semaphore(workers)
    )

    async def free_held(app: web.Application) -> None:
        app[STATE].release_all()

    app.on_shutdown.append(free_held)
    app.router.add_get("/__was/stats", stats)
    app.router.add_post("/__was/reset", reset)
    app.router.add_route("*", "/__was/echo-headers", echo_headers)
    app.router.add_route("*", "/__was/bytes", stream_bytes)
    app.router.add_post("/__was/sink", sink)
    app.router.add_route("*", "/__was/hold", hold)
    app.router.add_post("/__was/release", release)
    app.router.add_get("/__was/wait", wait_active)
    app.router.add_route("*", "/__was/slow-headers", slow_headers)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def run_was(
    host: str, port: int, workers: int, service_time: float, name: str
) -> web.AppRunner:
    """Start a WAS and return its runner; ``runner.addresses[0][1]`` is the bound port
    (useful with ``port=0``). Stop it with ``await runner.cleanup()``."""
    runner = web.AppRunner(
        make_was_app(workers, service_time, name), access_log=None, shutdown_timeout=5.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner


async def _serve(args: argparse.Namespace) -> None:
    runner = await run_was(args.host, args.port, args.workers, args.service_time, args.name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, port = runner.addresses[0][:2]
    print(
        json.dumps(
            {
                "was": args.name,
                "listen": f"{host}:{port}",
                "workers": args.workers,
                "service_time": args.service_time,
            }
        ),
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m guard.tools.was", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=20, help="worker slots (thread pool size)")
    parser.add_argument("--service-time", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--name", default="was-1")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
