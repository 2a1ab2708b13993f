"""guard's configuration: YAML -> validated, frozen pydantic models.

Field names are the user contract (docs/DESIGN.md, "Config model"). Every problem
is reported with the file, the YAML line and a dotted key path, all at once, so an
operator fixes a file in one pass (``errors`` does that translation; the value
types live in ``types`` and the line-keeping YAML reader in ``reader``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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
from guard.config.types import (
    BackendUrl,
    Duration,
    DurationOrZero,
    Flag,
    HealthPath,
    HostPort,
    Methods,
    Name,
    NetworkList,
    NonNegativeInt,
    PathPattern,
    PositiveInt,
    Rate,
    Size,
)

__all__ = [
    "AccessLog",
    "Backend",
    "Config",
    "Health",
    "Limits",
    "LoadedConfig",
    "Rule",
    "Timeouts",
    "load_config",
    "parse_config",
]

_MODEL = ConfigDict(frozen=True, extra="forbid")


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the config file's folder, never to the cwd."""
    base = (info.context or {}).get("base_dir")
    if base is None or value.is_absolute():
        return value
    return Path(os.path.normpath(Path(base) / value))


def _checking_files(info: ValidationInfo) -> bool:
    # Files are checked when a config file is loaded; models built in code (tests of
    # other layers) are not tied to the filesystem.
    return bool((info.context or {}).get("base_dir"))


def _file_error(reason: str, path: Path) -> PydanticCustomError:
    context = {"reason": reason, "path": str(path)}
    return PydanticCustomError("guard_file", "{reason}: {path}", context)


class Timeouts(BaseModel):
    model_config = _MODEL

    connect: Duration = 2.0
    read: Duration = 30.0  # idle time between bytes from the backend, not a total
    shutdown: DurationOrZero = 30.0


class Limits(BaseModel):
    model_config = _MODEL

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


def _log_format(value: Any) -> Any:
    return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class AccessLog(BaseModel):
    model_config = _MODEL

    format: Annotated[Literal["json", "text", "off"], BeforeValidator(_log_format)] = "json"
    path: Path | None = None  # None: stdout

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = _resolve(value, info)
        if _checking_files(info) and not value.parent.is_dir():
            raise _file_error("folder does not exist", value.parent)
        return value


class Health(BaseModel):
    model_config = _MODEL

    path: HealthPath
    interval: Duration
    timeout: Duration = 2.0


class Backend(BaseModel):
    model_config = _MODEL

    name: Name
    url: BackendUrl  # normalised to "http://host:port"
    max_active: PositiveInt
    drain: Flag = False
    cooldown: DurationOrZero = 5.0
    health: Health | None = None
    max_idle: NonNegativeInt = 64

    @property
    def host(self) -> str:
        return self.url[len("http://") :].rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


class Rule(BaseModel):
    model_config = _MODEL

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
            ("bypass", ("block", "max_active", "rate")),
            ("block", ("max_active", "rate")),
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
        if found:
            raise conflicts(found)
        return self


class Config(BaseModel):
    model_config = _MODEL

    listen: HostPort = HostPort(host="0.0.0.0", port=8000)
    admin_listen: HostPort = HostPort(host="127.0.0.1", port=9100)
    workers: PositiveInt = 1
    max_active: PositiveInt | None = None  # site-wide ceiling
    waiting_page: Path = Field(default=Path("../static/waiting.html"), validate_default=True)
    # Typed Path, not Path | None: it is always set after validation (default: the
    # waiting page's folder), so no consumer has to handle None.
    static_dir: Path = Field(default=None, validate_default=True)
    retry_after: DurationOrZero = 5.0
    trusted_proxies: NetworkList = ()
    block_ips: NetworkList = ()
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    client_max_size: Size = 100 << 20
    access_log: AccessLog = AccessLog()
    backends: tuple[Backend, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = ()

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after))

    @field_validator("waiting_page")
    @classmethod
    def _check_waiting_page(cls, value: Path, info: ValidationInfo) -> Path:
        value = _resolve(value, info)
        if _checking_files(info):
            if not value.is_file():
                raise _file_error("no such file", value)
            try:
                value.open("rb").close()
            except OSError as exc:
                raise _file_error(f"cannot read ({exc.strerror})", value) from None
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
        path: Path = _resolve(handler(value), info)
        if _checking_files(info) and not path.is_dir():
            raise _file_error("no such folder", path)
        return path

    @field_validator("backends", "rules")
    @classmethod
    def _unique_names(
        cls, value: tuple[Backend | Rule, ...], info: ValidationInfo
    ) -> tuple[Backend | Rule, ...]:
        found = duplicate_names(info.field_name or "", [item.name for item in value])
        if found:
            raise conflicts(found)
        return value


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    path: Path
    sha256: str
    loaded_at: float


def parse_config(text: str, path: Path) -> Config:
    """Validate YAML ``text`` as if read from ``path``; raise ConfigError with every problem."""
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
                return config
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
    config = parse_config(text, path)
    return LoadedConfig(config, path, hashlib.sha256(raw).hexdigest(), time.time())
