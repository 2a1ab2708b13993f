"""guard refuses to start on aiohttp's lenient pure-Python HTTP parser, and pins aiohttp
to a release with the known request-smuggling advisories fixed."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.servers import free_port, write_config

ROOT = Path(__file__).resolve().parents[2]


async def run_guard(config: Path, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "guard.cli",
        "run",
        "-c",
        str(config),
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            _out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("guard started serving on the pure-Python parser") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        f"""
        listen: 127.0.0.1:{free_port()}
        admin_listen: 127.0.0.1:{free_port()}
        waiting_page: waiting.html
        access_log: {{format: "off"}}
        backends:
          - {{name: was-1, url: 'http://127.0.0.1:{free_port()}', max_active: 5}}
        """,
    )


async def test_refuses_to_start_without_aiohttp_c_parser(tmp_path: Path) -> None:
    code, err = await run_guard(config(tmp_path), AIOHTTP_NO_EXTENSIONS="1")
    assert code != 0
    assert "AIOHTTP_NO_EXTENSIONS" in err and "parser" in err, err
    assert "Traceback" not in err, err  # a clear message, not a crash


async def test_the_same_config_is_valid_so_the_refusal_is_about_the_parser(
    tmp_path: Path,
) -> None:
    """Control: `guard check` accepts the config used above."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "guard.cli",
        "check",
        "-c",
        str(config(tmp_path)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


def test_aiohttp_is_pinned_past_the_smuggling_advisories() -> None:
    """aiohttp's 2023-2026 request-smuggling/parser advisories were fixed by 3.13.3; the
    requirement must not allow anything older, and the installed version must satisfy it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    (aiohttp,) = [r for r in reqs if r.name == "aiohttp"]
    floors = [Version(s.version) for s in aiohttp.specifier if s.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= Version("3.13.3"), aiohttp
    assert not aiohttp.specifier.contains("3.13.2")
    assert aiohttp.specifier.contains(version("aiohttp")), version("aiohttp")
