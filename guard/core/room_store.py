"""The shared counters of a room, behind a small interface (the seam for a Redis store).

Everything a line needs to be shared across guard instances is here and nothing else:
``issued`` (the last place number handed out), ``watermark`` (every order <= floor(watermark)
is admitted), ``state`` (the operator's switch), ``epoch`` (bumped when the line is reset)
and ``prequeue_size`` (how many pre-queue places the start shuffled; -1 = not started yet). Each
operation is one atomic step a Redis script can do (INCR, a compare-and-max, a SET), so a
second instance never sees a half-made change. Nothing grows with the line.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

OPEN: Final = "open"
PAUSED: Final = "paused"
CLOSED: Final = "closed"
OPERATOR_STATES: Final = (OPEN, PAUSED, CLOSED)
"""What an operator sets; the schedule adds not_started, prequeue and ended on top."""


class RoomCounters:
    """A snapshot of a room's counters: for a state file, /status and reloads."""

    __slots__ = ("epoch", "issued", "prequeue_size", "state", "watermark")

    def __init__(
        self,
        issued: int = 0,
        watermark: float = 0.0,
        state: str = OPEN,
        epoch: int = 0,
        prequeue_size: int = -1,
    ) -> None:
        self.issued = issued
        self.watermark = watermark
        self.state = state
        self.epoch = epoch
        self.prequeue_size = prequeue_size

    def as_dict(self) -> dict[str, object]:
        return {
            "issued": self.issued,
            "watermark": self.watermark,
            "state": self.state,
            "epoch": self.epoch,
            "prequeue_size": self.prequeue_size,
        }

    @staticmethod
    def from_dict(data: dict[str, object]) -> RoomCounters:
        """Raises ValueError on anything but what as_dict() writes (a state file is input)."""
        issued, watermark, epoch, size = (
            data.get("issued"),
            data.get("watermark"),
            data.get("epoch"),
            data.get("prequeue_size"),
        )
        state = data.get("state")
        if not (isinstance(issued, int) and isinstance(epoch, int) and isinstance(size, int)):
            raise ValueError("room counters: issued, epoch and prequeue_size must be integers")
        if not isinstance(watermark, int | float) or not isinstance(state, str):
            raise ValueError("room counters: watermark must be a number and state a word")
        if state not in OPERATOR_STATES:
            raise ValueError(f"room counters: state must be one of {', '.join(OPERATOR_STATES)}")
        if not (0 <= watermark <= issued and -1 <= size <= issued and epoch >= 0):
            raise ValueError("room counters: need 0 <= watermark <= issued, -1 <= prequeue_size")
        return RoomCounters(issued, float(watermark), state, epoch, size)


class RoomStore(Protocol):
    def issued(self) -> int: ...

    def watermark(self) -> float: ...

    def state(self) -> str: ...

    def epoch(self) -> int: ...

    def prequeue_size(self) -> int: ...

    def issue(self) -> int:
        """issued += 1; the new number. Never returns a number twice within an epoch.
        0: no number at hand now (a shared store between leases); the shopper retries."""
        ...

    def advance(self, watermark: float) -> float:
        """watermark = max(watermark, min(issued, proposed)); the result. Never goes back."""
        ...

    def enter_directly(self) -> int:
        """If nobody waits (floor(watermark) == issued): issue a number and admit it at once,
        returning it; else 0. One atomic step, so two instances cannot both skip the line."""
        ...

    def set_state(self, state: str) -> None: ...

    def freeze_prequeue(self) -> int:
        """At the event start: prequeue_size = issued, once (later calls keep it); the size."""
        ...

    def new_epoch(self) -> int:
        """Reset the line (a new event): epoch += 1, counters to 0; the new epoch."""
        ...

    def snapshot(self) -> RoomCounters: ...


class MemoryRoomStore:
    """The in-process store."""

    __slots__ = ("_c",)

    def __init__(self, counters: RoomCounters | None = None) -> None:
        self._c = counters if counters is not None else RoomCounters()

    @staticmethod
    def restored(saved: RoomCounters, skip: int) -> MemoryRoomStore:
        """A store from a saved snapshot, ``issued`` moved ``skip`` numbers ahead: numbers
        handed out after the last save are never handed out again. The skipped numbers
        were issued to nobody (or to places the line will pass as abandoned)."""
        if skip < 0:
            raise ValueError("skip must be >= 0")
        counters = RoomCounters(
            saved.issued + skip, saved.watermark, saved.state, saved.epoch, saved.prequeue_size
        )
        return MemoryRoomStore(counters)

    def issued(self) -> int:
        return self._c.issued

    def watermark(self) -> float:
        return self._c.watermark

    def state(self) -> str:
        return self._c.state

    def epoch(self) -> int:
        return self._c.epoch

    def prequeue_size(self) -> int:
        return self._c.prequeue_size

    def issue(self) -> int:
        self._c.issued += 1
        return self._c.issued

    def advance(self, watermark: float) -> float:
        c = self._c
        proposed = min(float(c.issued), watermark)
        if proposed > c.watermark:
            c.watermark = proposed
        return c.watermark

    def enter_directly(self) -> int:
        c = self._c
        if math.floor(c.watermark) != c.issued:
            return 0
        c.issued += 1
        c.watermark = float(c.issued)
        return c.issued

    def set_state(self, state: str) -> None:
        if state not in OPERATOR_STATES:
            raise ValueError(f"room state must be one of {', '.join(OPERATOR_STATES)}")
        self._c.state = state

    def freeze_prequeue(self) -> int:
        c = self._c
        if c.prequeue_size < 0:
            c.prequeue_size = c.issued
        return c.prequeue_size

    def new_epoch(self) -> int:
        c = self._c
        self._c = RoomCounters(state=c.state, epoch=c.epoch + 1)
        return self._c.epoch

    def snapshot(self) -> RoomCounters:
        c = self._c
        return RoomCounters(c.issued, c.watermark, c.state, c.epoch, c.prequeue_size)
