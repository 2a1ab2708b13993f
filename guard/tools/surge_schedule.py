"""The arrival schedule of `guard surge`: an open model, independent of how fast the target answers.

A shape is a piecewise-linear arrival rate over time (constant, a linear ramp from a start rate,
spikes that multiply the rate for a window). Arrivals are placed by inverting the cumulative
count N(t) = integral of the rate: the k-th arrival of a uniform schedule is where N(t) = k, a
Poisson schedule uses exponential(1) steps in N instead of steps of 1 (the time-change theorem),
so both follow the shape exactly and a uniform run at R/s for D s has exactly R*D arrivals.

Pure: no clock, no I/O. The engine asks `Arrivals.take_due(now)` with its own clock.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SPIKE = re.compile(r"^(?:(?P<start>[^+@]+)\+)?(?P<length>[^+@]+)@(?P<factor>\d+(?:\.\d+)?)x?$")


def parse_duration(text: str) -> float:
    """'500ms', '30s', '2m', '1h' or a bare number of seconds."""
    found = _DURATION.match(text)
    if found is None:
        raise argparse.ArgumentTypeError(f'expected a duration like 500ms, 30s or 2m, got "{text}"')
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def parse_rate(text: str) -> float:
    """'500', '500/s' or '3000/m' -> arrivals per second."""
    number, _, unit = text.strip().partition("/")
    per = {"": 1.0, "s": 1.0, "m": 60.0}.get(unit.strip())
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if per is None or value < 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f'expected a rate like 500 or 500/s or 3000/m, got "{text}"'
        )
    return value / per


@dataclass(frozen=True)
class Spike:
    """The rate times `factor` from `start` for `length` seconds (start None: mid-run)."""

    start: float | None
    length: float
    factor: float


def parse_spike(text: str) -> Spike:
    """'[START+]LENGTH@FACTORx', e.g. '10s+5s@3x' (from 10 s, for 5 s, three times the rate)."""
    found = _SPIKE.match(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(
            f'expected a spike like 5s@3x (mid-run) or 10s+5s@3x (from 10 s), got "{text}"'
        )
    start = found.group("start")
    return Spike(
        None if start is None else parse_duration(start),
        parse_duration(found.group("length")),
        float(found.group("factor")),
    )


@dataclass(frozen=True)
class Segment:
    """[t0, t1) where the rate goes linearly from r0 to r1 (arrivals/s)."""

    t0: float
    t1: float
    r0: float
    r1: float

    @property
    def count(self) -> float:
        return (self.r0 + self.r1) * (self.t1 - self.t0) / 2

    def time_of(self, n: float) -> float:
        """The time within the segment where the cumulative count from t0 reaches n.
        Solves r0*x + s*x^2/2 = n in the form that holds for s == 0 and r0 == 0 alike."""
        slope = (self.r1 - self.r0) / (self.t1 - self.t0)
        root = math.sqrt(max(self.r0 * self.r0 + 2 * slope * n, 0.0))
        if n <= 0:
            return self.t0
        return self.t0 + 2 * n / (self.r0 + root)


@dataclass(frozen=True)
class Shape:
    """Target `rate` for `duration` s, reached linearly from `start_rate` over `ramp` s."""

    rate: float
    duration: float
    ramp: float = 0.0
    start_rate: float = 0.0
    spikes: tuple[Spike, ...] = ()

    def _windows(self) -> list[tuple[float, float, float]]:
        """Each spike as (start, end, factor), a start-less spike centred in the run."""
        out = []
        for spike in self.spikes:
            start = (self.duration - spike.length) / 2 if spike.start is None else spike.start
            out.append((max(start, 0.0), min(start + spike.length, self.duration), spike.factor))
        return out

    def _base(self, t: float) -> float:
        if self.ramp > 0 and t < self.ramp:
            return self.start_rate + (self.rate - self.start_rate) * t / self.ramp
        return self.rate

    def _factor(self, t: float) -> float:
        factor = 1.0
        for start, end, times in self._windows():
            if start <= t < end:
                factor *= times
        return factor

    def rate_at(self, t: float) -> float:
        """The target arrival rate at t seconds into the run (0 outside it)."""
        if not 0 <= t < self.duration:
            return 0.0
        return self._base(t) * self._factor(t)

    def segments(self) -> list[Segment]:
        cuts = {0.0, self.duration}
        if 0 < self.ramp < self.duration:
            cuts.add(self.ramp)
        for start, end, _ in self._windows():
            cuts.update(t for t in (start, end) if 0 < t < self.duration)
        points = sorted(cuts)
        out = []
        for t0, t1 in itertools.pairwise(points):
            factor = self._factor((t0 + t1) / 2)
            out.append(Segment(t0, t1, self._base(t0) * factor, self._base(t1) * factor))
        return out

    def expected(self) -> float:
        """The expected number of arrivals over the run."""
        return sum(segment.count for segment in self.segments())


def arrival_times(shape: Shape, poisson: bool = False, seed: int | None = None) -> Iterator[float]:
    """Arrival offsets in seconds from the start of the run, ascending, lazily."""
    rng = random.Random(seed)
    target = rng.expovariate(1.0) if poisson else 0.0
    passed = 0.0  # cumulative count at the start of the current segment
    for segment in shape.segments():
        end = passed + segment.count
        while target < end:
            yield segment.time_of(target - passed)
            target += rng.expovariate(1.0) if poisson else 1.0
        passed = end


class Arrivals:
    """The schedule as the engine's scheduler loop sees it: what is due by `now`."""

    def __init__(self, times: Iterator[float]) -> None:
        self._times = times
        self._next: float | None = next(times, None)
        self.taken = 0

    @property
    def next_due(self) -> float | None:
        return self._next

    def take_due(self, now: float) -> list[float]:
        """Every arrival scheduled at or before `now` (seconds from the start), in order."""
        due = []
        while self._next is not None and self._next <= now:
            due.append(self._next)
            self._next = next(self._times, None)
        self.taken += len(due)
        return due
