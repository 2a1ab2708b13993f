"""Responses guard writes itself: refusals, errors, the waiting page and its assets.

Everything is read at start and on reload and served from memory; refusal responses are
pre-rendered per (rule, outcome, format) on first use, so shedding load costs one dict
lookup and one write.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any, Final

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


class Pages:
    """The waiting page, static assets and pre-rendered refusals of one config generation."""

    def __init__(self, waiting_page: Path, static_dir: Path, retry_after: int) -> None:
        self.waiting = waiting_page.read_bytes()
        self.retry_after = retry_after
        self.assets = _load_assets(static_dir)
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def refusal(
        self, rule: str, outcome: str, status: int, html: bool, close: bool, head: bool
    ) -> bytes:
        key = (rule, outcome, status, html, close, head)
        found = self._cache.get(key)
        if found is None:
            found = self._render_refusal(rule, outcome, status, html, close, head)
            if len(self._cache) < 4096:
                self._cache[key] = found
        return found

    def _render_refusal(
        self, rule: str, outcome: str, status: int, html: bool, close: bool, head: bool
    ) -> bytes:
        retry = (b"Retry-After", str(self.retry_after).encode())
        if html:
            return simple_response(status, [_HTML, _NO_STORE, retry], self.waiting, close, head)
        doc = {"error": outcome, "rule": rule, "retry_after": self.retry_after}
        body = json.dumps(doc).encode()
        return simple_response(status, [_JSON, _NO_STORE, retry], body, close, head)

    def error(self, status: int, close: bool, head: bool = False) -> bytes:
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
