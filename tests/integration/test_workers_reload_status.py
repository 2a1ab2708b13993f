"""`workers: N`: the supervisor's merged /status and /metrics keep answering while a reload
changes the number of rules (issue 9 item 11), and its admin port is protected like a
single guard's (issue 9 item 10)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import textwrap
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

import aiohttp

from tests.support.polling import poll_async
from tests.support.servers import StartWas, free_port, write_config

ONE_RULE = "  - {name: event, path: /event/**, max_active: 4}\n"
THREE_RULES = (
    ONE_RULE
    + "  - {name: shop, path: /shop/**, max_active: 6}\n"
    + "  - {name: api, path: /api/**, rate: 50/s}\n"
)


def config(tmp_path: Path, port: int, admin: int, was_url: str, rules: str) -> Path:
    head = f"""
    listen: 127.0.0.1:{port}
    admin_listen: 127.0.0.1:{admin}
    workers: 2
    waiting_page: waiting.html
    access_log: {{format: off}}
    backends:
      - {{name: was-1, url: '{was_url}', max_active: 8}}
    rules:
    """
    return write_config(tmp_path, textwrap.dedent(head) + rules)


async def test_merged_status_answers_200_through_reloads_that_change_the_rules(
    start_was: StartWas, tmp_path: Path
) -> None:
    was = await start_was()
    port, admin = free_port(), free_port()
    path = config(tmp_path, port, admin, was.url, ONE_RULE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "run", "-c", str(path)
    )
    base = f"http://127.0.0.1:{admin}"
    answers: list[tuple[str, int, int]] = []  # (route, status, rules seen)
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as s:

            async def up() -> bool:
                try:
                    async with s.get(f"{base}/status") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await poll_async(up, 30, "the supervisor never answered /status")

            async def watch(route: str) -> None:
                while not stop.is_set():
                    async with s.get(f"{base}{route}") as r:
                        body = await r.text()
                        rules = body.count('"counts"') if route == "/status" else 0
                        answers.append((route, r.status, rules))

            watchers = [asyncio.create_task(watch(r)) for r in ("/status", "/status", "/metrics")]
            for rules in (THREE_RULES, ONE_RULE) * 3 + (THREE_RULES,):
                config(tmp_path, port, admin, was.url, rules)
                async with s.post(f"{base}/reload") as r:
                    assert r.status == 200, await r.text()
            seen = len(answers)
            await poll_async(lambda: _more(answers, seen + 20), 10)
            stop.set()
            await asyncio.gather(*watchers)

            async with s.get(f"{base}/metrics") as r:
                merged = await r.text()
            promtool = await asyncio.create_subprocess_exec(
                shutil.which("promtool") or "/usr/bin/promtool", "check", "metrics",
                stdin=PIPE, stdout=PIPE, stderr=STDOUT,
            )  # fmt: skip
            out, _ = await promtool.communicate(merged.encode())
            assert promtool.returncode == 0, out.decode()
            assert 'guard_utilization{name="shop",scope="rule"} 0.0' in merged

            async with s.get(f"{base}/status", headers={"Host": "evil.example"}) as r:
                assert r.status == 403  # the supervisor's admin port is protected too
            async with s.post(f"{base}/reload", headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    failed = [a for a in answers if a[1] != 200]
    assert not failed, f"{len(failed)} of {len(answers)} answers failed: {failed[:5]}"
    # The polls did see both configs (2 rules with default, then 4), so they raced the reloads.
    assert {rules for route, _, rules in answers if route == "/status"} >= {2, 4}


async def _more(answers: list[tuple[str, int, int]], n: int) -> bool:
    return len(answers) >= n
