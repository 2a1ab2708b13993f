"""The room tokens a request presents: cookies for browsers, X-Guard-* headers for apps.

The X-Guard-Place / X-Guard-Pass headers are taken off the request here: they never reach
the backend. Tokens stay bytes (the token reader takes them as they came, no decoding).
"""

from __future__ import annotations

from typing import Final

from guard.proxy.headers import Header, RequestMeta
from guard.proxy.room_state import Room

_PLACE_HEADER: Final = b"x-guard-place"
_PASS_HEADER: Final = b"x-guard-pass"
_COOKIE_HEADER: Final = b"cookie"
_NAME_LENGTHS: Final = (len(_COOKIE_HEADER), len(_PASS_HEADER), len(_PLACE_HEADER))
# What str.strip() removes from a latin-1 header value: the header tokens were once read
# as text, and a token with such bytes around it must still be read the same way.
_SPACE: Final = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"


class Presented:
    """The room tokens a request carries, by cookie or (apps) by header."""

    __slots__ = ("header_mode", "pass_token", "place_token")

    def __init__(self) -> None:
        self.pass_token = b""
        self.place_token = b""
        self.header_mode = False


def presented(room: Room, headers: list[Header], meta: RequestMeta) -> Presented:
    """The tokens for ``room``; the X-Guard-* headers never reach the backend."""
    found = Presented()
    strip = False
    for name, value in headers:
        if len(name) not in _NAME_LENGTHS:  # most headers: no lower() needed to skip them
            continue
        lname = name.lower()
        if lname == _COOKIE_HEADER:
            for part in value.split(b";"):
                key, _, token = part.strip().partition(b"=")
                if key == room.pass_cookie:
                    found.pass_token = token
                elif key == room.place_cookie:
                    found.place_token = token
        elif lname == _PASS_HEADER:
            strip = True
            found.pass_token = value.strip(_SPACE)
        elif lname == _PLACE_HEADER:
            strip = True
            found.place_token = value.strip(_SPACE)
    if strip:
        meta.kept = [h for h in meta.kept if h[0].lower() not in (_PASS_HEADER, _PLACE_HEADER)]
    # Apps (no HTML accepted) get their tokens in X-Guard-* response headers too.
    found.header_mode = strip or not meta.accept_html
    return found
