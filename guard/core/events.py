"""A small bounded list of recent events (backend up/down, reloads, ...), in core.

Ops read it on /status and, later, the live page's "recent events": what changed, when and
why. Bounded: a flapping backend can add events forever, the list keeps the newest only.
Time is passed in (the wall clock, for display); nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["DEFAULT_CAPACITY", "Event", "EventLog"]

DEFAULT_CAPACITY: Final = 256


@dataclass(frozen=True, slots=True)
class Event:
    time: float  # wall clock (time.time()), for display only
    kind: str  # "backend_down", "backend_up", "reload", ...
    subject: str  # what it is about: a backend's name, the config path
    detail: str  # why, in words: "active probe: status 503"

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
        }


class EventLog:
    """The newest ``capacity`` events, oldest first."""

    __slots__ = ("_ring", "total")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._ring: deque[Event] = deque(maxlen=capacity)
        self.total = 0  # events ever added: a reader can tell how many it missed

    def add(self, time: float, kind: str, subject: str, detail: str) -> Event:
        event = Event(time, kind, subject, detail)
        self._ring.append(event)
        self.total += 1
        return event

    def recent(self, limit: int | None = None) -> list[Event]:
        events = list(self._ring)
        return events if limit is None else events[max(0, len(events) - limit) :]
