"""A `guard run` subprocess whose stdout and stderr the test chooses (a pipe nobody reads,
a file), for the logging fault tests."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from tests.support.polling import poll_async
from tests.support.servers import free_port, write_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    config_path: Path
    port: int
    admin_port: int

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def get_admin(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as s,
            s.get(f"{self.admin_url}{path}") as r,
        ):
            return r.status, await r.text()


async def _healthy(p: Proc) -> bool:
    if p.proc.returncode is not None:
        raise AssertionError(f"guard exited {p.proc.returncode}")
    try:
        status, _ = await p.get_admin("/healthz")
    except (aiohttp.ClientError, TimeoutError):
        return False
    return status == 200


@asynccontextmanager
async def guard_process(
    tmp_path: Path, body: str, stdout: int | IO[bytes], stderr: int | IO[bytes]
) -> AsyncIterator[Proc]:
    """`guard run` on loopback with `body` (YAML without listen/admin_listen); killed at exit."""
    port, admin_port = free_port(), free_port()
    header = f"listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin_port}\n"
    path = write_config(tmp_path, header + textwrap.dedent(body))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "guard.cli",
        "run",
        "-c",
        str(path),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )
    p = Proc(proc, path, port, admin_port)
    try:
        await poll_async(lambda: _healthy(p), 15.0, "guard did not start")
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
