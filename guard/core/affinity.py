"""Session affinity settings, read once per configuration for the data path.

The data path looks for a session route only when some backend has a ``route``
(Admission.affinity is None otherwise: no cost at all). In order, a request's route is:

1. guard's own affinity cookie (``sticky_cookie``), when configured: HAProxy's
   ``cookie NAME insert indirect nocache``. guard sets it on responses from a backend with
   a route when the client's value differs, routes by it, and removes it from the Cookie
   header the backend receives (indirect);
2. the first of the ``session_cookies`` (default JSESSIONID) whose value ends in
   ``.<route>`` (Tomcat's jvmRoute);
3. the kept path parameter (``session_params``, default jsessionid: ``;jsessionid=A1.jvm1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StickyCookieSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def secure(self) -> bool: ...


class Affinity:
    """What the proxy needs to find a request's route and to set the affinity cookie."""

    __slots__ = ("cookie", "cookies", "set_cookie")

    def __init__(
        self,
        routes: Sequence[str],
        session_cookies: Sequence[str],
        sticky_cookie: StickyCookieSpec | None,
    ) -> None:
        # Cookie names are case-sensitive (RFC 6265): compared as configured.
        self.cookies = tuple(name.encode("latin-1") for name in session_cookies)
        self.cookie: bytes | None = None  # guard's own affinity cookie
        # route -> the header lines guard adds to a response to set it (built once)
        self.set_cookie: dict[str, bytes] = {}
        if sticky_cookie is not None:
            self.cookie = sticky_cookie.name.encode("latin-1")
            attributes = f"; Path={sticky_cookie.path}; HttpOnly; SameSite=Lax"
            if sticky_cookie.secure:
                attributes += "; Secure"
            for route in routes:
                line = f"Set-Cookie: {sticky_cookie.name}={route}{attributes}\r\n"
                # nocache: a shared cache must not hand one shopper's cookie to others.
                self.set_cookie[route] = (line + "Cache-Control: private\r\n").encode("latin-1")
