"""The live view's admin routes: the page, its static files, the SSE stream, the frames.

GET /live                   the page (HTML; no inline script or style: the CSP forbids it)
GET /live/static/<file>     live.js, live.css, favicon.svg, vendored uPlot (ETag, max-age)
GET /live/stream            Server-Sent Events: ``retry:``, ``event: hello``, ``event: tick``
                            with ``id: <seq>``; resumes after ``Last-Event-ID`` from the
                            ring; ``: ping`` when idle; 503 beyond ``live.max_viewers``
GET /live/frames?since=&limit=   the same frames as JSON, for polling tools and workers

Every response carries the admin pages' security headers (``SECURITY_HEADERS``).
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from guard.live import LiveView
from guard.metrics import LiveCollector

__all__ = ["SECURITY_HEADERS", "add_live_routes"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_RETRY_MS = 2000
_PING_SECONDS = 15.0
_WAKE_SECONDS = 1.0  # a stream whose client left is noticed within this, even when idle
_MAX_LIMIT = 3600


class _Static:
    """The page's files, read once from the package; each with a strong ETag."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        folder = resources.files("guard") / "static" / "live"
        for entry in folder.iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_file() and suffix in _TYPES:
                body = entry.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                self.files[entry.name] = (body, _TYPES[suffix], etag)


def add_live_routes(app: web.Application, runtime: Any, registry: CollectorRegistry | None) -> None:
    """Mount the live view on the admin app and its gauges on ``registry``;
    ``runtime.live_view`` is read per request (None, or ``live.enabled: false``: 404)."""
    static = _Static()

    def refused() -> dict[str, float] | None:
        live: LiveView | None = getattr(runtime, "live_view", None)
        return None if live is None else live.refused

    if registry is not None:  # the supervisor of `workers: N` merges the workers' metrics
        registry.register(LiveCollector(refused))

    def view() -> LiveView:
        live: LiveView | None = getattr(runtime, "live_view", None)
        if live is None or not live.settings.enabled:
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        return live

    async def page(request: web.Request) -> web.Response:
        view()
        body, ctype, _ = static.files["index.html"]
        headers = {**SECURITY_HEADERS, "Content-Type": ctype, "Cache-Control": "no-store"}
        return web.Response(body=body, headers=headers)

    async def asset(request: web.Request) -> web.Response:
        view()
        found = static.files.get(request.match_info["name"])
        if found is None or request.match_info["name"] == "index.html":
            raise web.HTTPNotFound(headers=SECURITY_HEADERS)
        body, ctype, etag = found
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "max-age=3600"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": ctype})

    async def frames(request: web.Request) -> web.Response:
        live = view()
        since = _int_param(request, "since", 0)
        limit = min(_int_param(request, "limit", _MAX_LIMIT), _MAX_LIMIT)
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
        headers["Content-Type"] = "application/json"
        return web.Response(body=live.frames(since, limit), headers=headers)

    app.router.add_get("/live", page)
    app.router.add_get("/live/static/{name}", asset)

    async def stream(request: web.Request) -> web.StreamResponse:
        return await _stream(request, view())

    app.router.add_get("/live/stream", stream)
    app.router.add_get("/live/frames", frames)


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        msg = f"{name}: expected an integer"
        raise web.HTTPBadRequest(text=msg, headers=SECURITY_HEADERS) from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"{name}: expected 0 or more", headers=SECURITY_HEADERS)
    return value


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_id")
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


async def _stream(request: web.Request, live: LiveView) -> web.StreamResponse:
    def gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    attached = live.attach(_last_event_id(request), gone)
    if attached is None:
        raise web.HTTPServiceUnavailable(
            text="too many live viewers", headers={**SECURITY_HEADERS, "Retry-After": "5"}
        )
    viewer, missed = attached
    try:
        resp = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        await resp.write(b"retry: %d\n\n" % _RETRY_MS + live.hello_event)
        last = missed[-1][0] if missed else 0
        for _, event in missed:
            await resp.write(event)
        idle = 0.0
        while not viewer.dropped and not gone():
            try:
                seq, event = await asyncio.wait_for(viewer.queue.get(), _WAKE_SECONDS)
            except TimeoutError:
                idle += _WAKE_SECONDS
                if idle >= _PING_SECONDS:
                    idle = 0.0
                    await resp.write(b": ping\n\n")
                continue
            idle = 0.0
            if seq is not None and seq <= last:
                continue  # already sent from the ring
            await resp.write(event)
            last = seq if seq is not None else last
        return resp
    finally:
        live.detach(viewer)
