"""Buffered access log: one line per request, formats json | text | off.

This runs once per request at tens of thousands of requests/s, so it avoids the logging
module (records, handlers, a lock and a write per line) and builds each line with one
f-string. Lines are appended to a list and written in one ``write`` when the buffer passes
``flush_bytes`` or when the runtime calls :meth:`AccessLog.flush` (every 0.2 s and at shutdown).

The class is pure: no asyncio, the output stream is injected. A stuck stream (a non-blocking
pipe nobody reads, ``EAGAIN``) keeps the unwritten bytes for the next flush; past
``max_buffer_bytes`` new lines are dropped and counted in :attr:`AccessLog.dropped` instead
of growing memory without bound. (A *blocking* stream that never returns cannot be helped
from inside the event loop; point the log at a file or a pipe that is read.)

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

__all__ = ["AccessLog", "AccessLogConfigLike", "Sink"]

Format = Literal["json", "text", "off"]

_THOUSANDTHS: Final = tuple(f"{i:03d}" for i in range(1000))
_MILLIS: Final = tuple(f"{t}Z" for t in _THOUSANDTHS)


class Sink(Protocol):
    """A binary stream. ``write`` returns the bytes written (possibly fewer, or None when a
    non-blocking stream would block), as io.FileIO does; BlockingIOError is also handled."""

    def write(self, data: bytes | memoryview, /) -> int | None: ...


class AccessLogConfigLike(Protocol):
    """guard.config.AccessLog (format, path) — a Protocol so this module needs no config."""

    @property
    def format(self) -> str: ...

    @property
    def path(self) -> Path | None: ...


class AccessLog:
    __slots__ = (
        "_clock",
        "_closer",
        "_flush_bytes",
        "_json",
        "_lines",
        "_max_bytes",
        "_milli",
        "_pending",
        "_sec",
        "_sec_text",
        "_size",
        "_stream",
        "_stuck",
        "_ts",
        "dropped",
        "enabled",
    )

    def __init__(
        self,
        fmt: Format,
        stream: Sink | None,
        *,
        flush_bytes: int = 64 * 1024,
        max_buffer_bytes: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        close: Callable[[], object] | None = None,
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
        if cfg.path is not None:
            # Unbuffered: our own buffer is the only one, so a flush really reaches the file.
            f = open(cfg.path, "ab", buffering=0)  # noqa: SIM115 - owned by the AccessLog
            return cls(fmt, f, close=f.close, clock=clock)
        if stdout is not None:
            return cls(fmt, stdout, clock=clock)
        # Raw fd 1, bypassing sys.stdout's buffer (which would hold lines back in a pipe).
        sys.stdout.flush()
        out = open(sys.stdout.fileno(), "wb", buffering=0, closefd=False)  # noqa: SIM115
        return cls(fmt, out, close=out.close, clock=clock)

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
        milli = int(self._clock() * 1000.0)
        if milli != self._milli:
            # The timestamp is rebuilt once per millisecond, strftime once per second.
            sec = milli // 1000
            if sec != self._sec:
                self._sec = sec
                self._sec_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
            self._milli = milli
            self._ts = self._sec_text + _MILLIS[milli - sec * 1000]
        ts = self._ts
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
        size = self._size + len(line)
        if size > self._max_bytes:
            self.dropped += 1
            return
        self._lines.append(line)
        self._size = size
        if size >= self._flush_bytes and not self._stuck:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered in one call; never raises (a log must not fail requests)."""
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
            self.dropped += n_lines + self._pending.count(b"\n")
            done = len(data)
        self._pending = data[done:]
        self._size = len(self._pending)
        self._stuck = bool(self._pending)

    @property
    def buffered_bytes(self) -> int:
        return self._size

    def close(self) -> None:
        """Flush and release the stream; lines a stuck stream still holds count as dropped."""
        self.flush()
        if self._pending:
            self.dropped += self._pending.count(b"\n")
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
