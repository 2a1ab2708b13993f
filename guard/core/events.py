"""A bounded ring of recent operational events: reloads, backends up/down, room commands.

The live view shows them and marks them on its charts. Pure and bounded: the oldest
event goes when the ring is full, whatever happens.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["Event", "EventLog"]

Event = dict[str, Any]
"""{"seq", "t" (wall seconds), "kind", "subject", "detail"}."""


class EventLog:
    """The last ``size`` events, each numbered so a reader can ask for what it missed."""

    __slots__ = ("_events", "_seq")

    def __init__(self, size: int = 200) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._seq = 0

    def add(self, wall: float, kind: str, subject: str, detail: str = "") -> Event:
        self._seq += 1
        event: Event = {
            "seq": self._seq,
            "t": round(wall, 3),
            "kind": kind,
            "subject": subject,
            "detail": detail,
        }
        self._events.append(event)
        return event

    def recent(self, after: int = 0) -> list[Event]:
        """Events numbered above ``after``, oldest first."""
        return [e for e in self._events if e["seq"] > after]

    @property
    def last_seq(self) -> int:
        return self._seq
