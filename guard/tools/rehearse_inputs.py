"""What `guard rehearse` replays and varies: synthetic surges, --from/--to, --sweep, --headroom.

Standard library only (plus the config models' own ``model_copy``), so parsing a flag never
needs a log or a server.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Any, Final

from guard.tools.rehearse_logs import Event
from guard.tools.surge_schedule import Shape, arrival_times, parse_duration, parse_rate

__all__ = [
    "Sweep",
    "parse_headroom",
    "parse_sweep",
    "parse_synthetic",
    "synthetic_events",
    "with_ceiling",
    "within",
]

_SWEEP: Final = re.compile(r"^(?P<target>[^=]+)\.max_active=(?P<values>[0-9.,/ ]+)$")
_SYNTHETIC_KEYS: Final = (
    "rate",
    "duration",
    "service",
    "ramp",
    "from",
    "path",
    "method",
    "clients",
)


@dataclass(frozen=True)
class Sweep:
    target: str  # "site", a rule or a backend name (prefix "rule:"/"backend:" if both)
    values: tuple[int, ...]


def parse_sweep(text: str) -> Sweep:
    """'event.max_active=8..16', '8..16/2' (a step), or '8,12,16'."""
    found = _SWEEP.match(text.strip())
    values: list[int] = []
    if found is not None:
        for part in found["values"].split(","):
            low, dots, rest = part.strip().partition("..")
            high, _, step = rest.partition("/")
            if low.isdigit() and (not dots or high.isdigit()) and (not step or step.isdigit()):
                values += range(int(low), int(high or low) + 1, int(step or 1))
            else:
                values = []
                break
    if found is None or not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f'expected NAME.max_active=LOW..HIGH[/STEP] or =A,B,C (ceilings >= 1), got "{text}"'
        )
    return Sweep(found["target"].strip(), tuple(values))


def parse_headroom(text: str) -> float:
    """'10%' or '0.1'."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f'expected a headroom like 10% or 0.1, got "{text}"')
    return value


def with_ceiling(config: Any, target: str, value: int) -> Any:
    """A copy of the pydantic Config with one max_active changed (no I/O, no validation
    beyond the name: a ceiling >= 1 is valid wherever max_active is)."""
    kind, _, name = target.rpartition(":")
    if target == "site":
        return config.model_copy(update={"max_active": value})
    rules = [r.name for r in config.rules]
    backends = [b.name for b in config.backends]
    if not kind and name in rules and name in backends:
        raise ValueError(
            f"{name!r} is both a rule and a backend: write rule:{name} or backend:{name}"
        )
    if kind in ("", "rule") and name in rules:
        changed = tuple(
            r.model_copy(update={"max_active": value}) if r.name == name else r
            for r in config.rules
        )
        return config.model_copy(update={"rules": changed})
    if kind in ("", "backend") and name in backends:
        changed = tuple(
            b.model_copy(update={"max_active": value}) if b.name == name else b
            for b in config.backends
        )
        return config.model_copy(update={"backends": changed})
    known = ", ".join(["site", *rules, *backends])
    raise ValueError(f"--sweep: no rule or backend named {name!r} (known: {known})")


def parse_synthetic(text: str) -> dict[str, str]:
    """'rate=300/s,duration=20s,service=200ms[,ramp=10s,from=0,path=/event,method=GET,clients=500]'."""
    spec: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in _SYNTHETIC_KEYS:
            raise argparse.ArgumentTypeError(
                f'expected KEY=VALUE pairs among {", ".join(_SYNTHETIC_KEYS)}, got "{part}"'
            )
        spec[key.strip()] = value.strip()
    if "rate" not in spec or "duration" not in spec:
        raise argparse.ArgumentTypeError("--synthetic needs at least rate=… and duration=…")
    synthetic_events(spec, limit=0)  # every value parses now, not after the log is read
    return spec


def synthetic_events(spec: dict[str, str], limit: int | None = None) -> list[Event]:
    """Uniform arrivals of the shape, each served in exactly ``service`` seconds."""
    shape = Shape(
        rate=parse_rate(spec["rate"]),
        duration=parse_duration(spec["duration"]),
        ramp=parse_duration(spec.get("ramp", "0")),
        start_rate=parse_rate(spec.get("from", "0")),
    )
    service = parse_duration(spec.get("service", "100ms"))
    path, method = spec.get("path", "/"), spec.get("method", "GET")
    clients = int(spec.get("clients", "1000"))
    if clients < 1 or not path.startswith("/"):
        raise argparse.ArgumentTypeError("--synthetic: clients >= 1 and path=/… expected")
    events = []
    for i, t in enumerate(arrival_times(shape)):
        if limit is not None and i >= limit:
            break
        client = f"10.{i % clients >> 16 & 255}.{i % clients >> 8 & 255}.{i % clients & 255}"
        events.append(Event(t, t + service, method, path, client, 200))
    return events


def within(events: list[Event], start: str | None, end: str | None, tz: timezone) -> list[Event]:
    """Events starting in [start, end): ISO datetimes, or times of day on the log's first day
    in the log's own offset (UTC for guard's log)."""
    if not events or (start is None and end is None):
        return events
    day = datetime.fromtimestamp(events[0].start, tz).date()
    low = _instant(start, day, tz) if start else float("-inf")
    high = _instant(end, day, tz) if end else float("inf")
    return [e for e in events if low <= e.start < high]


def _instant(text: str, day: Any, tz: timezone) -> float:
    try:
        if "T" in text or "-" in text:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()
        return datetime.combine(day, time.fromisoformat(text), tz).timestamp()
    except ValueError:
        raise ValueError(
            f"--from/--to: expected 10:30, 10:30:15 or 2025-05-01T10:30, got {text!r}"
        ) from None
