"""guard's own log lines (stderr), written so that the event loop never waits for them.

Records go into a bounded queue (put_nowait: a full queue drops the line and counts it in
``LINES_DROPPED``, i.e. ``guard_log_lines_dropped_total``); one daemon thread writes them
to stderr, so a stderr nobody reads blocks that thread, never the loop. At exit the thread
gets a second to finish and is then left behind: shutdown never waits for a stuck reader.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
from typing import Final

from guard.proxy.logsink import LINES_DROPPED

__all__ = ["setup_logging", "stop_logging"]

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUEUE_LINES: Final = 10_000
_STOP: Final = object()


class DroppingQueueHandler(logging.Handler):
    """Formats on the caller's thread (the record's args are not shared across threads) and
    hands the finished line to the writer, or drops it when the writer is behind."""

    def __init__(self, lines: queue.Queue[object]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # a broken log call must not break the caller
            self.handleError(record)
            return
        try:
            self.lines.put_nowait(line.encode("utf-8", "backslashreplace"))
        except queue.Full:
            LINES_DROPPED.lines += 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # stderr shares a non-blocking description: wait in here
            select.select([], [fd], [], 1.0)
        except OSError:  # closed or broken: nothing to write to
            LINES_DROPPED.lines += 1
            return


def _writer(lines: queue.Queue[object], fd: int) -> None:
    while (line := lines.get()) is not _STOP:
        assert isinstance(line, bytes)
        _write_all(fd, line)


_state: dict[str, object] = {}


def setup_logging(level: str, fd: int = 2) -> None:
    """Route the root logger to `fd` through the queue (replacing other handlers)."""
    lines: queue.Queue[object] = queue.Queue(QUEUE_LINES)
    handler = DroppingQueueHandler(lines)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    thread = threading.Thread(target=_writer, args=(lines, fd), name="guard-log", daemon=True)
    thread.start()
    _state.update(queue=lines, thread=thread)


def stop_logging(timeout: float = 1.0) -> None:
    """Let the writer finish what is queued, for at most `timeout` seconds."""
    lines, thread = _state.pop("queue", None), _state.pop("thread", None)
    if isinstance(lines, queue.Queue) and isinstance(thread, threading.Thread):
        try:
            lines.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)
