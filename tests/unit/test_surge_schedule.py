"""`guard surge`'s arrival schedule: the shapes a rehearsal relies on, on a hand-driven clock."""

from __future__ import annotations

import argparse
import itertools

import pytest

from guard.tools.surge_schedule import (
    Arrivals,
    Shape,
    Spike,
    arrival_times,
    parse_duration,
    parse_rate,
    parse_spike,
)


def count_between(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t < end)


def test_constant_rate_gives_exactly_rate_times_duration_evenly_spaced() -> None:
    times = list(arrival_times(Shape(rate=500, duration=3)))
    assert len(times) == 1500
    assert times[0] == 0.0
    assert times[-1] < 3.0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.002}


def test_fake_clock_releases_only_what_is_due() -> None:
    arrivals = Arrivals(arrival_times(Shape(rate=10, duration=2)))
    assert arrivals.take_due(0.0) == [0.0]
    assert arrivals.take_due(0.05) == []  # the next one is due at 0.1
    assert arrivals.take_due(0.35) == pytest.approx([0.1, 0.2, 0.3])
    assert arrivals.next_due == pytest.approx(0.4)
    assert len(arrivals.take_due(100.0)) == 16
    assert arrivals.next_due is None
    assert arrivals.taken == 20


def test_linear_ramp_follows_the_integral_of_the_rate() -> None:
    """Ramp 0 -> 100/s over 10 s, then 100/s for 10 s: 500 arrivals in the ramp
    (the triangle), growing with t^2 inside it, then 1000 at the full rate."""
    shape = Shape(rate=100, duration=20, ramp=10)
    times = list(arrival_times(shape))
    assert len(times) == pytest.approx(1500, abs=1)
    assert count_between(times, 0, 5) == pytest.approx(125, abs=1)  # 100/10 * 5^2 / 2
    assert count_between(times, 5, 10) == pytest.approx(375, abs=1)
    assert count_between(times, 10, 20) == pytest.approx(1000, abs=1)
    assert shape.rate_at(2.5) == pytest.approx(25)


def test_ramp_from_a_start_rate() -> None:
    shape = Shape(rate=300, duration=4, ramp=2, start_rate=100)
    times = list(arrival_times(shape))
    assert count_between(times, 0, 2) == pytest.approx(400, abs=1)  # mean 200/s over 2 s
    assert count_between(times, 2, 4) == pytest.approx(600, abs=1)


def test_spike_multiplies_the_rate_for_its_window_only() -> None:
    shape = Shape(rate=100, duration=10, spikes=(Spike(start=4, length=2, factor=3),))
    times = list(arrival_times(shape))
    assert count_between(times, 0, 4) == pytest.approx(400, abs=1)
    assert count_between(times, 4, 6) == pytest.approx(600, abs=1)
    assert count_between(times, 6, 10) == pytest.approx(400, abs=1)
    assert shape.expected() == pytest.approx(1400)


def test_spike_without_a_start_is_centred_in_the_run() -> None:
    shape = Shape(rate=50, duration=10, spikes=(parse_spike("2s@4x"),))
    assert shape.rate_at(3.9) == 50
    assert shape.rate_at(4.0) == 200
    assert shape.rate_at(5.99) == 200
    assert shape.rate_at(6.0) == 50


def test_poisson_keeps_the_mean_and_is_bursty() -> None:
    times = list(arrival_times(Shape(rate=1000, duration=10), poisson=True, seed=7))
    assert len(times) == pytest.approx(10_000, rel=0.05)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) < 0.0001 < 0.003 < max(gaps)  # exponential gaps, not a fixed 1 ms
    assert times == sorted(times)
    again = list(arrival_times(Shape(rate=1000, duration=10), poisson=True, seed=7))
    assert again == times  # a seed replays the same surge


def test_zero_rate_schedules_nothing() -> None:
    assert list(arrival_times(Shape(rate=0, duration=5))) == []


def test_flag_forms() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    assert parse_duration("1.5") == 1.5
    assert parse_rate("500/s") == 500
    assert parse_rate("3000/m") == 50
    assert parse_spike("10s+5s@3x") == Spike(10, 5, 3)
    for bad, parse in (("fast", parse_duration), ("5/h", parse_rate), ("3x", parse_spike)):
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            parse(bad)
