"""A bounded ring of recent operational events: reloads, backends up/down, room commands.

The runtime records them (with the reason: "active probe: status 503"); `/status` readers,
tests and the live page read them. Each event is numbered, so a reader (the live view's
ticker) asks only for what it has not seen. Bounded: a flapping backend can add events
forever, the ring keeps the newest. Time is passed in (wall clock, for display); nothing
here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["DEFAULT_CAPACITY", "Event", "EventLog"]

DEFAULT_CAPACITY: Final = 256


@dataclass(frozen=True, slots=True)
class Event:
    seq: int  # 1, 2, ... in the order added
    time: float  # wall clock (time.time()), for display only
    kind: str  # "backend_down", "backend_up", "reload", "room_close", ...
    subject: str  # what it is about: a backend's name, the config path, a room
    detail: str  # why, in words: "active probe: status 503"

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "t": round(self.time, 3),
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
        }


class EventLog:
    """The newest ``capacity`` events, oldest first."""

    __slots__ = ("_ring", "last_seq")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._ring: deque[Event] = deque(maxlen=capacity)
        self.last_seq = 0  # events ever added: a reader can tell how many it missed

    def add(self, time: float, kind: str, subject: str, detail: str = "") -> Event:
        self.last_seq += 1
        event = Event(self.last_seq, time, kind, subject, detail)
        self._ring.append(event)
        return event

    def recent(self, after: int = 0) -> list[Event]:
        """The events numbered above ``after`` that the ring still holds, oldest first."""
        return [e for e in self._ring if e.seq > after]
