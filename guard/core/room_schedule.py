"""Event schedules: what a room is doing at a given wall-clock time.

Times are wall-clock seconds since the epoch (the config layer turns ISO 8601 with an offset
into them). The same pure function answers the live room and ``guard check --at TIME``.
"""

from __future__ import annotations

from typing import Final

from guard.core.room_store import CLOSED, PAUSED

NOT_STARTED: Final = "not_started"
PREQUEUE: Final = "prequeue"
RUNNING: Final = "running"
ENDED: Final = "ended"
PHASES: Final = (NOT_STARTED, PREQUEUE, RUNNING, ENDED)

QUEUEING: Final = "queueing"
"""A room state: running and open (the line moves)."""
ROOM_STATES: Final = (NOT_STARTED, PREQUEUE, QUEUEING, PAUSED, CLOSED, ENDED)
"""What a room is doing, combining the schedule's phase and the operator's state."""


class Schedule:
    """Optional ``prequeue_at <= start_at < end_at``; a missing bound is open-ended.

    No start: the room runs from the beginning (a pre-queue needs a start). No end: it never
    ends. Places taken between prequeue_at and start_at wait unordered and are shuffled at
    the start; before prequeue_at (or before start_at without a pre-queue) the room does not
    take places at all.
    """

    __slots__ = ("end_at", "prequeue_at", "start_at")

    def __init__(
        self,
        start_at: float | None = None,
        end_at: float | None = None,
        prequeue_at: float | None = None,
    ) -> None:
        if prequeue_at is not None and (start_at is None or prequeue_at > start_at):
            raise ValueError("a pre-queue needs a start, and must open before it")
        if start_at is not None and end_at is not None and end_at <= start_at:
            raise ValueError("an event must end after it starts")
        self.start_at = start_at
        self.end_at = end_at
        self.prequeue_at = prequeue_at

    def phase_at(self, wall: float) -> str:
        """One of PHASES."""
        if self.end_at is not None and wall >= self.end_at:
            return ENDED
        if self.start_at is None or wall >= self.start_at:
            return RUNNING
        if self.prequeue_at is not None and wall >= self.prequeue_at:
            return PREQUEUE
        return NOT_STARTED

    def seconds_until_start(self, wall: float) -> float:
        """0 once started (or without a start)."""
        if self.start_at is None or wall >= self.start_at:
            return 0.0
        return self.start_at - wall


ALWAYS: Final = Schedule()


def room_state(phase: str, operator_state: str) -> str:
    """One of ROOM_STATES. A sold-out close wins over everything: it is never undone by the
    clock, only by an operator. Pause holds a running line; it means nothing outside one."""
    if operator_state == CLOSED:
        return CLOSED
    if phase != RUNNING:
        return phase
    if operator_state == PAUSED:
        return PAUSED
    return QUEUEING


def room_state_at(schedule: Schedule, operator_state: str, wall: float) -> str:
    """What ``guard check --at TIME`` prints for a room."""
    return room_state(schedule.phase_at(wall), operator_state)
