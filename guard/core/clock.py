"""Time for the core and the data path: injected, so tests drive it by hand and nothing sleeps.

Two clocks, never mixed: `monotonic` measures durations and runs every deadline (the data
path reads it per request, so production passes the C function itself, no wrapper);
`wall` is for what must match the calendar or another machine (schedules, token expiry,
log timestamps). A FakeClock drives both and moves them together.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds from one clock. Production passes ``time.monotonic``; tests pass a FakeClock."""


class Clocks:
    """The monotonic clock and the wall clock of one process."""

    __slots__ = ("monotonic", "wall")

    def __init__(self, monotonic: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.monotonic = monotonic
        self.wall = wall


class FakeClock:
    """A clock that only moves when told to. Called, it is the monotonic clock (a Clock);
    `clocks()` gives both clocks, the wall one `wall_offset` seconds ahead of it."""

    __slots__ = ("now", "wall_offset")

    def __init__(self, now: float = 0.0, wall_offset: float = 1_750_000_000.0) -> None:
        self.now = now
        self.wall_offset = wall_offset

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    def clocks(self) -> Clocks:
        return Clocks(self, self.wall)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self.now += seconds
