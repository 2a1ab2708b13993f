"""Where log lines go, opened so that a write never blocks the event loop.

A pipe or a terminal is opened anew (``/proc/self/fd/N``), which gives guard its own open
file description, and set non-blocking: a reader that stops reading makes ``write`` return
None instead of freezing the process. Setting O_NONBLOCK on fd 1 itself would also change
the shell's terminal, or stderr when it shares the pipe (``2>&1``). A socket (journald's
stdout) is written with MSG_DONTWAIT, per call. A regular file never waits for a reader, so
it is written as it is (appending).
"""

from __future__ import annotations

import io
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

__all__ = ["LINES_DROPPED", "DropCount", "Sink", "SocketSink", "open_fd", "open_path"]

_STD_PATHS = {"/dev/stdout": 1, "/dev/stderr": 2}


class DropCount:
    """Log lines lost because their destination could not keep up, for the whole process:
    every access log and guard's own log (guard.logs) add to it; metrics reads it."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines = 0


LINES_DROPPED: Final = DropCount()


class Sink(Protocol):
    """A binary stream. ``write`` returns the bytes written (possibly fewer, or None when a
    non-blocking stream would block), as io.FileIO does; BlockingIOError is also handled."""

    def write(self, data: bytes | memoryview, /) -> int | None: ...


class SocketSink:
    """A stream socket written without ever waiting."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=os.dup(fd))

    def write(self, data: bytes | memoryview, /) -> int | None:
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None

    def close(self) -> None:
        self._sock.close()


def open_fd(fd: int) -> tuple[Sink, Callable[[], object]]:
    """A non-blocking sink on an inherited descriptor (1: stdout, 2: stderr) and its closer."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISSOCK(mode):
        sock = SocketSink(fd)
        return sock, sock.close
    if stat.S_ISREG(mode):
        out = io.FileIO(fd, "ab", closefd=False)
        return out, out.close
    try:
        own = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # no /proc (not Linux): non-blocking on the shared description
        os.set_blocking(fd, False)
        out = io.FileIO(fd, "ab", closefd=False)

        def restore() -> None:
            out.close()
            os.set_blocking(fd, True)

        return out, restore
    out = io.FileIO(own, "ab", closefd=True)
    return out, out.close


def open_path(path: Path) -> tuple[Sink, Callable[[], object]]:
    """A file (appended, created 0640), a named pipe, or /dev/stdout and /dev/stderr."""
    std = _STD_PATHS.get(str(path))
    if std is not None:
        return open_fd(std)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
    out = io.FileIO(os.open(path, flags, 0o640), "ab", closefd=True)
    return out, out.close
