"""logrotate in its default mode: rename the access log, send SIGUSR1 (or reload); guard
reopens the file at its configured path. Lines logged before the rename stay in the renamed
file (none lost), lines after it go to the new file."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp

from tests.faults.guard_process import Proc, guard_process
from tests.support.polling import poll
from tests.support.servers import StartWas


def body(was_url: str) -> str:
    return f"""
    waiting_page: waiting.html
    access_log: {{format: json, path: access.log}}
    backends:
      - {{name: was-1, url: '{was_url}', max_active: 50}}
    """


async def get_many(url: str, tag: str, n: int) -> None:
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            async with s.get(f"{url}/{tag}/{i}") as r:
                assert r.status == 200
                await r.read()


def paths_in(file: Path) -> list[str]:
    if not file.exists():
        return []
    lines = file.read_text().splitlines()
    return [json.loads(line)["path"] for line in lines if line.strip()]


async def rotate_and_check(p: Proc, tmp_path: Path, reopen: signal.Signals) -> None:
    url = f"http://127.0.0.1:{p.port}"
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    await get_many(url, "before", 50)
    log.rename(rotated)  # lines still in guard's buffer must land in the renamed file
    p.proc.send_signal(reopen)
    await get_many(url, "after", 30)
    await poll(lambda: len(paths_in(log)) >= 30, 5.0, lambda: f"new file: {paths_in(log)}")
    await poll(lambda: len(paths_in(rotated)) >= 50, 5.0, lambda: f"old: {paths_in(rotated)}")
    assert paths_in(rotated) == [f"/before/{i}" for i in range(50)]
    assert paths_in(log) == [f"/after/{i}" for i in range(30)]


async def test_sigusr1_reopens_the_access_log(tmp_path: Path, start_was: StartWas) -> None:
    was = await start_was()
    stderr = (tmp_path / "stderr.log").open("wb")
    async with guard_process(tmp_path, body(was.url), asyncio.subprocess.DEVNULL, stderr) as p:
        await rotate_and_check(p, tmp_path, signal.SIGUSR1)
        p.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.proc.wait(), 5.0) == 0
    stderr.close()


async def test_reload_reopens_the_access_log(tmp_path: Path, start_was: StartWas) -> None:
    was = await start_was()
    stderr = (tmp_path / "stderr.log").open("wb")
    async with guard_process(tmp_path, body(was.url), asyncio.subprocess.DEVNULL, stderr) as p:
        await rotate_and_check(p, tmp_path, signal.SIGHUP)
    stderr.close()
