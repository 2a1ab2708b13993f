"""The Python floor: a minimal reverse proxy on aiohttp (web server + ClientSession) and uvloop.

    python bench/aiohttp_proxy.py --port 8090 --upstream http://127.0.0.1:8081

No policy: it forwards the raw request-target, strips hop-by-hop headers both ways, streams
the request body and buffers the (small) response. This is what "just write it in aiohttp"
costs; guard's data path is measured against it and against nginx.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


def _strip(headers: Mapping[str, str], *extra: str) -> list[tuple[str, str]]:
    drop = HOP_BY_HOP | set(extra)
    return [(k, v) for k, v in headers.items() if k.lower() not in drop]


async def forward(request: web.Request) -> web.Response:
    session = request.app[SESSION]
    url = URL(request.app[UPSTREAM] + request.raw_path, encoded=True)
    async with session.request(
        request.method,
        url,
        headers=_strip(request.headers),
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as resp:
        body = await resp.read()
        headers = _strip(resp.headers, "content-length", "date", "server")
        return web.Response(status=resp.status, body=body, headers=headers)


async def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=30),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port")
    args = parser.parse_args()
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=loop,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
