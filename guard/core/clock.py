"""Time for the core: a plain callable, so tests drive it by hand and nothing sleeps."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
"""Monotonic seconds. Production passes ``time.monotonic``; tests pass a FakeClock."""


class FakeClock:
    """A clock that only moves when told to."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self.now += seconds
