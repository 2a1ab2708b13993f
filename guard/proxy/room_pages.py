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


def view_doc(
    room: str, state: str, view: PlaceView, returns: Returns = NO_RETURN
) -> dict[str, object]:
    """The JSON of a poll (and of an API client's queue answer)."""
    known = view.eta_known
    return {
        "room": room,
        "state": state,
        "status": view.status,
        "position": view.position,
        "eta_seconds": math.ceil(view.eta_seconds) if known else None,
        "admit_at": _iso(view.admit_at) if known and view.admit_at else None,
        "refresh_seconds": refresh_of(view),
        "return_offered": returns.offered,
        "return_url": return_url(room) if returns.offered else None,
        "return_at": _iso(returns.held_until) if returns.held_until else None,
    }


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


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().strftime("%H:%M")


def cookie(name: bytes, token: str, max_age: int, secure: bool) -> Header:
    """A guard cookie: first-party, HttpOnly, Lax (a link from a mail or a search result
    still carries it), for the whole site (the pass reaches cart and checkout)."""
    flags = (
        b"; Path=/; HttpOnly; SameSite=Lax; Secure"
        if secure
        else b"; Path=/; HttpOnly; SameSite=Lax"
    )
    value = b"%s=%s; Max-Age=%d%s" % (name, token.encode("ascii"), max(0, max_age), flags)
    return (b"Set-Cookie", value)


def queue_answer(
    status: int, doc: dict[str, object], body_html: bytes | None, extra: list[Header],
    close: bool, head: bool,
) -> bytes:  # fmt: skip
    """The queue page (body_html given) or the JSON, never cacheable."""
    retry = (b"Retry-After", str(doc["refresh_seconds"]).encode())
    if body_html is not None:
        headers = [HTML_TYPE, PRIVATE, retry, CSP, *extra]
        return simple_response(status, headers, body_html, close, head)
    body = json.dumps(doc).encode()
    return simple_response(status, [JSON_TYPE, PRIVATE, retry, *extra], body, close, head)


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
