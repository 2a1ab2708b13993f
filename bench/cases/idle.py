"""Idle keep-alive connections: RSS per connection of guard, nginx and aiohttp."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from common import HOST
from harness import PATH, Bench, Target, try_start
from procstats import rss
from report import md_table

from guard.tools.launch import Launched


async def _idle_probe(proc: Launched, port: int, n: int) -> tuple[int, int, int, int]:
    """Open n keep-alive connections, one request each, keep them; RSS before/after."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    for _ in range(50):  # warm the server's code paths and upstream pool
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request)
        await _read_response(reader)
        writer.close()
    rss0 = rss(proc)
    sem = asyncio.Semaphore(200)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
            writer.write(request)
            await asyncio.wait_for(_read_response(reader), 30)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, BaseException))
    rss1 = rss(proc)
    for w in writers:
        w.close()
    return rss0, rss1, n - failed, failed


async def _read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


def run(b: Bench) -> str:
    n = b.args.idle_conns
    limits = {"max_connections": n + 1000, "keepalive_timeout": "600s"}
    starters: dict[str, Callable[[], Target]] = {
        "guard": lambda: b.start_guard("guard-idle", limits=limits),
        "nginx": lambda: b.start_nginx_proxy("nginx-idle"),
        "aiohttp": lambda: b.start_aiohttp_proxy("aiohttp-idle"),
    }
    rows = []
    b.data["idle"] = {}
    for name, start in starters.items():
        target = try_start(b, name, start)
        if isinstance(target, str):
            rows.append([name, "n/a", "n/a", "n/a"])
            b.notes.append(f"idle/{name}: {target}")
            continue
        try:
            port = int(target.url.rsplit(":", 1)[1])
            rss0, rss1, opened, failed = asyncio.run(_idle_probe(target.proc, port, n))
            per = (rss1 - rss0) / max(1, opened) / 1024
            b.data["idle"][name] = {"rss0": rss0, "rss1": rss1, "opened": opened, "failed": failed}
            rows.append([name, f"{opened:,}", f"{(rss1 - rss0) / 2**20:.1f} MiB", f"{per:.2f} KB"])
            if failed:
                b.notes.append(f"idle/{name}: {failed} of {n} connections failed")
            b.log(f"  [idle] {name:<8} {opened} conns, {per:.2f} KB/conn")
        except Exception as e:
            rows.append([name, "n/a", "n/a", "n/a"])
            b.notes.append(f"idle/{name}: {e}")
        finally:
            b.procs.stop(target.proc)
    table = md_table(["server", "idle connections", "RSS delta", "RSS per connection"], rows)
    return (
        "## Idle keep-alive connections\n\n"
        f"Each connection sent one request and then stayed open, idle. RSS of the whole "
        f"process tree before and after (target for guard: ≤ 3 KB).\n\n{table}\n"
    )
