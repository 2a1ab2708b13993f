"""Waiting rooms in the configuration: the ``rooms:`` list and what ``guard check`` says.

A room is a named line that rules join with ``room: NAME`` (several rules, one line: event
page, cart, checkout). The arithmetic lives in guard/core/room_*.py; here are the keys, the
checks that need the whole file (unknown room names, workers, tag collisions), the key file
and the shipped queue page. Each problem names its file, line and key like every other.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from guard.config.errors import conflicts, duplicate_names
from guard.config.sections import MODEL, checking_files, file_error, output_file, resolve
from guard.config.types import Duration, Flag, Name, PositiveInt, Rate, shown

if TYPE_CHECKING:
    from guard.config.models import Config

__all__ = [
    "KEY_LINE_FORM",
    "Room",
    "RoomSchedule",
    "active_at",
    "check_rooms",
    "parse_at",
    "read_key_file",
    "shipped",
]

KEY_LINE_FORM = 'expected lines "<kid 0-255>:<secret, hex or base64, >= 32 bytes>"'
_KEY_LINE = re.compile(r"(\d{1,3})\s*:\s*(\S+)")
_TIME_FORM = 'expected an ISO 8601 time with an offset like "2026-12-01T10:00:00+09:00"'
# Only refusals that tell a client to come back: a 200 could be parsed as data.
ApiStatus = Literal[429, 503]


def shipped(name: str) -> Path:
    """A file guard ships as package data (the default queue page and its script)."""
    return Path(__file__).resolve().parent.parent / "static" / name


def _timestamp(value: Any) -> float:
    """ISO 8601 with an explicit offset -> wall-clock seconds; a naive time is ambiguous."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if isinstance(value, datetime):  # YAML reads an unquoted timestamp itself
        when = value
    if when is None or when.tzinfo is None:
        raise PydanticCustomError(
            "guard_time", "{form}, got {got}", {"form": _TIME_FORM, "got": shown(value)}
        )
    return when.timestamp()


Timestamp = Annotated[float, PlainValidator(_timestamp)]
Share = Annotated[float, Field(gt=0, le=1)]


class RoomSchedule(BaseModel):
    model_config = MODEL

    start: Timestamp | None = None
    end: Timestamp | None = None
    prequeue: Timestamp | None = None

    @_model_validator(mode="after")
    def _ordered(self) -> RoomSchedule:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.prequeue is not None and (self.start is None or self.prequeue > self.start):
            found.append((("prequeue",), "a pre-queue needs a start and must open before it"))
        if self.start is not None and self.end is not None and self.end <= self.start:
            found.append((("end",), "must be after start"))
        if found:
            raise conflicts(found)
        return self


class Room(BaseModel):
    model_config = MODEL

    name: Name
    event: Name = "default"  # change it to void every token of the room
    admit_rate: Rate
    admit_burst: PositiveInt | None = None
    brake_from: Share = 0.80  # utilisation of the tightest ceiling where admissions slow
    brake_stop: Share = 0.95  # ... and where they stop
    place_hold: Duration = 120.0
    pass_idle: Duration = 300.0
    pass_max: Duration = 1800.0
    pass_max_in_flight: PositiveInt = 8
    refresh_min: Duration = 2.0
    refresh_max: Duration = 30.0
    schedule: RoomSchedule = RoomSchedule()
    api_status: ApiStatus = 429
    key_file: Path | None = None
    state_file: Path | None = None
    queue_page: Path = Field(default=None, validate_default=True)
    cookie_secure: Flag = False
    sold_out_header: Flag = False  # "X-Guard-Room: sold-out" from a backend closes the room
    dry_run: Flag = False
    return_after: Duration = 600.0  # a longer ETA offers "come back at HH:MM"

    @field_validator("key_file")
    @classmethod
    def _check_key_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = resolve(value, info)
        if checking_files(info):
            try:
                read_key_file(value)
            except OSError as exc:
                raise file_error(f"cannot read ({exc.strerror})", value) from None
            except ValueError as exc:
                raise PydanticCustomError("guard_keys", "{why}", {"why": str(exc)}) from None
        return value

    @field_validator("state_file")
    @classmethod
    def _check_state_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return output_file(value, info)

    @field_validator("queue_page", mode="before")
    @classmethod
    def _check_page(cls, value: Any, info: ValidationInfo) -> Path:
        if value is None:
            return shipped("queue.html")
        if not isinstance(value, str | Path):
            raise PydanticCustomError(
                "guard_path", "expected a file path, got {got}", {"got": shown(value)}
            )
        path = resolve(Path(value), info)
        if checking_files(info) and not path.is_file():
            raise file_error("no such file", path)
        return path

    @_model_validator(mode="after")
    def _consistent(self) -> Room:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.brake_from >= self.brake_stop:
            found.append((("brake_from",), "must be below brake_stop"))
        if self.refresh_min > self.refresh_max:
            found.append((("refresh_min",), "must not exceed refresh_max"))
        if self.place_hold < 3 * self.refresh_max:
            found.append((("place_hold",), "must be at least 3 x refresh_max (a poll may be late)"))
        if self.pass_idle > self.pass_max:
            found.append((("pass_idle",), "must not exceed pass_max"))
        if found:
            raise conflicts(found)
        return self


def read_key_file(path: Path) -> dict[int, bytes]:
    """``kid:secret`` lines (hex or base64, >= 32 bytes; '#' comments); the first signs.
    Raises ValueError naming the line, OSError when unreadable."""
    keys: dict[int, bytes] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _KEY_LINE.fullmatch(line)
        secret = _secret(m[2]) if m else None
        if m is None or secret is None or int(m[1]) > 255 or len(secret) < 32:
            raise ValueError(f"{path} line {number}: {KEY_LINE_FORM}")
        if int(m[1]) in keys:
            raise ValueError(f"{path} line {number}: key id {m[1]} appears twice")
        keys[int(m[1])] = secret
    if not keys:
        raise ValueError(f"{path}: no key; {KEY_LINE_FORM}")
    return keys


def _secret(text: str) -> bytes | None:
    # Hex when it can only be hex (a 32-byte secret is 64 hex digits, 43-44 in base64).
    if len(text) >= 64 and re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text):
        return bytes.fromhex(text)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        return None


def check_rooms(config: Config) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems that need the whole file, as (key path, message) for ``conflicts``."""
    from guard.core.room_token import room_tag  # pure and tiny; keeps config import light

    found = [
        (("rooms", *k), m) for k, m in duplicate_names("rooms", [r.name for r in config.rooms])
    ]
    names = {room.name for room in config.rooms}
    for index, rule in enumerate(config.rules):
        if rule.room is None:
            continue
        if rule.room not in names:
            known = ", ".join(sorted(names)) or "none configured"
            found.append((("rules", index, "room"), f'unknown room "{rule.room}" (rooms: {known})'))
        elif rule.bypass or rule.block:
            found.append((("rules", index, "room"), "a bypass or block rule cannot queue"))
    tags: dict[int, str] = {}
    for index, room in enumerate(config.rooms):
        other = tags.setdefault(room_tag(room.name), room.name)
        if other != room.name:
            found.append((("rooms", index, "name"), f'token tag collides with room "{other}"'))
    if config.rooms and config.workers > 1 and config.cluster is None:
        found.append(
            (
                ("workers",),
                "rooms need one process until cluster mode is on (workers: 1, or cluster:)",
            )
        )
    if config.cluster is not None:
        for index, room in enumerate(config.rooms):
            if room.key_file is None:  # instances must verify each other's tokens
                found.append((("rooms", index, "key_file"), "cluster mode needs a shared key_file"))
    return found


def room_warnings(config: Config) -> list[str]:
    """What ``guard check`` warns about: legal, but probably not what an operator wants."""
    warnings = []
    used = {rule.room for rule in config.rules}
    for room in config.rooms:
        if room.key_file is None:
            warnings.append(
                f"room {room.name}: no key_file, so a random key signs its tokens and a "
                "restart sends everyone in line to the back"
            )
        elif room.state_file is None:
            warnings.append(
                f"room {room.name}: no state_file, so a restart starts a new line and "
                "everyone in line queues again"
            )
        if room.name not in used:
            warnings.append(f"room {room.name}: no rule uses it")
    return warnings


def parse_at(text: str) -> float:
    """``guard check --at``: ISO 8601 with an offset -> wall seconds (ValueError otherwise)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at: {_TIME_FORM}, got {text!r}") from None
    if when.tzinfo is None:
        raise ValueError(f"--at: the time needs an offset ({_TIME_FORM}), got {text!r}")
    return when.timestamp()


def active_at(config: Config, wall: float) -> list[str]:
    """What runs at ``wall``: each room's state (as scheduled, operator state open) and
    each rule's path through it: ``queue NAME`` while the room takes places or admits,
    ``plain`` when the rule has no room or its room is outside its event."""
    from guard.core.room_schedule import ENDED, NOT_STARTED, Schedule, room_state_at
    from guard.core.room_store import OPEN

    states: dict[str, str] = {}
    lines: list[str] = []
    for rc in config.rooms:
        sched = rc.schedule
        schedule = Schedule(sched.start, sched.end, sched.prequeue)
        states[rc.name] = room_state_at(schedule, OPEN, wall)
        lines.append(f"room {rc.name}: {states[rc.name]}" + (" (dry run)" if rc.dry_run else ""))
    for rule in config.rules:
        state = states.get(rule.room) if rule.room is not None else None
        if state is None or state in (NOT_STARTED, ENDED):
            how = "plain"
        else:
            how = f"queue {rule.room} ({state})"
        lines.append(f"rule {rule.name}: {how}" + (" (dry run)" if rule.dry_run else ""))
    return lines
