"""Access-log readers for `guard rehearse`: each line becomes one Event (start, end, request).

Formats (``--format``, or detected from the first line):

- ``guard-json``: guard's own JSON access log. ``time`` is the completion (UTC, ms),
  ``duration_ms`` the time guard held the request; ``backend`` is null when guard answered
  by itself (refused, blocked). Lines with outcome ``bad_request``/``static`` never reached
  admission and are skipped.
- ``nginx``: ``combined`` plus ``$request_time`` as the last field::

      log_format rehearse '$remote_addr - $remote_user [$time_local] "$request" $status '
                          '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time';

  ``$time_local`` is written at completion, to the whole second: the k-th of n lines of one
  second is placed at second + (k + 0.5) / n (lines are written in completion order).
- ``tomcat``: AccessLogValve ``pattern="%h %l %u %t &quot;%r&quot; %s %b %D"`` (common + %D;
  ``%T`` with ``--duration-unit s``). ``%t`` is the request's *start* by default, to the whole
  second: it is placed mid-second. %D is milliseconds up to Tomcat 9 and microseconds from
  Tomcat 10 (``--duration-unit us``).

Files ending in ``.gz`` are decompressed on the fly. Unparseable lines are counted, not fatal.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from itertools import chain
from pathlib import Path
from typing import IO, Final

from guard.core.paths import BadPath, canonicalize

__all__ = ["FORMATS", "UNITS", "Event", "LogRead", "detect_format", "parse_lines", "read_log"]

FORMATS: Final = ("guard-json", "nginx", "tomcat")
UNITS: Final = {"ms": 0.001, "us": 0.000_001, "s": 1.0}
_SKIPPED_OUTCOMES: Final = frozenset({"bad_request", "static"})
# common/combined: host ident user [time] "request" status bytes ["referer" "agent"] duration
_CLF: Final = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) \S+'
    r'(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")? (?P<duration>\d+(?:\.\d+)?)\s*$'
)
_CLF_TIME: Final = "%d/%b/%Y:%H:%M:%S %z"


@dataclass(frozen=True, slots=True)
class Event:
    """One request: start and end in epoch seconds; forwarded when it reached a backend."""

    start: float
    end: float
    method: str
    path: str
    client: str
    status: int
    forwarded: bool = True
    backend: str | None = None  # the backend guard logged; None when unknown or not sent

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class LogRead:
    events: list[Event] = field(default_factory=list)
    bad_lines: int = 0
    skipped: int = 0  # parsed but never admitted (bad requests, guard's static assets)
    tz: timezone = UTC  # the log's own offset, for --from/--to given as times of day


def detect_format(first_line: str) -> str:
    if first_line.lstrip().startswith("{"):
        return "guard-json"
    found = _CLF.match(first_line.rstrip("\n"))
    if found is not None and '"' in first_line.split("]", 1)[1].split('" ', 1)[1]:
        return "nginx"  # referer and user agent: combined
    return "tomcat"


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def read_log(path: Path, fmt: str | None = None, unit: str = "ms") -> LogRead:
    """Every event of the file, sorted by start time."""
    with _open(path) as lines:
        first = next(lines, "")
        chosen = fmt or detect_format(first)
        return parse_lines(chain([first], lines), chosen, unit)


def parse_lines(lines: Iterable[str], fmt: str, unit: str = "ms") -> LogRead:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    read = LogRead()
    if fmt == "guard-json":
        _read_guard_json(lines, read)
    else:
        scale = 1.0 if fmt == "nginx" else UNITS[unit]  # nginx: seconds with ms
        _read_clf(lines, read, end_stamped=fmt == "nginx", scale=scale)
    read.events.sort(key=lambda e: e.start)
    return read


def _canonical(target: str) -> str | None:
    try:
        return canonicalize(target).path
    except BadPath:
        return None


def _read_guard_json(lines: Iterable[str], read: LogRead) -> None:
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            end = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp()
            duration = float(doc["duration_ms"]) / 1000.0
            method, target = str(doc["method"]), str(doc["path"])
            outcome, backend = doc.get("outcome"), doc.get("backend")
            status, client = int(doc["status"]), str(doc.get("client") or "-")
        except (ValueError, KeyError, TypeError, AttributeError):
            read.bad_lines += 1
            continue
        path = _canonical(target)
        if outcome in _SKIPPED_OUTCOMES or path is None or path.startswith("/__guard/static/"):
            read.skipped += 1
            continue
        forwarded = backend is not None and outcome in (None, "admitted")
        read.events.append(
            Event(end - duration, end, method, path, client, status, forwarded, backend)
        )


def _read_clf(lines: Iterable[str], read: LogRead, end_stamped: bool, scale: float) -> None:
    """nginx (stamped at the end) or Tomcat (stamped at the start), both to the second."""
    for second, group in _by_second(lines, read):
        n = len(group)
        for k, (method, path, client, status, duration) in enumerate(group):
            if end_stamped:
                end = second + (k + 0.5) / n
                start = end - duration * scale
            else:
                start = second + 0.5
                end = start + duration * scale
            read.events.append(Event(start, end, method, path, client, status))


_Parsed = tuple[str, str, str, int, float]


def _by_second(lines: Iterable[str], read: LogRead) -> Iterator[tuple[float, list[_Parsed]]]:
    """Runs of consecutive lines stamped with the same second."""
    current: float | None = None
    group: list[_Parsed] = []
    for line in lines:
        found = _CLF.match(line.rstrip("\n"))
        parsed = None if found is None else _parse_clf(found, read)
        if parsed is None:
            if line.strip():
                read.bad_lines += 1
            continue
        stamp, request = parsed
        if stamp != current:
            if group and current is not None:
                yield current, group
            current, group = stamp, []
        if request is not None:
            group.append(request)
    if group and current is not None:
        yield current, group


def _parse_clf(found: re.Match[str], read: LogRead) -> tuple[float, _Parsed | None] | None:
    try:
        when = datetime.strptime(found["time"], _CLF_TIME)
    except ValueError:
        return None
    offset = when.utcoffset()
    if offset is not None and not read.events:
        read.tz = timezone(offset)
    parts = found["request"].split(" ")
    path = _canonical(parts[1]) if len(parts) >= 2 else None
    if path is None:
        read.skipped += 1
        return when.timestamp(), None
    request = (parts[0], path, found["client"], int(found["status"]), float(found["duration"]))
    return when.timestamp(), request
