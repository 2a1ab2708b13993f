"""`workers: N`: several processes on one port, and the ceilings still hold for the fleet."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from tests.support.polling import poll
from tests.support.servers import StartWas, free_port, write_config


async def test_ceiling_holds_across_workers(start_was: StartWas, tmp_path: Path) -> None:
    was = await start_was()
    port, admin = free_port(), free_port()
    cfg = write_config(
        tmp_path,
        f"""
        listen: 127.0.0.1:{port}
        admin_listen: 127.0.0.1:{admin}
        workers: 2
        waiting_page: waiting.html
        access_log: {{format: off}}
        backends:
          - {{name: was-1, url: '{was.url}', max_active: 3}}
        """,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "run", "-c", str(cfg)
    )
    try:
        async with aiohttp.ClientSession() as s:
            await _wait_up(s, f"http://127.0.0.1:{admin}/healthz")
            await _wait_up(s, f"http://127.0.0.1:{port}/__guard/static/waiting.css")

            async def one() -> int:
                # a fresh connection each: the kernel spreads them over the workers
                async with (
                    aiohttp.ClientSession() as own,
                    own.get(f"http://127.0.0.1:{port}/__was/hold") as r,
                ):
                    return r.status

            tasks = [asyncio.create_task(one()) for _ in range(12)]
            await poll(lambda: sum(t.done() for t in tasks) >= 9, 10)
            stats = await was.stats()
            assert stats["active"] <= 3 and stats["max_seen_active"] <= 3
            async with s.get(f"http://127.0.0.1:{admin}/status") as r:
                status = await r.json()
            assert status["workers"] == 2
            assert status["backends"][0]["max_active"] == 3  # the shares add up
            assert status["site"]["active"] == stats["active"]
            await was.release()
            results = await asyncio.gather(*tasks)
            assert set(results) <= {200, 503}
            assert results.count(200) == (await was.stats())["served"] <= 3
    finally:
        await was.release()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def _wait_up(s: aiohttp.ClientSession, url: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        try:
            async with s.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert loop.time() < deadline, f"{url} never came up"
        await poll(lambda: True)
