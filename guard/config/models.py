"""guard's configuration: YAML -> validated, frozen pydantic models.

Field names are the user contract (docs/DESIGN.md, "Config model"). Every problem
is reported with the file, the YAML line and a dotted key path, all at once, so an
operator fixes a file in one pass (``errors`` does that translation; the value
types live in ``types``, the line-keeping YAML reader in ``reader`` and the
sections the top-level ``Config`` holds in ``sections``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from guard.config.admin import AdminHost, TokenFile
from guard.config.checks import (
    affinity_warnings,
    method_warnings,
    reserve_conflicts,
    route_conflicts,
)
from guard.config.cluster import Cluster
from guard.config.errors import (
    ConfigError,
    Problem,
    conflicts,
    duplicate_names,
    key_path,
    raw_duplicate_problems,
    translate,
)
from guard.config.reader import read_yaml
from guard.config.rooms import Room, check_rooms
from guard.config.sections import (
    MODEL,
    SHIPPED_STATIC,
    AccessLog,
    Backend,
    Limits,
    Page,
    Rule,
    StickyCookie,
    Timeouts,
    checking_files,
    file_error,
    resolve,
)
from guard.config.types import (
    CookieNames,
    DurationOrZero,
    HeaderNames,
    HostPort,
    NetworkList,
    PositiveInt,
    SessionParams,
    Size,
    shown,
)

__all__ = ["Config", "LoadedConfig", "load_config", "parse_config"]

# Headers a WAS may trust, never taken from a client (see strip_headers in the README).
STRIP_HEADERS = (
    "X-Real-IP",
    "True-Client-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
)
_IMAGES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico"})


class Config(BaseModel):
    model_config = MODEL

    listen: HostPort = HostPort(host="0.0.0.0", port=8000)
    admin_listen: HostPort = HostPort(host="127.0.0.1", port=9100)
    admin_hosts: tuple[AdminHost, ...] = ()  # Host names served beyond loopback (rebinding)
    admin_token_file: TokenFile = None  # bearer token for every admin endpoint but /healthz
    workers: PositiveInt = 1
    max_active: PositiveInt | None = None  # site-wide ceiling
    # Defaults: the bilingual pages shipped inside the package (guard/static).
    waiting_page: Path = Field(default=SHIPPED_STATIC / "waiting.html", validate_default=True)
    maintenance_page: Path = Field(
        default=SHIPPED_STATIC / "maintenance.html", validate_default=True
    )
    # Typed Path, not Path | None: it is always set after validation (default: the
    # waiting page's folder), so no consumer has to handle None.
    static_dir: Path = Field(default=None, validate_default=True)
    retry_after: DurationOrZero = 5.0
    trusted_proxies: NetworkList = ()
    block_ips: NetworkList = ()
    strip_headers: HeaderNames = STRIP_HEADERS
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    client_max_size: Size = 100 << 20
    access_log: AccessLog = AccessLog()
    page: Page = Page()
    backends: tuple[Backend, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = ()
    rooms: tuple[Room, ...] = ()
    # Session affinity (README "Session affinity"): the path parameters kept for the
    # backend and read for routes, the cookies read for routes, guard's own cookie.
    session_params: SessionParams = ("jsessionid",)
    session_cookies: CookieNames = ("JSESSIONID",)
    sticky_cookie: StickyCookie | None = None
    cluster: Cluster | None = None  # several instances share ceilings and rates (Redis)

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after))

    @property
    def logo_url(self) -> str:
        """Where the pages load the logo from: the configured URL, the configured file in
        static_dir (served under /__guard/static/), or the shipped logo."""
        logo = self.page.logo
        if logo is None:
            return "/__guard/static/logo.svg"
        return logo if self.page.logo_is_url else "/__guard/static/" + logo

    @field_validator("waiting_page", "maintenance_page")
    @classmethod
    def _check_waiting_page(cls, value: Path, info: ValidationInfo) -> Path:
        value = resolve(value, info)
        if checking_files(info):
            if not value.is_file():
                raise file_error("no such file", value)
            try:
                value.open("rb").close()
            except OSError as exc:
                raise file_error(f"cannot read ({exc.strerror})", value) from None
        return value

    @field_validator("static_dir", mode="wrap")
    @classmethod
    def _static_dir(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Path:
        if value is None:  # default: the waiting page's folder, which exists if it does
            page = info.data.get("waiting_page")
            # Without a valid waiting page the config fails anyway; "." adds no noise.
            return page.parent if isinstance(page, Path) else Path(".")
        path: Path = resolve(handler(value), info)
        if checking_files(info) and not path.is_dir():
            raise file_error("no such folder", path)
        return path

    @field_validator("page")
    @classmethod
    def _logo_in_static_dir(cls, value: Page, info: ValidationInfo) -> Page:
        folder = info.data.get("static_dir")
        if value.logo is None or value.logo_is_url or not isinstance(folder, Path):
            return value
        if not checking_files(info):
            return value
        logo = Path(os.path.normpath(folder / value.logo))
        if folder not in logo.parents or logo.suffix.lower() not in _IMAGES:
            reason = f"expected a URL or a web image file inside static_dir ({folder})"
            raise conflicts([(("logo",), f"{reason}, got {shown(value.logo)}")])
        if not logo.is_file():
            raise conflicts([(("logo",), f"no such file: {logo}")])
        return value

    @field_validator("backends", "rules")
    @classmethod
    def _unique_names(
        cls, value: tuple[Backend | Rule, ...], info: ValidationInfo
    ) -> tuple[Backend | Rule, ...]:
        found = duplicate_names(info.field_name or "", [item.name for item in value])
        if found:
            raise conflicts(found)
        return value

    @model_validator(mode="after")
    def _across_sections(self) -> Config:
        found = check_rooms(self)
        found += reserve_conflicts(self.max_active, self.backends, self.rules)
        found += route_conflicts(self.backends)
        if found:
            raise conflicts(found)
        return self


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    path: Path
    sha256: str
    loaded_at: float
    warnings: tuple[Problem, ...] = ()  # loads, but probably a mistake (guard check shows them)


def parse_config(text: str, path: Path) -> Config:
    """Validate YAML ``text`` as if read from ``path``; raise ConfigError with every problem."""
    return parse_config_warnings(text, path)[0]


def parse_config_warnings(text: str, path: Path) -> tuple[Config, list[Problem]]:
    """parse_config(), and the warnings about the settings that loaded."""
    file = str(path)
    doc = read_yaml(text)
    problems = [Problem(file, i.line, key_path(i.loc), i.message) for i in doc.issues]
    if doc.data is not None and not isinstance(doc.data, dict):
        problems.append(Problem(file, doc.line_of(()), "config", "expected a mapping of settings"))
    if isinstance(doc.data, dict):
        context = {"base_dir": Path(path).absolute().parent}
        try:
            config = Config.model_validate(doc.data, context=context)
        except ValidationError as exc:
            problems += translate(exc, file, doc, Config)
            problems += raw_duplicate_problems(doc, file)
        else:
            if not problems:
                warnings = method_warnings(config.rules, doc, file)
                cookie = config.sticky_cookie is not None
                warnings += affinity_warnings(cookie, config.backends, doc, file)
                return config, warnings
    raise ConfigError(problems)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate the file at ``path`` (stamped with its sha256 and load time)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "file", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem(str(path), line, "file", "not valid UTF-8")]) from None
    config, warnings = parse_config_warnings(text, path)
    digest = hashlib.sha256(raw).hexdigest()
    return LoadedConfig(config, path, digest, time.time(), tuple(warnings))
