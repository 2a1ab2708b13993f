"""Per-rule outcome counts and a fixed-bucket duration histogram.

Plain ints and a bisect: the request path never touches prometheus_client; guard.metrics
turns a snapshot into metric families at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import Final, Literal

Outcome = Literal[
    "admitted", "over_capacity", "over_rate", "blocked", "bad_request", "unavailable", "static",
    "queued", "queue_poll", "pass_busy", "would_queue", "would_refuse",
]  # fmt: skip
# The one list of outcomes (metrics exports every one of them, zeros included). Every
# request gets exactly one: "unavailable" when no backend is up (an outage, not an
# overload: over_capacity is only for full ceilings), "static" for guard's own assets.
# Waiting rooms: "queued" (the queue page or JSON, a closed room's too), "queue_poll"
# (/__guard/queue), "pass_busy" (a pass over its requests in flight). Dry runs forward the
# request and say what would have happened: "would_queue" (a room), "would_refuse" (a rule).
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "admitted",
    "over_capacity",
    "over_rate",
    "blocked",
    "bad_request",
    "unavailable",
    "static",
    "queued",
    "queue_poll",
    "pass_busy",
    "would_queue",
    "would_refuse",
)

# prometheus_client's default buckets plus 3 s and 8 s (the slow / very slow marks of WAS
# operations), +Inf last so every observation lands in a bucket.
DEFAULT_BOUNDS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 3.0, 5.0, 7.5, 8.0, 10.0,
    float("inf"),
)  # fmt: skip

Histogram = tuple[tuple[float, ...], tuple[int, ...], float, int]
"""(upper bounds incl. +Inf, cumulative counts per bound, sum, count)."""


class RuleStats:
    """Outcome counts (one per request) and durations of admitted requests, for one rule."""

    __slots__ = ("_bucket_counts", "count", "outcomes", "sum")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._bucket_counts = [0] * len(DEFAULT_BOUNDS)
        self.sum = 0.0
        self.count = 0

    def record(self, outcome: Outcome) -> None:
        self.outcomes[outcome] += 1

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self._bucket_counts[bisect_left(DEFAULT_BOUNDS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def histogram(self) -> Histogram:
        return (DEFAULT_BOUNDS, tuple(accumulate(self._bucket_counts)), self.sum, self.count)
