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
)

from guard.config.errors import (
    ConfigError,
    Problem,
    conflicts,
    duplicate_names,
    key_path,
    raw_duplicate_problems,
    translate,
)
from guard.config.live import Live
from guard.config.reader import read_yaml
from guard.config.sections import (
    MODEL,
    AccessLog,
    Backend,
    Limits,
    Rule,
    Timeouts,
    checking_files,
    file_error,
    resolve,
)
from guard.config.types import DurationOrZero, HostPort, NetworkList, PositiveInt, Size

__all__ = ["Config", "LoadedConfig", "load_config", "parse_config"]


class Config(BaseModel):
    model_config = MODEL

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
    live: Live = Live()
    backends: tuple[Backend, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = ()

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after))

    @field_validator("waiting_page")
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
