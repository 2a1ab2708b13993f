"""The sections of guard's configuration: backends, rules and the settings groups.

Each is a frozen pydantic model whose field names are the user contract
(docs/DESIGN.md, "Config model"); the top-level ``Config`` in ``models`` holds them.
The path helpers live here too because both a section (``AccessLog.path``) and the
top level (``waiting_page``, ``static_dir``) resolve files against the config's folder.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from guard.config.errors import conflicts
from guard.config.types import (
    BackendUrl,
    CookieName,
    Duration,
    DurationOrZero,
    Flag,
    HealthPath,
    Methods,
    Name,
    NonNegativeInt,
    PathPattern,
    PositiveInt,
    Rate,
    Route,
    Size,
    shown,
)

__all__ = [
    "MODEL",
    "SHIPPED_STATIC",
    "AccessLog",
    "Backend",
    "Health",
    "Limits",
    "Page",
    "Rule",
    "StickyCookie",
    "Timeouts",
    "checking_files",
    "file_error",
    "resolve",
]

MODEL = ConfigDict(frozen=True, extra="forbid")
# The pages and assets shipped inside the package: the defaults when the config names none.
SHIPPED_STATIC = Path(__file__).resolve().parent.parent / "static"


def resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's folder, never to the cwd."""
    base = (info.context or {}).get("base_dir")
    if base is None or value.is_absolute():
        return value
    return Path(os.path.normpath(Path(base) / value))


def checking_files(info: ValidationInfo) -> bool:
    # Files are checked when a config file is loaded; models built in code (tests of
    # other layers) are not tied to the filesystem.
    return bool((info.context or {}).get("base_dir"))


def file_error(reason: str, path: Path) -> PydanticCustomError:
    context = {"reason": reason, "path": str(path)}
    return PydanticCustomError("guard_file", "{reason}: {path}", context)


def output_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """A file guard writes (a log, a state file): resolved, its folder must exist."""
    if value is None:
        return None
    value = resolve(value, info)
    if checking_files(info) and not value.parent.is_dir():
        raise file_error("folder does not exist", value.parent)
    return value


class Timeouts(BaseModel):
    model_config = MODEL

    connect: Duration = 2.0
    read: Duration = 30.0  # idle time between bytes from the backend, not a total
    # After a 504 the slot stays taken until the backend answers or this passes, counted
    # like read (the backend most likely still works on the request).
    abandon: Duration = 120.0
    shutdown: DurationOrZero = 30.0

    @model_validator(mode="after")
    def _abandon_after_read(self) -> Timeouts:
        if self.abandon < self.read:
            message = f"expected a duration >= timeouts.read ({self.read:g}s)"
            raise conflicts([(("abandon",), message)])
        return self


class Limits(BaseModel):
    model_config = MODEL

    header_timeout: Duration = 10.0
    body_timeout: Duration = 30.0
    keepalive_timeout: Duration = 60.0
    send_timeout: Duration = 30.0
    max_request_line: Size = 8192
    max_header_size: Size = 16384
    max_headers: PositiveInt = 100
    max_trailer_size: Size = 8192
    max_connections: PositiveInt = 10000
    max_tracked_clients: PositiveInt = 100000
    # Bytes per second a request body must average once body_timeout has passed: a body
    # trickled just under body_timeout per byte would otherwise hold its slot forever.
    min_body_rate: Size = 240
    # Request buffering: a body is read in full before admission, in memory up to
    # body_buffer_size, beyond it in an unlinked file in body_temp_dir (None: the system's
    # temporary folder), never past client_max_size.
    body_buffer_size: Size = 64 << 10
    body_temp_dir: Path | None = None
    # min_body_rate is kept over each window of this length, not on average over the body.
    body_rate_window: Duration = 10.0

    @field_validator("body_temp_dir")
    @classmethod
    def _check_temp_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = resolve(value, info)
        if checking_files(info) and not value.is_dir():
            raise file_error("no such folder", value)
        return value


def _log_format(value: Any) -> Any:
    return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class AccessLog(BaseModel):
    model_config = MODEL

    format: Annotated[Literal["json", "text", "off"], BeforeValidator(_log_format)] = "json"
    path: Path | None = None  # None: stdout
    # all: one line per refused request (the default, as before); sampled: at most
    # refusal_lines_per_second lines per rule, plus a summary line of what was left out.
    refusals: Literal["all", "sampled"] = "all"
    refusal_lines_per_second: PositiveInt = 20

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return output_file(value, info)


_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _colour(value: Any) -> Any:
    if not (isinstance(value, str) and _COLOUR.fullmatch(value)):
        form = 'expected a colour like "#1a73e8"'
        raise PydanticCustomError(
            "guard_colour", "{form}, got {got}", {"form": form, "got": shown(value)}
        )
    return value


class Page(BaseModel):
    """Branding of the pages guard serves itself (waiting, maintenance, errors)."""

    model_config = MODEL

    shop_name: Annotated[str, Field(max_length=100)] = ""
    # A URL ("https://...", "/img/logo.png") used as is, or a file in static_dir (checked
    # by the top level, which knows static_dir; see Config.logo_url).
    logo: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    primary_color: Annotated[str, BeforeValidator(_colour)] = "#3b6ef5"

    @property
    def logo_is_url(self) -> bool:
        return self.logo is not None and (self.logo.startswith(("/", "http://", "https://")))


class Health(BaseModel):
    model_config = MODEL

    path: HealthPath
    interval: Duration
    timeout: Duration = 2.0


class Backend(BaseModel):
    model_config = MODEL

    name: Name
    url: BackendUrl  # normalised to "http://host:port"
    max_active: PositiveInt
    drain: Flag = False
    cooldown: DurationOrZero = 5.0
    health: Health | None = None
    max_idle: NonNegativeInt = 64
    route: Route | None = None  # jvmRoute: session ids ending in ".<route>" come back here
    sticky: Literal["strict", "prefer"] = "strict"  # when full: refuse, or let another take it

    @property
    def host(self) -> str:
        return self.url[len("http://") :].rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


class Rule(BaseModel):
    model_config = MODEL

    name: Name
    path: PathPattern
    methods: Methods | None = None  # None: every method
    max_active: PositiveInt | None = None
    rate: Rate | None = None
    burst: PositiveInt | None = None
    per_client: Flag = False
    action: Literal["wait", "reject"] = "wait"
    bypass: Flag = False
    block: Flag = False
    room: Name | None = None  # a waiting room of the top-level `rooms:` list
    # False: the body streams to the backend as it arrives (admitted at the head).
    request_buffering: Flag = True
    reserve: NonNegativeInt = 0  # slots of the site and backend ceilings only this rule takes
    dry_run: Flag = False  # forward what the rule would refuse, counted as would_refuse

    @property
    def effective_burst(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.rate.per_second)) if self.rate else 1

    @field_validator("name")
    @classmethod
    def _not_default(cls, value: str) -> str:
        if value == "default":
            raise PydanticCustomError(
                "guard_reserved", '"default" is reserved for the implicit last rule'
            )
        return value

    @model_validator(mode="after")
    def _compatible(self) -> Rule:
        # Blame the key that cannot be there, on its own line, so the fix is obvious.
        found: list[tuple[tuple[str | int, ...], str]] = []
        for flag, others in (
            ("bypass", ("block", "max_active", "rate", "reserve", "dry_run")),
            ("block", ("max_active", "rate", "reserve", "dry_run")),
        ):
            if getattr(self, flag):
                found += [
                    ((key,), f"not allowed with {flag}: true")
                    for key in others
                    if getattr(self, key) not in (None, False)
                    and not (flag == "block" and self.bypass)
                ]
        if self.rate is None:
            found += [
                ((key,), "requires rate")
                for key in ("burst", "per_client")
                if getattr(self, key) not in (None, False)
            ]
        if self.max_active is not None and self.reserve > self.max_active:
            found.append(
                (("reserve",), f"must not exceed the rule's own max_active ({self.max_active})")
            )
        if found:
            raise conflicts(found)
        return self


class StickyCookie(BaseModel):
    """guard's own affinity cookie (HAProxy ``cookie NAME insert indirect nocache``)."""

    model_config = MODEL

    name: CookieName
    path: HealthPath = "/"  # a request path: the cookie's Path attribute
    secure: Flag = False  # add the Secure attribute (TLS terminated in front of guard)
