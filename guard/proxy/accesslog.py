"""Buffered access log: one line per request, formats json | text | off.

This runs once per request at tens of thousands of requests/s, so it avoids the logging
module (records, handlers, a lock and a write per line) and builds each line with one
f-string. Lines are appended to a list and written in one ``write`` when the buffer passes
``flush_bytes`` or when the runtime calls :meth:`AccessLog.flush` (every 0.2 s and at shutdown).

The class has no asyncio; the stream is injected, or opened non-blocking by ``logsink``
(stdout, stderr, a file, a pipe). A stuck stream (a pipe nobody reads, ``EAGAIN``) keeps the
unwritten bytes for the next flush; past ``max_buffer_bytes`` new lines are dropped whole
(never half a line) and counted in :attr:`AccessLog.dropped` and in the process-wide
``LINES_DROPPED`` (the metric ``guard_log_lines_dropped_total``) instead of growing memory
or blocking the event loop.

With ``refusal_lines_per_second`` (``access_log.refusals: sampled``), refused requests are
logged at most that many times per second and rule; the rest are counted and reported in
one summary line per rule (``outcome`` "suppressed", ``count``) when the second is over.
``reopen`` (SIGUSR1, reload) writes what is buffered to the old file and opens the path
anew, so logrotate's default rename-then-signal loses nothing.

Strings that the client controls (method, path, request id, forwarded address) are escaped
with the stdlib's C JSON string encoder, which is cheaper than checking whether escaping is
needed, and yields pure ASCII, so a line can never be split or forged.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _q
from pathlib import Path
from typing import Final, Literal, Protocol

from guard.proxy.logsink import LINES_DROPPED, DropCount, Sink, open_fd, open_path

__all__ = ["LINES_DROPPED", "AccessLog", "AccessLogConfigLike", "DropCount", "Sink"]

Format = Literal["json", "text", "off"]

_THOUSANDTHS: Final = tuple(f"{i:03d}" for i in range(1000))
_MILLIS: Final = tuple(f"{t}Z" for t in _THOUSANDTHS)


# Outcomes that are not refusals: never sampled (dry runs were forwarded: a rehearsal reads
# every one). A waiting room's answers (queued, queue_poll) are sampled like refusals.
_SERVED: Final = frozenset({"admitted", "static", "would_queue", "would_refuse"})


class AccessLogConfigLike(Protocol):
    """guard.config.AccessLog (format, path) — a Protocol so this module needs no config."""

    @property
    def format(self) -> str: ...

    @property
    def path(self) -> Path | None: ...

    @property
    def refusals(self) -> str: ...

    @property
    def refusal_lines_per_second(self) -> int: ...


class AccessLog:
    __slots__ = (
        "_clock",
        "_closer",
        "_flush_bytes",
        "_json",
        "_lines",
        "_max_bytes",
        "_milli",
        "_path",
        "_pending",
        "_per_second",
        "_sec",
        "_sec_text",
        "_size",
        "_stream",
        "_stuck",
        "_ts",
        "_windows",
        "dropped",
        "enabled",
    )

    def __init__(
        self,
        fmt: Format,
        stream: Sink | None,
        *,
        flush_bytes: int = 64 * 1024,
        max_buffer_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
        close: Callable[[], object] | None = None,
        refusal_lines_per_second: int = 0,
        path: Path | None = None,
    ) -> None:
        if fmt not in ("json", "text", "off"):
            raise ValueError(f"access log format must be json, text or off, got {fmt!r}")
        self.enabled = fmt != "off" and stream is not None
        self._json = fmt == "json"
        self._stream = stream
        self._closer = close
        self._flush_bytes = flush_bytes
        self._max_bytes = max(max_buffer_bytes, flush_bytes)
        self._clock = clock
        self._lines: list[str] = []
        self._size = 0  # characters in _lines plus bytes in _pending (ASCII: chars == bytes)
        self._pending = b""  # bytes a stuck stream has not taken yet
        self._stuck = False  # last write was short: leave retries to the periodic flush()
        self._sec = -1
        self._sec_text = ""
        self._milli = -1
        self._ts = ""
        self.dropped = 0  # lines lost to a full buffer or a failing stream
        self._path = path  # reopened by reopen(); None: an inherited stream, never reopened
        self._per_second = refusal_lines_per_second  # 0: log every refusal
        # rule -> [second, refusal lines logged in it, refusals left out]; rules are config
        # names, so this stays as small as the config.
        self._windows: dict[str, list[int]] = {}

    @classmethod
    def from_config(
        cls,
        cfg: AccessLogConfigLike | None,
        *,
        stdout: Sink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AccessLog:
        """json/text appended to ``cfg.path``, or written to stdout (``stdout`` overrides it,
        for tests); ``off`` or no config logs nothing. Raises OSError if the file can't open.
        ``clock`` is the wall clock of the timestamps."""
        if cfg is None or cfg.format == "off":
            return cls("off", None)
        fmt: Format = "json" if cfg.format == "json" else "text"
        if cfg.format not in ("json", "text"):
            raise ValueError(f"access log format must be json, text or off, got {cfg.format!r}")
        per_second = cfg.refusal_lines_per_second if cfg.refusals == "sampled" else 0
        if stdout is not None and cfg.path is None:
            return cls(fmt, stdout, clock=clock, refusal_lines_per_second=per_second)
        if cfg.path is not None:
            stream, close = open_path(cfg.path)
        else:
            sys.stdout.flush()  # our own buffer is the only one from here on
            stream, close = open_fd(1)
        return cls(
            fmt,
            stream,
            close=close,
            clock=clock,
            refusal_lines_per_second=per_second,
            path=cfg.path,
        )

    def log(
        self,
        client: str,
        method: str,
        path: str,
        rule: str,
        backend: str | None,
        outcome: str,
        status: int,
        duration_s: float,
        request_id: str | None,
    ) -> None:
        if not self.enabled:
            return
        ts = self._stamp()
        if self._per_second and outcome not in _SERVED and not self._sampled(rule):
            return
        # Milliseconds with three decimals, from whole microseconds: a float format spec
        # costs more than the rest of the line (and turns a compiled f-string into format()).
        micros = int(duration_s * 1_000_000.0 + 0.5)  # rounded, as "%.3f" would
        ms = f"{micros // 1000}.{_THOUSANDTHS[micros % 1000]}"
        if self._json:
            # outcome is one of the core's fixed words, so it is the one field left unescaped.
            line = (
                f'{{"time":"{ts}","request_id":{"null" if request_id is None else _q(request_id)}'
                f',"client":{_q(client)},"method":{_cached_q(method)},"path":{_q(path)}'
                f',"rule":{_cached_q(rule)}'
                f',"backend":{"null" if backend is None else _cached_q(backend)}'
                f',"outcome":"{outcome}","status":{status},"duration_ms":{ms}}}\n'
            )
        else:
            line = (
                f"time={ts} request_id={_t(request_id)} client={_t(client)}"
                f" method={_t(method)} path={_t(path)} rule={_t(rule)}"
                f" backend={_t(backend)} outcome={_t(outcome)} status={status}"
                f" duration_ms={ms}\n"
            )
        self._append(line)

    def _stamp(self) -> str:
        """The current time as text; rebuilt once per millisecond, strftime once per second."""
        milli = int(self._clock() * 1000.0)
        if milli != self._milli:
            sec = milli // 1000
            if sec != self._sec:
                self._sec = sec
                self._sec_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
            self._milli = milli
            self._ts = self._sec_text + _MILLIS[milli - sec * 1000]
        return self._ts

    def _sampled(self, rule: str) -> bool:
        """Whether this refusal gets its line: the first N of each second and rule do."""
        window = self._windows.get(rule)
        if window is None:
            window = self._windows[rule] = [self._sec, 0, 0]
        elif window[0] != self._sec:
            if window[2]:
                self._summary(rule, window[2])
            window[0], window[1], window[2] = self._sec, 0, 0
        if window[1] >= self._per_second:
            window[2] += 1
            return False
        window[1] += 1
        return True

    def _summarise_past_seconds(self) -> None:
        """Report the refusals left out in seconds that are over, even if none follow."""
        self._stamp()
        for rule, window in self._windows.items():
            if window[2] and window[0] != self._sec:
                self._summary(rule, window[2])
                window[2] = 0

    def _summary(self, rule: str, count: int) -> None:
        if self._json:
            line = (
                f'{{"time":"{self._ts}","rule":{_cached_q(rule)},"outcome":"suppressed"'
                f',"count":{count}}}\n'
            )
        else:
            line = f"time={self._ts} rule={_t(rule)} outcome=suppressed count={count}\n"
        self._append(line)

    def _append(self, line: str) -> None:
        size = self._size + len(line)
        if size > self._max_bytes:
            self._drop(1)  # whole lines only: what is buffered is never cut
            return
        self._lines.append(line)
        self._size = size
        if size >= self._flush_bytes and not self._stuck:
            self.flush()

    def _drop(self, lines: int) -> None:
        self.dropped += lines
        LINES_DROPPED.lines += lines

    def flush(self) -> None:
        """Write everything buffered in one call; never raises (a log must not fail requests)."""
        if self._windows:
            self._summarise_past_seconds()
        stream = self._stream
        if stream is None or not (self._lines or self._pending):
            return
        n_lines = len(self._lines)
        # Lines are ASCII by construction (escaped); backslashreplace is only a safety net.
        data = self._pending + "".join(self._lines).encode("ascii", "backslashreplace")
        self._lines.clear()
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                written = stream.write(view[done:])
                if not written:  # None (would block) or 0: keep the rest for the next flush
                    break
                done += written
        except BlockingIOError as exc:
            done += exc.characters_written
        except (OSError, ValueError):
            # Disk full, closed pipe, closed file: give the batch up, count it, keep serving.
            self._drop(n_lines + self._pending.count(b"\n"))
            done = len(data)
        self._pending = data[done:]
        self._size = len(self._pending)
        self._stuck = bool(self._pending)

    def reopen(self) -> None:
        """logrotate: what is buffered goes to the file as it was (renamed or not), then the
        configured path is opened anew. A file that cannot be opened keeps the old one."""
        if self._path is None or self._stream is None:
            return
        self.flush()
        try:
            stream, close = open_path(self._path)
        except OSError:
            return
        old_close = self._closer
        self._stream, self._closer, self._stuck = stream, close, False
        if old_close is not None:
            with contextlib.suppress(OSError):
                old_close()

    @property
    def buffered_bytes(self) -> int:
        return self._size

    def close(self) -> None:
        """Flush and release the stream; lines a stuck stream still holds count as dropped."""
        self.flush()
        if self._pending:
            self._drop(self._pending.count(b"\n"))
            self._pending = b""
            self._size = 0
        self.enabled = False
        if self._closer is not None:
            closer, self._closer = self._closer, None
            with contextlib.suppress(OSError):
                closer()
        self._stream = None


_QUOTED: Final[dict[str, str]] = {}


def _cached_q(value: str) -> str:
    """_q for the few values that repeat on every line: methods, rule and backend names."""
    quoted = _QUOTED.get(value)
    if quoted is None:
        quoted = _q(value)
        if len(_QUOTED) < 256:  # methods come from clients: bounded
            _QUOTED[value] = quoted
    return quoted


def _t(value: str | None) -> str:
    """logfmt value: bare when safe, else a JSON-quoted ASCII string (no spaces, no line breaks)."""
    if not value:
        return "-" if value is None else '""'
    quoted = _q(value)
    # Same length plus the two quotes means nothing needed escaping.
    if len(quoted) == len(value) + 2 and " " not in value and "=" not in value:
        return value
    return quoted
