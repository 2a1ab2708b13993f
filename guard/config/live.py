"""The ``live:`` section: the live view on the admin port (GET /live and its stream).

live:
  enabled: true        # the ticker and the /live routes; off: nothing runs, 404
  tick: 1s             # one frame per tick (>= 50ms)
  age_bands: [3s, 8s]  # in-flight age bands: blue below the first, orange, red from
                       # the second (WhaTap's and Scouter's 3 s / 8 s)
  history: 5m          # frames kept for late or reconnecting viewers (<= 1h)
  max_viewers: 16      # concurrent streams; the next one is answered 503
  show_paths: true     # request paths in the slowest/oldest lists (false hides them)
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from guard.config.sections import MODEL
from guard.config.types import Duration, Flag, PositiveInt

__all__ = ["Live"]

_MIN_TICK = 0.05
_MAX_HISTORY = 3600.0


class Live(BaseModel):
    model_config = MODEL

    enabled: Flag = True
    tick: Duration = 1.0
    age_bands: Annotated[tuple[Duration, Duration], Field()] = (3.0, 8.0)
    history: Duration = 300.0
    max_viewers: PositiveInt = 16
    show_paths: Flag = True

    @field_validator("tick")
    @classmethod
    def _tick(cls, value: float) -> float:
        if value < _MIN_TICK:
            raise PydanticCustomError(
                "guard_live_tick", "expected a tick of at least 50ms, got {got}s", {"got": value}
            )
        return value

    @field_validator("age_bands")
    @classmethod
    def _bands(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise PydanticCustomError(
                "guard_live_bands",
                'expected two increasing durations like ["3s", "8s"], got {got}',
                {"got": list(value)},
            )
        return value

    @field_validator("history")
    @classmethod
    def _history(cls, value: float) -> float:
        if value > _MAX_HISTORY:
            raise PydanticCustomError(
                "guard_live_history", "expected at most 1h of history, got {got}s", {"got": value}
            )
        return value

    @property
    def frames_kept(self) -> int:
        """Frames in the ring: ``history`` worth of ticks."""
        return max(1, round(self.history / self.tick))
