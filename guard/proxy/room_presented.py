"""The room tokens a request presents: cookies for browsers, X-Guard-* headers for apps.

The X-Guard-Place / X-Guard-Pass headers are taken off the request here: they never reach
the backend.
"""

from __future__ import annotations

from typing import Final

from guard.proxy.headers import Header, RequestMeta
from guard.proxy.room_state import Room

_PLACE_HEADER: Final = b"x-guard-place"
_PASS_HEADER: Final = b"x-guard-pass"


class Presented:
    """The room tokens a request carries, by cookie or (apps) by header."""

    __slots__ = ("header_mode", "pass_token", "place_token")

    def __init__(self) -> None:
        self.pass_token = ""
        self.place_token = ""
        self.header_mode = False


def presented(room: Room, headers: list[Header], meta: RequestMeta) -> Presented:
    """The tokens for ``room``; the X-Guard-* headers never reach the backend."""
    found = Presented()
    strip = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"cookie":
            for part in value.split(b";"):
                key, _, token = part.strip().partition(b"=")
                if key == room.pass_cookie:
                    found.pass_token = token.decode("latin-1")
                elif key == room.place_cookie:
                    found.place_token = token.decode("latin-1")
        elif lname in (_PASS_HEADER, _PLACE_HEADER):
            strip = True
            if lname == _PASS_HEADER:
                found.pass_token = value.decode("latin-1").strip()
            else:
                found.place_token = value.decode("latin-1").strip()
    if strip:
        meta.kept = [h for h in meta.kept if h[0].lower() not in (_PASS_HEADER, _PLACE_HEADER)]
    # Apps (no HTML accepted) get their tokens in X-Guard-* response headers too.
    found.header_mode = strip or not meta.accept_html
    return found
