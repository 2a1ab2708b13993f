"""The knee and Little's-law windows of `guard rehearse`, on curves whose answer is known."""

from __future__ import annotations

import math

import pytest

from guard.tools.rehearse_knee import analyse, knee_of, kneedle, windows


def test_windows_rebuild_n_x_r_from_start_and_end() -> None:
    """One request every 100 ms, 450 ms each: N = 4.5, X = 10/s, R = 0.45 s."""
    spans = [(k / 10, k / 10 + 0.45) for k in range(100)]
    inner = windows(spans, 1.0)
    assert len(inner) == 9  # seconds 0..10, less the two cut by the edges of the log
    for w in inner:
        assert (w.n, w.x, w.r) == (pytest.approx(4.5), pytest.approx(10), pytest.approx(0.45))
        assert w.deviation() == pytest.approx(0, abs=1e-9)


def saturating(capacity: float, service: float, levels: range) -> list[tuple[float, float]]:
    """X(N) of a pool of `capacity` workers at `service` s each, softened at the corner,
    with a deterministic ±2 % wobble."""
    top = capacity / service
    return [
        (n, top * (n / capacity) / (1 + (n / capacity) ** 8) ** (1 / 8) * (1 + 0.02 * math.sin(n)))
        for n in levels
    ]


def test_the_knee_of_a_saturating_curve_is_the_pool_size() -> None:
    knee = knee_of(saturating(20, 0.2, range(1, 80)), headroom=0.10)
    assert knee.n is not None and knee.saturated
    assert knee.n == pytest.approx(20, rel=0.10)
    assert knee.suggested == math.floor(knee.n * 0.9)
    assert "knee N≈" in knee.line() and "suggested max_active" in knee.line()


def test_a_curve_still_rising_at_the_logs_top_is_not_saturation() -> None:
    knee = knee_of(saturating(20, 0.2, range(1, 16)))
    assert not knee.saturated and knee.suggested is None
    assert "no saturation in this log" in knee.line() and "guard surge --ramp" in knee.line()
    assert kneedle([(n, 5.0 * n) for n in range(1, 30)]) is None  # a straight line


def lanes(levels: list[int], capacity: int, service: float) -> list[tuple[float, float]]:
    """levels[k] lanes busy in second k, each sending requests back to back; once more than
    `capacity` are inside they queue (each takes longer), so X stops at capacity / service."""
    spans = []
    for lane in range(max(levels)):
        t = 0.0
        while t < len(levels):
            level = levels[int(t)]
            if lane >= level:
                t = int(t) + 1.0
                continue
            duration = service * max(1.0, level / capacity)
            spans.append((t, t + duration))
            t += duration
    return spans


def test_analyse_finds_the_knee_from_intervals_and_checks_littles_law() -> None:
    levels = [n for n in range(2, 61, 2) for _ in range(3)]
    knee = analyse(lanes(levels, 20, 0.2), width=1.0, headroom=0.10)
    assert knee.little is not None and knee.little.steady >= 50
    assert knee.n == pytest.approx(20, rel=0.10) and knee.saturated
    assert "N ≈ X·R within 10% in" in knee.little.line()
