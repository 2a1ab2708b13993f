"""Start servers as subprocesses, wait until they listen, stop them cleanly.

One launcher for everything that runs guard, the simulated WAS or nginx as a separate
process: the benchmark (bench/run.py), the soak (bench/soak.py) and the tests that need a
real `guard run` (signals, workers). Standard library only, loopback only.

Each server gets its own session (process group), so stopping it reaches its children too
(nginx's workers, guard's `workers: N`), and one log file with stdout and stderr together,
whose tail goes into every "did not start" message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # a cold `guard run` imports pydantic and aiohttp: seconds, not ms
_POLL_STEP = 0.02  # between two connection attempts while a server starts


class StartFailed(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A port the kernel has just called free. For a child that must be told its port in
    advance; a server in this process should bind port 0 itself instead."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_port_run(count: int, low: int = 20000, high: int = 32000) -> int:
    """The first of ``count`` consecutive free ports, below Linux's ephemeral range (where
    outgoing connections keep taking the neighbours of a port the kernel just gave out),
    for a child told a base port (`guard demo --port-base`)."""
    for base in random.sample(range(low, high - count), 200):
        if all(_bindable(base + i) for i in range(count)):
            return base
    raise StartFailed(f"no {count} consecutive free ports in {low}..{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def guard_command(config: Path) -> list[str]:
    """`guard run -c config` on this interpreter (the venv's, compiled modules included)."""
    return [sys.executable, "-m", "guard.cli", "run", "-c", str(config)]


def was_command(port: int, *, workers: int, service_time: float, name: str) -> list[str]:
    return [
        *(sys.executable, "-m", "guard.tools.was", "--port", str(port)),
        *("--workers", str(workers), "--service-time", str(service_time), "--name", name),
    ]


def find_tool(name: str) -> str | None:
    """A program on PATH, or in the sbin folders that a non-root PATH leaves out (nginx)."""
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )


def nginx_command(conf: Path) -> list[str]:
    """nginx in the foreground (the conf says `daemon off`), prefix and startup log in the
    conf's folder so that nothing is written outside it."""
    nginx = find_tool("nginx") or "nginx"
    startup_log = str(conf.parent / "nginx-startup-error.log")
    return [nginx, "-e", startup_log, "-p", str(conf.parent), "-c", str(conf)]


def pin_prefix(cpus: str | None) -> list[str]:
    """`taskset -c cpus` when asked for and available (the benchmark pins; tests do not)."""
    if cpus is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", cpus]


@dataclass
class Launched:
    """One server started by `launch`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 8) -> str:
        return " | ".join(self.log_text().strip().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """To the server's own process only (a supervisor forwards it to its workers)."""
        self.popen.send_signal(sig)

    def _check_port(self, port: int) -> bool:
        if not self.running():
            raise StartFailed(f"{self.name} exited with {self.popen.returncode}: {self.log_tail()}")
        return port_open(port)

    def _not_listening(self, port: int, timeout: float) -> StartFailed:
        return StartFailed(
            f"{self.name} did not listen on {HOST}:{port} within {timeout}s: {self.log_tail()}"
        )

    def wait_port(self, port: int, timeout: float = START_TIMEOUT) -> None:
        """Block until the port accepts; fail at once if the server exits."""
        deadline = time.monotonic() + timeout
        while not self._check_port(port):
            if time.monotonic() > deadline:
                raise self._not_listening(port, timeout)
            time.sleep(_POLL_STEP)

    async def wait_port_async(self, port: int, timeout: float = START_TIMEOUT) -> None:
        """wait_port() for an event loop that must keep serving meanwhile (a WAS in the
        same process as the test, say)."""
        deadline = time.monotonic() + timeout
        while not self._check_port(port):
            if time.monotonic() > deadline:
                raise self._not_listening(port, timeout)
            await asyncio.sleep(_POLL_STEP)

    async def exit_code(self, timeout: float) -> int:
        """Wait for the server to exit on its own (after a signal); TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while (code := self.popen.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout}s")
            await asyncio.sleep(_POLL_STEP)
        return code

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL if it outlives `timeout`."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def launch(
    name: str,
    cmd: Sequence[str],
    workdir: Path,
    *,
    cpus: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Launched:
    """Start `cmd` in `workdir` (its cwd), output appended to workdir/<name>.log."""
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [*pin_prefix(cpus), *cmd],
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    return Launched(name, popen, log)


@dataclass
class Launcher:
    """Every server started for one run, in one folder; `stop_all()` in a finally."""

    workdir: Path
    items: list[Launched] = field(default_factory=list)

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Launched:
        proc = launch(name, cmd, self.workdir, cpus=cpus, env=env)
        self.items.append(proc)
        return proc

    def start_listening(
        self, name: str, cmd: Sequence[str], ports: Sequence[int], cpus: str | None = None
    ) -> Launched:
        """start() and wait until every port accepts; stopped again if it does not."""
        proc = self.start(name, cmd, cpus)
        try:
            for port in ports:
                proc.wait_port(port)
        except StartFailed:
            self.stop(proc)
            raise
        return proc

    def stop(self, proc: Launched) -> None:
        proc.stop()
        if proc in self.items:
            self.items.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            with contextlib.suppress(Exception):  # stop the rest even if one fails
                proc.stop()
        self.items.clear()
