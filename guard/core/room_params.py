"""A room's tuning (RoomParams), the brake curve and what a poll answers (PlaceView)."""

from __future__ import annotations

import math


class RoomParams:
    """A room's tuning, already validated by the config layer. Rates per second."""

    __slots__ = (
        "admit_burst",
        "admit_rate",
        "high",
        "low",
        "max_ghost_boost",
        "pass_max",
        "place_hold",
        "refresh_max",
        "refresh_min",
        "refusal_hold",
        "shuffle",
    )

    def __init__(
        self,
        admit_rate: float,
        admit_burst: int = 0,
        low: float = 0.80,
        high: float = 0.95,
        max_ghost_boost: float = 4.0,
        place_hold: float = 120.0,
        refresh_min: float = 2.0,
        refresh_max: float = 30.0,
        pass_max: float = 1800.0,
        refusal_hold: float = 1.0,
        shuffle: bool = True,
    ) -> None:
        if admit_rate <= 0 or not 0 <= low < high <= 1 or max_ghost_boost < 1:
            raise ValueError("need admit_rate > 0, 0 <= low < high <= 1, max_ghost_boost >= 1")
        if not 0 < refresh_min <= refresh_max:
            raise ValueError("need 0 < refresh_min <= refresh_max")
        self.admit_rate = admit_rate
        self.admit_burst = admit_burst if admit_burst >= 1 else max(1, math.ceil(admit_rate))
        self.low = low
        self.high = high
        self.max_ghost_boost = max_ghost_boost
        self.place_hold = place_hold
        self.refresh_min = refresh_min
        self.refresh_max = refresh_max
        self.pass_max = pass_max
        self.refusal_hold = refusal_hold
        self.shuffle = shuffle

    def claim_window(self) -> int:
        """Orders the claim bitmap must span: the fastest watermark over the claim lag,
        twice over (bits, so 20/s -> ~1 KB, 1,000/s -> ~36 KB)."""
        fastest = self.admit_rate * self.max_ghost_boost
        return math.ceil(fastest * self.claim_lag() * 2) + 64

    def claim_lag(self) -> float:
        """An admitted holder polls within refresh_max; a few seconds more for the network."""
        return self.refresh_max + 5.0


def brake_for(utilisation: float, low: float, high: float) -> float:
    """1 below ``low``, linear down to 0 at ``high`` and above."""
    if utilisation <= low:
        return 1.0
    if utilisation >= high:
        return 0.0
    return (high - utilisation) / (high - low)


class PlaceView:
    """What a poll answers for one place."""

    __slots__ = ("admit_at", "eta_known", "eta_seconds", "position", "refresh_seconds", "status")

    def __init__(
        self,
        status: str,
        position: int = 0,
        eta_seconds: float = 0.0,
        eta_known: bool = False,
        admit_at: float = 0.0,
        refresh_seconds: float = 0.0,
    ) -> None:
        self.status = status
        self.position = position
        self.eta_seconds = eta_seconds
        self.eta_known = eta_known
        self.admit_at = admit_at
        self.refresh_seconds = refresh_seconds
