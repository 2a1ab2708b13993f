"""What a waiting room answers: the queue page, its JSON, cookies and short retries.

The page is a template read once per generation and split at its ``{{name}}`` fields, so
a render is one join of escaped values. The page runs no inline script (a strict CSP):
``/__guard/static/queue.js`` polls ``/__guard/queue`` and a ``<noscript>`` meta refresh
reloads the URL for browsers without JavaScript. API clients get the same JSON as the poll
endpoint, with ``api_status`` and ``Retry-After``.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from datetime import datetime
from typing import Final

from guard.core.room_params import PlaceView
from guard.proxy.headers import Header, simple_response

_FIELD: Final = re.compile(rb"\{\{\s*([A-Za-z_]+)\s*\}\}")
PRIVATE: Final = (b"Cache-Control", b"private, no-store")
JSON_TYPE: Final = (b"Content-Type", b"application/json")
HTML_TYPE: Final = (b"Content-Type", b"text/html; charset=utf-8")
CSP: Final = (
    b"Content-Security-Policy",
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-ancestors 'none'",
)
NONE: Final = "none"
"""Poll status when the request carries no place and no pass."""


class Returns:
    """The return time of a place: offered (a long wait), and the time it is held until
    once taken (0: not taken)."""

    __slots__ = ("held_until", "offered")

    def __init__(self, offered: bool, held_until: float) -> None:
        self.offered = offered
        self.held_until = held_until


NO_RETURN: Final = Returns(False, 0.0)


class QueuePage:
    """A template split once into literal text and field names."""

    __slots__ = ("fields", "parts")

    def __init__(self, template: bytes) -> None:
        pieces = _FIELD.split(template)
        self.parts: list[bytes] = pieces[0::2]
        self.fields: list[str] = [f.decode("ascii") for f in pieces[1::2]]

    def render(self, values: dict[str, str]) -> bytes:
        out = [self.parts[0]]
        for name, text in zip(self.fields, self.parts[1:], strict=True):
            out.append(html.escape(values.get(name, "")).encode())
            out.append(text)
        return b"".join(out)


def view_json(
    room: str, state: str, view: PlaceView, returns: Returns = NO_RETURN
) -> tuple[bytes, int]:
    """The JSON of a poll (and of an API client's queue answer) and its refresh seconds.
    Built as text: every value is a number, null, a fixed word, an ISO time or a room
    name (config-validated: letters, digits, '.', '_', '-'), so nothing needs escaping,
    and a poll is the hot path of a queue (json.dumps alone would cost 2 µs)."""
    known = view.eta_known
    refresh = refresh_of(view)
    eta = str(math.ceil(view.eta_seconds)) if known else "null"
    admit = '"' + _iso(view.admit_at) + '"' if known and view.admit_at else "null"
    offered = returns.offered
    back = '"' + _iso(returns.held_until) + '"' if returns.held_until else "null"
    text = (
        f'{{"room":"{room}","state":"{state}","status":"{view.status}",'
        f'"position":{view.position},"eta_seconds":{eta},"admit_at":{admit},'
        f'"refresh_seconds":{refresh},"return_offered":{"true" if offered else "false"},'
        f'"return_url":{_quoted(return_url(room)) if offered else "null"},"return_at":{back}}}'
    )
    return text.encode(), refresh


def _quoted(text: str) -> str:
    return '"' + text + '"'


def return_url(room: str) -> str:
    """GET it with the place: the place comes back re-signed, held until after its ETA."""
    return "/__guard/queue?room=" + room + "&return=1"


def refresh_of(view: PlaceView) -> int:
    return max(1, math.ceil(view.refresh_seconds))


def page_values(room: str, view: PlaceView, request_id: str) -> dict[str, str]:
    known = view.eta_known
    return {
        "room": room,
        "status": view.status,
        "position": str(view.position),
        "eta_minutes": str(max(1, math.ceil(view.eta_seconds / 60))) if known else "?",
        "admit_at": _clock(view.admit_at) if known and view.admit_at else "?",
        "refresh_seconds": str(refresh_of(view)),
        "request_id": request_id,
        "return_url": return_url(room),
    }


class _LocalOffset:
    """The local UTC offset, looked up once per aligned quarter hour: every time zone
    changes its offset on a quarter-hour boundary, so the cached one is always right."""

    __slots__ = ("date", "day", "end", "seconds", "start", "suffix")

    def __init__(self) -> None:
        self.start = self.end = 0
        self.seconds = 0
        self.suffix = "+00:00"
        self.day = -1  # the local day ``date`` ("2026-12-01T") was made for
        self.date = ""

    def at(self, stamp: int) -> None:
        self.start = stamp - stamp % 900
        self.end = self.start + 900
        offset = datetime.fromtimestamp(self.start).astimezone().utcoffset()
        self.seconds = int(offset.total_seconds()) if offset is not None else 0
        sign = "-" if self.seconds < 0 else "+"
        hours, minutes = divmod(abs(self.seconds) // 60, 60)
        self.suffix = f"{sign}{hours:02d}:{minutes:02d}"
        self.day = -1  # the offset moved: the local date may have too


_OFFSET: Final = _LocalOffset()


def _iso(wall: float) -> str:
    """ISO 8601 in local time with its offset, to the second (as datetime.isoformat), from
    cached pieces: the date once per day, the offset once per quarter hour."""
    stamp = int(wall)
    local = _OFFSET
    if not local.start <= stamp < local.end:
        local.at(stamp)
    day, second = divmod(stamp + local.seconds, 86_400)
    if day != local.day:
        t = time.gmtime(day * 86_400)
        local.day = day
        local.date = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    two = _TWO
    return local.date + two[hour] + ":" + two[minute] + ":" + two[second] + local.suffix


_TWO: Final = [f"{n:02d}" for n in range(60)]


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().strftime("%H:%M")


def cookie(name: bytes, token: bytes, max_age: int, secure: bool) -> Header:
    """A guard cookie: first-party, HttpOnly, Lax (a link from a mail or a search result
    still carries it), for the whole site (the pass reaches cart and checkout)."""
    flags = _SECURE_FLAGS if secure else _FLAGS
    age = _AGES[max_age] if 0 <= max_age < len(_AGES) else str(max(0, max_age)).encode()
    return (b"Set-Cookie", name + b"=" + token + b"; Max-Age=" + age + flags)


_FLAGS: Final = b"; Path=/; HttpOnly; SameSite=Lax"
_SECURE_FLAGS: Final = b"; Path=/; HttpOnly; SameSite=Lax; Secure"
_AGES: Final = [str(n).encode() for n in range(1024)]


def queue_answer(
    status: int, doc: tuple[bytes, int], body_html: bytes | None, extra: list[Header],
    close: bool, head: bool,
) -> bytes:  # fmt: skip
    """The queue page (body_html given) or the JSON (``view_json``), never cacheable.
    Byte for byte ``simple_response`` with [type, PRIVATE, Retry-After, (CSP), *extra],
    from a head cached per status: an arrival is answered in one join."""
    body, refresh = doc
    html = body_html is not None
    payload = body_html if body_html is not None else body
    out = [
        _answer_head(status, html),
        _RETRY[refresh] if 0 <= refresh < 64 else str(refresh).encode(),
        _AFTER_RETRY_HTML if html else b"\r\n",
    ]
    for name, value in extra:
        out += (name, b": ", value, b"\r\n")
    out += (b"Content-Length: ", str(len(payload)).encode(), _CLOSE_END if close else b"\r\n\r\n")
    if not head:
        out.append(payload)
    return b"".join(out)


_RETRY: Final = [str(n).encode() for n in range(64)]
# Every queue answer carries it, so a client (guard surge) tells the line from the page.
QUEUE_MARK: Final = (b"X-Guard-Queue", b"1")
_AFTER_RETRY_HTML: Final = b"\r\n" + CSP[0] + b": " + CSP[1] + b"\r\n"
_CLOSE_END: Final = b"\r\nConnection: close\r\n\r\n"
_HEADS: Final[dict[int, bytes]] = {}
_EMPTY_END: Final = b"Content-Length: 0\r\n\r\n"


def _answer_head(status: int, html: bool) -> bytes:
    """The status line and the fixed headers of a queue answer, up to "Retry-After: "."""
    key = status * 2 + 1 if html else status * 2
    cached = _HEADS.get(key)
    if cached is not None:
        return cached
    fixed = simple_response(
        status, [HTML_TYPE if html else JSON_TYPE, PRIVATE, QUEUE_MARK], b"", False
    )
    head = fixed[: -len(_EMPTY_END)] + b"Retry-After: "
    _HEADS[key] = head
    return head


def short_retry(
    waiting_page: bytes, html_ok: bool, error: str, rule: str, extra: list[Header],
    close: bool, head: bool,
) -> bytes:  # fmt: skip
    """A pass holder refused for now (a ceiling, or too many requests on one pass): come
    back in a second, keeping the pass."""
    status = 503 if error == "over_capacity" else 429
    retry = (b"Retry-After", b"1")
    if html_ok:
        headers = [HTML_TYPE, PRIVATE, retry, *extra]
        return simple_response(status, headers, waiting_page, close, head)
    body = json.dumps({"error": error, "rule": rule, "retry_after": 1}).encode()
    return simple_response(status, [JSON_TYPE, PRIVATE, retry, *extra], body, close, head)


def poll_error(status: int, error: str, close: bool) -> bytes:
    body = json.dumps({"error": error}).encode()
    return simple_response(status, [JSON_TYPE, PRIVATE], body, close)
