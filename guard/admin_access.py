"""Who may use the admin port: its operators, not the browsers they happen to run.

Three checks, in this order, on every admin request but ``/healthz`` (a load balancer's
liveness probe, which reveals nothing):

1. **Host** (DNS rebinding): a page on ``evil.example`` whose name is re-pointed at
   127.0.0.1 reaches the admin port same-origin, but its requests carry
   ``Host: evil.example``. Served Hosts: the loopback names (127.0.0.1, localhost, [::1])
   and ``admin_listen``'s host with the admin port, the address the connection arrived
   on, and the names in ``admin_hosts``. Anything else: 403.
2. **Origin** (CSRF, cross-site reads): a request whose ``Origin`` is present and not the
   admin origin, or whose ``Sec-Fetch-Site`` is ``cross-site``/``same-site``: 403. Reads
   too: a foreign page's ``EventSource`` would hold a live-view slot and, with the cookie
   (sent to every port of the host), be served. Exempt: a top-level GET navigation
   without ``Origin`` (an operator following a link; the other site cannot read it).
   curl sends neither header and keeps working.
3. **Token** (``admin_token_file``): ``Authorization: Bearer <token>``, or the cookie
   ``guard_admin`` that ``?token=<token>`` on any admin page sets (HttpOnly,
   SameSite=Strict; EventSource cannot send headers). Missing or wrong: 401.

Every answer also carries headers that keep a browser from sniffing, framing or leaking it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from guard.config.admin import read_token

if TYPE_CHECKING:
    from guard.config import Config

__all__ = ["COOKIE", "AdminAccess", "access_middleware", "refusal"]

COOKIE: Final = "guard_admin"
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
UNGUARDED_PATHS: Final = frozenset({"/healthz"})
HARDENING: Final[Mapping[str, str]] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AdminAccess:
    """The admin protection of the running config (rebuilt on every reload)."""

    hosts: tuple[str, ...] = ()  # admin_hosts: lower-case "name" or "name:port"
    listen_host: str = "127.0.0.1"  # admin_listen's host, as a Host header spells it
    token: str | None = None  # admin_token_file's content; None: no token required

    @staticmethod
    def from_config(cfg: Config) -> AdminAccess:
        """Reads the token file (OSError/ValueError when it cannot be used)."""
        host = cfg.admin_listen.host.lower()
        token = read_token(cfg.admin_token_file) if cfg.admin_token_file else None
        return AdminAccess(tuple(cfg.admin_hosts), f"[{host}]" if ":" in host else host, token)

    def host_allowed(self, host: str, local: tuple[str, int] | None) -> bool:
        """Is ``host`` (a Host header) a name of this admin port? ``local``: the address
        the connection arrived on (its port is the admin port, also when bound to 0)."""
        name, raw_port = _split_host(host.strip().lower())
        port = _port(raw_port or "80")
        if port is None or local is None:
            return False
        admin_port = local[1]
        arrived = f"[{local[0]}]" if ":" in local[0] else local[0]
        if port == admin_port and name in (*LOOPBACK_NAMES, self.listen_host, arrived):
            return True
        for entry in self.hosts:
            entry_name, entry_port = _split_host(entry)
            if name == entry_name and port == (_port(entry_port) if entry_port else admin_port):
                return True
        return False

    def token_matches(self, given: str | None) -> bool:
        if self.token is None or not given:
            return False
        return hmac.compare_digest(
            given.encode("utf-8", "replace"), self.token.encode("utf-8", "replace")
        )


def _split_host(host: str) -> tuple[str, str]:
    """'name:port' / '[v6]:port' / 'name' -> (name, port text, "" when absent)."""
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return host, "invalid"
        return name, rest[1:]
    name, _, port = host.partition(":")
    return name, port


def _port(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) <= 65535 else None


def refusal(access: AdminAccess, request: web.Request) -> web.StreamResponse | None:
    """The answer that refuses ``request``, or None to serve it."""
    if request.path in UNGUARDED_PATHS:
        return None
    host = request.headers.get("Host", "")
    if not access.host_allowed(host, _local(request)):
        return _refuse(403, "forbidden_host", "this Host is not a name of the admin port; "
                       "add it to admin_hosts")  # fmt: skip
    if _cross_origin(request, host) and not _navigation(request):
        return _refuse(403, "forbidden_origin", "cross-origin requests are refused")
    if access.token is None:
        return None
    query_token = request.query.get("token")
    if query_token is not None:
        return _token_login(access, request, query_token)
    bearer = request.headers.get("Authorization", "")
    scheme, _, credentials = bearer.partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE)
    if access.token_matches(given):
        return None
    return _unauthorized()


def _cross_origin(request: web.Request, host: str) -> bool:
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    # https too: the admin port may sit behind a TLS-terminating proxy named in admin_hosts.
    host = host.strip().lower()
    return origin.lower() not in (f"http://{host}", f"https://{host}")


def _navigation(request: web.Request) -> bool:
    """A top-level GET the user made (address bar, bookmark, link): not a page's read."""
    headers = request.headers
    return (
        request.method in SAFE_METHODS
        and headers.get("Sec-Fetch-Mode", "").lower() == "navigate"
        and headers.get("Sec-Fetch-Dest", "document").lower() == "document"
        and "Origin" not in headers
    )


def _token_login(access: AdminAccess, request: web.Request, token: str) -> web.StreamResponse:
    """``?token=`` on a page: set the cookie and send the browser to the same page without
    the token (so it stays out of history and logs)."""
    if not access.token_matches(token) or request.method not in SAFE_METHODS:
        return _unauthorized()
    rest = {k: v for k, v in request.query.items() if k != "token"}
    location = request.rel_url.with_query(rest)
    response = web.Response(status=302, headers={"Location": str(location)})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


def _local(request: web.Request) -> tuple[str, int] | None:
    transport = request.transport
    sockname: Any = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple | list) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


def _refuse(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status)


def _unauthorized() -> web.Response:
    response = _refuse(401, "unauthorized", "send Authorization: Bearer <admin token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="guard admin"'
    return response


def access_middleware(access: Callable[[], AdminAccess]) -> Any:
    """aiohttp middleware applying ``access()`` (read per request: a reload changes it)."""

    @web.middleware
    async def protect(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = refusal(access(), request)
        if response is None:
            response = await handler(request)
        for name, value in HARDENING.items():
            response.headers.setdefault(name, value)
        return response

    return protect
