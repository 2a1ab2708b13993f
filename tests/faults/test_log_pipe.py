"""Logging never stalls the proxy: with the access log on a pipe that nobody reads (Docker's
blocking log driver, `| tee` to a slow disk, a journald backlog), guard keeps serving, drops
whole lines, counts them in guard_log_lines_dropped_total, and stops promptly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from tests.faults.guard_process import Proc, guard_process

REQUESTS = 8000  # far more than a pipe (64 KiB) plus guard's log buffer hold
CONNECTIONS = 4
BLOCKED = b"GET /blocked/item HTTP/1.1\r\nHost: shop\r\n\r\n"
BODY = """
waiting_page: waiting.html
access_log: {format: %s}
backends:
  - {name: b, url: 'http://127.0.0.1:9', max_active: 5}
rules:
  - {name: blocked, path: /blocked/**, block: true}
"""


async def pipelined_403s(port: int, n: int) -> None:
    """Send n pipelined requests that guard answers itself (403) and read every answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(BLOCKED * n)
    seen = 0
    tail = b""
    while seen < n:
        chunk = await reader.read(1 << 16)
        assert chunk, f"guard closed the connection after {seen} answers"
        data = tail + chunk
        seen += data.count(b"HTTP/1.1 403 ")
        tail = data[-16:]
        seen -= tail.count(b"HTTP/1.1 403 ")
    writer.close()


async def drive(p: Proc) -> None:
    per = REQUESTS // CONNECTIONS
    jobs = [pipelined_403s(p.port, per) for _ in range(CONNECTIONS)]
    try:
        await asyncio.wait_for(asyncio.gather(*jobs), 30.0)
    except TimeoutError:
        raise AssertionError("guard stopped answering: a log write blocked the loop") from None


def dropped_total(metrics: str) -> float:
    found = re.search(r"^guard_log_lines_dropped_total (\S+)$", metrics, re.M)
    assert found, "guard_log_lines_dropped_total is not exported"
    return float(found.group(1))


async def still_serving_then_stops(p: Proc) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _ = await p.get_admin("/healthz", timeout=2.0)
    assert status == 200 and loop.time() - started < 2.0
    _, metrics = await p.get_admin("/metrics")
    assert dropped_total(metrics) > 0
    p.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(p.proc.wait(), 5.0)
    assert code == 0


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_access_log_on_stdout_pipe_nobody_reads(tmp_path: Path, fmt: str) -> None:
    read_end, write_end = os.pipe()  # read_end stays open and is never read
    err_path = tmp_path / "stderr.log"
    try:
        with err_path.open("wb") as err:
            async with guard_process(tmp_path, BODY % fmt, write_end, err) as p:
                os.close(write_end)
                write_end = -1
                await drive(p)
                await still_serving_then_stops(p)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    report = [ln for ln in err_path.read_text().splitlines() if "log lines dropped" in ln]
    assert 1 <= len(report) <= 3, err_path.read_text()  # one per interval, not one per line


async def test_access_log_and_guard_log_on_a_stderr_pipe_nobody_reads(tmp_path: Path) -> None:
    """The access log written to /dev/stderr, and guard's own log lines, into a full pipe."""
    read_end, write_end = os.pipe()
    try:
        body = BODY % "json, path: /dev/stderr"
        async with guard_process(tmp_path, body, asyncio.subprocess.DEVNULL, write_end) as p:
            os.close(write_end)
            write_end = -1
            await drive(p)
            await still_serving_then_stops(p)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
