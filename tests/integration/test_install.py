"""Installable anywhere: a wheel installed into a fresh venv outside the checkout ships its
waiting page, `guard check` accepts a minimal config (one backend, no page named) and
`guard demo` starts from any directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import aiohttp
import pytest

from guard.tools.launch import free_port_run
from tests.support.polling import poll_async

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding the wheel built from a copy of the checkout. The
    dependencies come from the test's own environment (a path line, no network)."""
    top = tmp_path_factory.mktemp("install")
    src = top / "src"
    tracked = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    env = {**os.environ, "GUARD_PURE_PYTHON": "1", "PIP_NO_INDEX": "1"}
    wheels = top / "wheels"
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-w", wheels, cwd=src, env=env)
    venv = top / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=top)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("guard-*.whl"))
    run(venv / "bin" / "python", "-m", "pip", "install", "--no-deps", wheel, cwd=top, env=env)
    return venv / "bin"


def test_the_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = run(installed / "python", "-c", "import guard; print(guard.__file__)", cwd=tmp_path)
    assert not where.startswith(str(ROOT)), where


def test_check_accepts_a_minimal_config_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "guard.yaml"
    cfg.write_text("backends:\n  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 10}\n")
    out = run(installed / "guard", "check", "-c", cfg, cwd=tmp_path)
    assert "was-1" in out


async def test_demo_runs_from_any_directory(installed: Path, tmp_path: Path) -> None:
    # A port picked free can be taken by another process before the demo binds it: the demo
    # then says so in one line and exits; only that is retried, on other ports.
    for _ in range(3):
        base = free_port_run(4)  # proxy, admin, was-1, was-2
        out = tmp_path / "demo.out"
        if await _demo_answers(installed, tmp_path, base, out):
            return
        assert "address already in use" in out.read_text(), out.read_text()
    raise AssertionError(f"no free ports for the demo: {out.read_text()}")


async def _demo_answers(installed: Path, tmp_path: Path, base: int, out: Path) -> bool:
    """True once the demo answered and stopped cleanly; False if it could not bind."""
    with out.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            installed / "guard", "demo", "--port-base", str(base),
            cwd=tmp_path, stdout=sink, stderr=sink,
        )  # fmt: skip
    try:

        async def answers() -> bool:
            if proc.returncode is not None:
                return True  # exited: reported below
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{base}/") as r:
                    return r.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await poll_async(answers, 30.0, lambda: f"guard demo did not answer: {out.read_text()}")
        if proc.returncode is not None:
            return False
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10.0) == 0
        return True
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
