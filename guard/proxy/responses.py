"""Responses guard writes itself: refusals, errors, the waiting and maintenance pages and
their assets.

Everything is read at start and on reload and served from memory. JSON refusals are
pre-rendered per (rule, outcome, status) on first use, so shedding load costs one dict
lookup and one write; the HTML pages are templates split at load, so a browser's page
(which quotes its request id) costs one join. The page is chosen by the refusal's outcome
word: ``unavailable`` (no backend up) gets the maintenance page, every other the waiting page.
"""

from __future__ import annotations

import html
import json
import mimetypes
import re
from pathlib import Path
from typing import Any, Final, Protocol

from guard.proxy.headers import simple_response

STATIC_PREFIX: Final = "/__guard/static/"
MAX_ASSET_BYTES: Final = 2 * 1024 * 1024
# Only web assets: ops often keep the waiting page next to the config and logs.
ASSET_SUFFIXES: Final = frozenset(
    {".html", ".htm", ".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp",
     ".ico", ".woff", ".woff2", ".txt"}
)  # fmt: skip
_NO_STORE: Final = (b"Cache-Control", b"no-store")
_JSON: Final = (b"Content-Type", b"application/json")
_HTML: Final = (b"Content-Type", b"text/html; charset=utf-8")
_ERRORS: Final = {
    400: "bad_request",
    403: "blocked",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    499: "client_closed_request",
    501: "not_implemented",
    502: "bad_gateway",
    504: "gateway_timeout",
    505: "http_version_not_supported",
}


def error_body(status: int) -> bytes:
    return json.dumps({"error": _ERRORS.get(status, "error")}).encode()


# {{name}} in a page. Values known at load are filled in then; the two that change with
# every request are left as slots between pre-joined parts.
_PLACEHOLDER: Final = re.compile(rb"\{\{\s*([a-z_]+)\s*\}\}")
PER_REQUEST: Final = ("rule", "request_id")
SHIPPED_STATIC: Final = Path(__file__).resolve().parent.parent / "static"
# The statuses for which browsers get the small HTML error page instead of JSON.
HTML_ERRORS: Final = frozenset({502, 503, 504})


class Template:
    """A page split once, at load, into fixed parts and per-request slots, so rendering a
    refusal is one join. Every substituted value is HTML-escaped; a page without
    placeholders (a custom one from before templates) is served as it is."""

    __slots__ = ("parts", "slots")

    def __init__(self, source: bytes, values: dict[str, str]) -> None:
        self.parts: list[bytes] = []
        self.slots: list[int] = []  # index into PER_REQUEST, one per gap between parts
        pending: list[bytes] = []
        pos = 0
        for found in _PLACEHOLDER.finditer(source):
            pending.append(source[pos : found.start()])
            name = found.group(1).decode()
            if name in values:
                pending.append(html.escape(values[name]).encode())
            elif name in PER_REQUEST:
                self.parts.append(b"".join(pending))
                self.slots.append(PER_REQUEST.index(name))
                pending = []
            else:
                pending.append(found.group(0))  # not ours (say, a script's own braces)
            pos = found.end()
        pending.append(source[pos:])
        self.parts.append(b"".join(pending))

    def render(self, rule: str, request_id: bytes | None) -> bytes:
        if not self.slots:
            return self.parts[0]
        per_request = (
            html.escape(rule).encode(),
            html.escape(request_id.decode("latin-1")).encode() if request_id else b"-",
        )
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            out.append(per_request[slot])
            out.append(part)
        return b"".join(out)


class PagesConfigLike(Protocol):
    """What Pages reads of guard.config.Config (a Protocol: guard/proxy imports no config)."""

    @property
    def waiting_page(self) -> Path: ...
    @property
    def maintenance_page(self) -> Path: ...
    @property
    def static_dir(self) -> Path: ...
    @property
    def retry_after_s(self) -> int: ...
    @property
    def logo_url(self) -> str: ...
    @property
    def page(self) -> BrandingLike: ...


class BrandingLike(Protocol):
    @property
    def shop_name(self) -> str: ...
    @property
    def primary_color(self) -> str: ...


class Pages:
    """The waiting, maintenance and error pages, the static assets and the pre-rendered
    refusals of one config generation."""

    def __init__(
        self,
        waiting_page: Path,
        static_dir: Path,
        retry_after: int,
        *,
        maintenance_page: Path | None = None,
        values: dict[str, str] | None = None,
    ) -> None:
        self.retry_after = retry_after
        # The meta refresh is the fallback without JavaScript: after the script's longest wait.
        filled = {"shop_name": "", "logo_url": "/__guard/static/logo.svg"}
        filled |= {"primary_color": "#3b6ef5", **(values or {})}
        filled |= {"retry_after": str(retry_after), "refresh_after": str(retry_after * 3 // 2)}
        self.waiting = Template(waiting_page.read_bytes(), filled)
        maintenance = maintenance_page or SHIPPED_STATIC / "maintenance.html"
        self.maintenance = Template(maintenance.read_bytes(), filled)
        error_page = (SHIPPED_STATIC / "error.html").read_bytes()
        self.error_pages = {
            s: Template(error_page, filled | {"status": str(s)}) for s in HTML_ERRORS
        }
        self.assets = _load_assets(static_dir)
        self._cache: dict[tuple[Any, ...], bytes] = {}

    @classmethod
    def from_config(cls, cfg: PagesConfigLike) -> Pages:
        branding = {"shop_name": cfg.page.shop_name, "primary_color": cfg.page.primary_color}
        return cls(
            cfg.waiting_page,
            cfg.static_dir,
            cfg.retry_after_s,
            maintenance_page=cfg.maintenance_page,
            values={**branding, "logo_url": cfg.logo_url},
        )

    def refusal(
        self,
        rule: str,
        outcome: str,
        status: int,
        html: bool,
        close: bool,
        head: bool,
        request_id: bytes | None = None,
    ) -> bytes:
        if html:  # a page with this request's id in it: rendered per request, one join
            page = self.maintenance if outcome == "unavailable" else self.waiting
            body = page.render(rule, request_id)
            headers = [_HTML, _NO_STORE, (b"Retry-After", str(self.retry_after).encode())]
            return simple_response(status, headers, body, close, head)
        key = (rule, outcome, status, close, head)
        found = self._cache.get(key)
        if found is None:
            found = self._render_refusal(rule, outcome, status, close, head)
            if len(self._cache) < 4096:
                self._cache[key] = found
        return found

    def _render_refusal(
        self, rule: str, outcome: str, status: int, close: bool, head: bool
    ) -> bytes:
        retry = (b"Retry-After", str(self.retry_after).encode())
        doc = {"error": outcome, "rule": rule, "retry_after": self.retry_after}
        body = json.dumps(doc).encode()
        return simple_response(status, [_JSON, _NO_STORE, retry], body, close, head)

    def error(
        self,
        status: int,
        close: bool,
        head: bool = False,
        html: bool = False,
        request_id: bytes | None = None,
    ) -> bytes:
        """guard's own error answer: JSON, or for a browser a small HTML page on 502-504."""
        page = self.error_pages.get(status) if html else None
        if page is not None:
            body = page.render("", request_id)
            return simple_response(status, [_HTML, _NO_STORE], body, close, head)
        return simple_response(status, [_JSON, _NO_STORE], error_body(status), close, head)

    def asset(self, path: str, close: bool, head: bool) -> bytes:
        found = self.assets.get(path[len(STATIC_PREFIX) :])
        if found is None:
            return self.error(404, close, head)
        ctype, body = found
        headers = [(b"Content-Type", ctype), (b"Cache-Control", b"public, max-age=300")]
        return simple_response(200, headers, body, close, head)


def _load_assets(folder: Path) -> dict[str, tuple[bytes, bytes]]:
    """Web assets (by suffix) in `folder` and below, by relative POSIX path. Guard serves
    only these names from memory, so no request path can reach the file system, and a
    config file or log kept beside the waiting page is never served."""
    assets: dict[str, tuple[bytes, bytes]] = {}
    if not folder.is_dir():
        return assets
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue  # no dotfiles or dot-folders (.git, .env)
        if file.suffix.lower() not in ASSET_SUFFIXES:
            continue
        if file.is_file() and file.stat().st_size <= MAX_ASSET_BYTES:
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
                ctype += "; charset=utf-8"
            assets[file.relative_to(folder).as_posix()] = (ctype.encode(), file.read_bytes())
    return assets
