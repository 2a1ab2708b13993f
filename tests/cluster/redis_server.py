"""A real redis-server for the cluster tests: a free loopback port, no persistence, started
and stopped by PID, restartable on the same port (an empty Redis, as after a crash), and
pausable (SIGSTOP) to play a hung server. The binary is required: no fakes for Redis."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from guard.tools.launch import Launched, Launcher, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RuntimeError(
                f"redis-server not found ({REDIS_SERVER}): the cluster tests need a real one"
                " (`apt-get install redis-server`; .ci/run installs it)"
            )
        self.launcher = Launcher(workdir)
        self.port = free_port()
        self.proc: Launched | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port) an empty server and wait until it listens."""
        self.starts += 1
        cmd = [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(self.launcher.workdir)),
        ]
        self.proc = self.launcher.start_listening(f"redis-{self.starts}", cmd, [self.port])

    def kill(self) -> None:
        """SIGKILL, as a crash: everything in it is lost."""
        if self.proc is not None:
            self.proc.popen.send_signal(signal.SIGKILL)
            self.proc.popen.wait(5)
            self.launcher.items.remove(self.proc)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.popen.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.popen.send_signal(signal.SIGCONT)  # a paused server cannot hear SIGTERM
        self.launcher.stop_all()
        self.proc = None
