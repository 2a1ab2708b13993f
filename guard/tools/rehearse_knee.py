"""The knee of a backend's throughput-versus-concurrency curve, from a log's own requests.

Little's law per window of ``width`` seconds: N = time-integral of the requests in flight
divided by the width, X = completions per second, R = mean duration of those completions.
In a steady window N = X·R; where the queue grows or drains, completions belong to requests
started earlier and the windows drift, so only windows with |N - X·R| / N ≤ ``tolerance``
are used (and the first and last windows, cut by the log's edges, never are).

Kneedle (Satopää et al. 2011): the steady windows sorted by N and averaged in equal-count
bins give X(N); both axes are normalised to [0, 1] and the knee is the point farthest above
the chord from the first to the last point. The curve is *saturated* when the log reaches
well past the knee (max N >= 1.3 x knee) and X beyond it rises at under a quarter of its
slope below the knee;
otherwise the log never pushed the backend to its limit and the knee is only a lower bound.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "Knee",
    "Little",
    "Point",
    "Window",
    "analyse",
    "knee_of",
    "kneedle",
    "little",
    "windows",
]

_MIN_LIFT: Final = 0.05  # a chord distance below this is a straight line, not a knee
_REACH: Final = 1.3  # the log must reach this far past the knee to show saturation
_FLAT_SLOPE: Final = 0.25  # and X must rise past it at under this share of its slope before
_BINS: Final = 40


@dataclass(frozen=True, slots=True)
class Window:
    start: float  # seconds from the first request's start
    n: float  # mean requests in flight
    x: float  # completions per second
    r: float  # mean duration of the completions, seconds

    def deviation(self) -> float:
        return abs(self.n - self.x * self.r) / self.n if self.n > 0 else math.inf


Point = tuple[float, float]  # (N, X)


@dataclass(frozen=True)
class Little:
    """How well N ≈ X·R held: windows with traffic, the steady ones, their mean deviation."""

    windows: int
    steady: int
    mean_deviation: float
    tolerance: float
    width: float

    def line(self) -> str:
        unit = "second" if self.width == 1 else f"{self.width:g}-s window"
        return (
            f"N ≈ X·R within {self.tolerance:.0%} in {self.steady:,} of {self.windows:,}"
            f" {unit}s with traffic (mean deviation {self.mean_deviation:.1%} in those)"
        )


@dataclass(frozen=True)
class Knee:
    n: float | None  # concurrency at the knee; None: no knee in this log
    x: float  # throughput there, per second
    r: float  # mean duration there, seconds
    saturated: bool  # X stopped rising past the knee within the log
    suggested: int | None  # floor(knee x (1 - headroom)), when saturated
    max_n: float  # the highest steady concurrency the log reached
    curve: list[Point] = field(default_factory=list)  # binned X(N), for plots
    little: Little | None = None

    def line(self) -> str:
        if self.n is None or not self.saturated:
            reach = f"steady N up to {self.max_n:.1f}"
            return f"no saturation in this log ({reach}) — run `guard surge --ramp` against staging"
        return (
            f"knee N≈{self.n:.1f} at {self.x:.0f} req/s, R {self.r:.2f} s"
            f" -> suggested max_active {self.suggested}"
        )


def windows(intervals: Iterable[tuple[float, float]], width: float = 1.0) -> list[Window]:
    """Per-window N, X, R of (start, end) intervals; windows without completions left out."""
    spans = sorted(intervals)
    if not spans:
        return []
    origin = spans[0][0]
    area: dict[int, float] = {}
    done: dict[int, int] = {}
    busy: dict[int, float] = {}
    for start, end in spans:
        first, last = int((start - origin) // width), int((end - origin) // width)
        for k in range(first, last + 1):
            lo, hi = max(start, origin + k * width), min(end, origin + (k + 1) * width)
            if hi > lo:
                area[k] = area.get(k, 0.0) + hi - lo
        done[last] = done.get(last, 0) + 1
        busy[last] = busy.get(last, 0.0) + end - start
    edges = {0, max(max(done), max(area, default=0))}
    return [
        Window(k * width, area.get(k, 0.0) / width, count / width, busy[k] / count)
        for k, count in sorted(done.items())
        if k not in edges and area.get(k, 0.0) > 0
    ]


def little(found: Sequence[Window], tolerance: float, width: float) -> Little:
    steady = [w.deviation() for w in found if w.deviation() <= tolerance]
    mean = sum(steady) / len(steady) if steady else 0.0
    return Little(len(found), len(steady), mean, tolerance, width)


def binned(points: Sequence[Point], bins: int = _BINS) -> list[Point]:
    """Points sorted by N, averaged in up to ``bins`` groups of equal count."""
    ordered = sorted(points)
    size = max(1, math.ceil(len(ordered) / bins))
    out = []
    for i in range(0, len(ordered), size):
        group = ordered[i : i + size]
        out.append((sum(p[0] for p in group) / len(group), sum(p[1] for p in group) / len(group)))
    return out


def kneedle(curve: Sequence[Point]) -> int | None:
    """Index of the point farthest above the normalised chord; None for a straight line."""
    if len(curve) < 3:
        return None
    n0, n1 = curve[0][0], curve[-1][0]
    xs = [p[1] for p in curve]
    low, high = min(xs), max(xs)
    if n1 <= n0 or high <= low:
        return None
    ys = [(x - low) / (high - low) for x in xs]
    best, lift = None, _MIN_LIFT
    for i, (n, _) in enumerate(curve):
        along = (n - n0) / (n1 - n0)
        above = ys[i] - (ys[0] + (ys[-1] - ys[0]) * along)
        if above > lift:
            best, lift = i, above
    return best


def analyse(
    intervals: Iterable[tuple[float, float]],
    width: float = 1.0,
    headroom: float = 0.10,
    tolerance: float = 0.10,
) -> Knee:
    """The knee of these requests' X(N) and the max_active it suggests."""
    found = windows(intervals, width)
    check = little(found, tolerance, width)
    points = [(w.n, w.x) for w in found if w.deviation() <= tolerance]
    return knee_of(points, headroom, check)


def knee_of(points: Sequence[Point], headroom: float = 0.10, check: Little | None = None) -> Knee:
    """The knee of (N, X) points (steady windows) and the max_active it suggests."""
    curve = binned(points)
    max_n = max((p[0] for p in points), default=0.0)
    at = kneedle(curve)
    if at is None:
        return Knee(None, 0.0, 0.0, False, None, max_n, curve, check)
    n, x = curve[at]
    saturated = max_n >= n * _REACH and _flat_beyond(points, n, x, max_n)
    suggested = max(1, math.floor(n * (1 - headroom))) if saturated else None
    return Knee(n, x, n / x, saturated, suggested, max_n, curve, check)


def _flat_beyond(points: Sequence[Point], n: float, x: float, max_n: float) -> bool:
    """Past the knee, X(N) rises at under a quarter of its slope below it: the mean point of
    the upper half of the range beyond the knee, against the knee itself."""
    top = [p for p in points if p[0] >= n + (max_n - n) / 2]
    top_n = sum(p[0] for p in top) / len(top)
    top_x = sum(p[1] for p in top) / len(top)
    return top_n > n and (top_x - x) / (top_n - n) <= _FLAT_SLOPE * x / n
