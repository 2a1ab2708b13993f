"""The admin port's protection keys: ``admin_hosts`` and ``admin_token_file``.

``admin_hosts``: the names (``host`` or ``host:port``) a browser or tool may use to reach
the admin port, beyond the loopback names and ``admin_listen``'s own host; every other
Host is refused (DNS rebinding). ``admin_token_file``: a file holding a bearer token that
every admin endpoint but /healthz then requires. The token is read when the config is
loaded (so a reload rotates it); a file other users may read is accepted with a warning.
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, ValidationInfo
from pydantic_core import PydanticCustomError

from guard.config.sections import checking_files, file_error, resolve
from guard.config.types import shown

__all__ = ["AdminHost", "read_token", "token_file"]

log: Final = logging.getLogger("guard.config")

ADMIN_HOST_FORM = 'expected a host name like "guard.internal" or "guard.internal:9100"'
_ADMIN_HOST = re.compile(
    r"(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::(?P<port>\d{1,5}))?"
)
# RFC 6750 b64token, minus the padding subtleties: what fits in "Authorization: Bearer ...".
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/=]+")


def _admin_host(value: Any) -> str:
    if isinstance(value, str):
        host = value.strip().lower()
        m = _ADMIN_HOST.fullmatch(host)
        if m and (m["port"] is None or 0 < int(m["port"]) <= 65535):
            return host
    raise PydanticCustomError(
        "guard_admin_host", "{form}, got {got}", {"form": ADMIN_HOST_FORM, "got": shown(value)}
    )


AdminHost = Annotated[str, BeforeValidator(_admin_host)]


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace and the final newline dropped).
    Raises ValueError with the reason when it cannot be used as a bearer token."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        raise ValueError("the token file is empty")
    if not _TOKEN.fullmatch(text):
        raise ValueError("expected one token of letters, digits and -._~+/= (no spaces)")
    return text


def token_file(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = resolve(value, info)
    if not checking_files(info):
        return path
    if not path.is_file():
        raise file_error("no such file", path)
    try:
        read_token(path)
    except OSError as exc:
        raise file_error(f"cannot read ({exc.strerror})", path) from None
    except ValueError as exc:
        raise file_error(str(exc), path) from None
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "admin_token_file %s is readable by other users; chmod 600 it (owner only)", path
        )
    return path


TokenFile = Annotated[Path | None, AfterValidator(token_file)]
