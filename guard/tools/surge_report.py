"""What `guard surge` counts, and how it tells it: the progress line and the final summary.

Two views. Requests: every request sent lands in exactly one class (admitted, in line: a
waiting room's answer, waiting page, refused, error), so the classes add up to `requests`.
Shoppers: every arrival ends in exactly one outcome (done, gave up, sold out, refused,
failed). Latencies of admitted requests are measured from the time the request was due, not
from when it was sent (coordinated omission); `lag` is how late surge itself sent requests
relative to their due time — its own trustworthiness.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from guard.tools.surge_room import LineStats, out_of_order

LAG_TRUSTED = 0.050  # lag p99 above this: the generator, not the target, shaped the numbers


def percentile(values: array[float] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)) - 1, 0)
    return float(ordered[rank])


@dataclass
class Stats:
    arrivals: int = 0
    expected: float = 0.0
    admitted: int = 0
    waiting: int = 0
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    done: int = 0  # shoppers whose whole journey was admitted
    queued: int = 0  # ... of which after waiting at least once
    gave_up: int = 0
    shoppers_refused: int = 0
    shoppers_failed: int = 0
    line: LineStats = field(default_factory=LineStats)  # the waiting room, as shoppers saw it
    latency: array[float] = field(default_factory=lambda: array("d"))
    waits: array[float] = field(default_factory=lambda: array("d"))
    lag: array[float] = field(default_factory=lambda: array("d"))
    connections: int = 0  # --connections
    peak_connections: int = 0
    started: float = 0.0
    schedule_end: float = 0.0  # when the last arrival was due (seconds from start)
    elapsed: float = 0.0

    @property
    def requests(self) -> int:
        answered = self.admitted + self.line.answers + self.waiting + self.refused
        return answered + sum(self.errors.values())

    @property
    def in_flight(self) -> int:
        ended = self.done + self.gave_up + self.line.sold_out + self.shoppers_refused
        ended += self.shoppers_failed
        return self.arrivals - ended


def summary(stats: Stats) -> dict[str, Any]:
    """The machine-readable summary (`--json`); times in milliseconds."""
    lag_p99 = percentile(stats.lag, 99)
    window = stats.schedule_end or stats.elapsed
    return {
        "arrivals": stats.arrivals,
        "expected_arrivals": round(stats.expected, 1),
        "achieved_rate": round(stats.arrivals / window, 1) if window else 0.0,
        "requests": stats.requests,
        "admitted": stats.admitted,
        "in_line": stats.line.answers,
        "waiting_page": stats.waiting,
        "refused": stats.refused,
        "errors": sum(stats.errors.values()),
        "error_kinds": dict(stats.errors),
        "shoppers": {
            "done": stats.done,
            "queued": stats.queued,
            "gave_up": stats.gave_up,
            "sold_out": stats.line.sold_out,
            "refused": stats.shoppers_refused,
            "failed": stats.shoppers_failed,
            "in_flight_at_end": stats.in_flight,
        },
        "latency_ms": _ms(stats.latency),
        "wait_ms": _ms(stats.waits),
        "waiting_room": waiting_room(stats.line),
        "lag_ms": _ms(stats.lag),
        "connections": {"limit": stats.connections, "peak": stats.peak_connections},
        "elapsed_s": round(stats.elapsed, 3),
        "trustworthy": lag_p99 <= LAG_TRUSTED,
    }


def waiting_room(line: LineStats) -> dict[str, Any]:
    """The line as its shoppers saw it: who got in, after how long, and in what order."""
    bad, pairs = out_of_order(line.lines)
    positions = line.positions
    return {
        "shoppers": line.shoppers,
        "admitted": line.admitted,
        "sold_out": line.sold_out,
        "gave_up": line.gave_up,
        "wait_ms": _ms(line.waits),
        "first_position": {
            "p50": percentile(positions, 50),
            "p99": percentile(positions, 99),
            "max": max(positions, default=0.0),
        },
        "pairs": pairs,
        "pairs_out_of_order": bad,
        "in_order_share": round(1 - bad / pairs, 4) if pairs else 1.0,
    }


def _ms(values: array[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50) * 1000, 2),
        "p99": round(percentile(values, 99) * 1000, 2),
        "max": round(max(values, default=0.0) * 1000, 2),
    }


def kind_of(status: int, retry_after: float | None, queue: bool) -> str:
    """A response's class in the summary (a waiting room's answer first: its 200 is no entry)."""
    if queue:
        return "line"
    if 200 <= status < 400:
        return "admitted"
    if status == 503 and retry_after is not None:
        return "waiting"
    if status in (403, 429):
        return "refused"
    return "error"


def to_json(stats: Stats) -> str:
    return json.dumps(summary(stats), indent=2)


def to_text(stats: Stats) -> str:
    doc = summary(stats)
    window = round(stats.schedule_end or stats.elapsed, 2)
    shoppers = doc["shoppers"]
    lat, wait, lag = doc["latency_ms"], doc["wait_ms"], doc["lag_ms"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(doc["error_kinds"].items())) or "none"
    rows = [
        ("arrivals", f"{doc['arrivals']} (scheduled {doc['expected_arrivals']:g})"),
        ("mean arrival rate", f"{doc['achieved_rate']:g}/s over {window:g} s"),
        ("requests", f"{doc['requests']}"),
        ("  admitted", _share(doc["admitted"], doc["requests"])),
        ("  in line", _share(doc["in_line"], doc["requests"])),
        ("  waiting page", _share(doc["waiting_page"], doc["requests"])),
        ("  refused", _share(doc["refused"], doc["requests"])),
        ("  errors", f"{_share(doc['errors'], doc['requests'])}  ({kinds})"),
        (
            "admitted latency",
            f"p50 {lat['p50']:g} ms  p99 {lat['p99']:g} ms  max {lat['max']:g} ms",
        ),
        ("shoppers done", f"{shoppers['done']}"),
        ("  queued", f"{shoppers['queued']}  wait p50 {wait['p50']:g} ms  p99 {wait['p99']:g} ms"),
        ("gave up", f"{shoppers['gave_up']}"),
        ("sold out", f"{shoppers['sold_out']}"),
        ("refused / failed", f"{shoppers['refused']} / {shoppers['failed']}"),
        ("in flight at end", f"{shoppers['in_flight_at_end']}"),
        ("surge lag", f"p99 {lag['p99']:g} ms  max {lag['max']:g} ms"),
        *_room_rows(doc["waiting_room"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if not doc["trustworthy"]:
        lines.append(
            f"WARNING: surge sent requests late (lag p99 {lag['p99']:g} ms > "
            f"{LAG_TRUSTED * 1000:g} ms): it could not keep up with "
            f"{doc['expected_arrivals'] / (stats.schedule_end or 1):.0f}/s; "
            "latencies include its own backlog"
        )
    if stats.connections and stats.peak_connections >= stats.connections:
        lines.append(
            f"note: all {stats.connections} connections were in use at times; requests then "
            "waited for one (counted in their latency): raise --connections"
        )
    return "\n".join(lines)


def _room_rows(room: dict[str, Any]) -> list[tuple[str, str]]:
    if not room["shoppers"]:
        return []
    wait, first = room["wait_ms"], room["first_position"]
    return [
        (
            "waiting room",
            f"{room['shoppers']} shoppers in line: admitted {room['admitted']}, "
            f"sold out {room['sold_out']}, gave up {room['gave_up']}",
        ),
        ("  line wait", f"p50 {wait['p50']:g} ms  p99 {wait['p99']:g} ms  max {wait['max']:g} ms"),
        ("  first position", f"p50 {first['p50']:g}  p99 {first['p99']:g}  max {first['max']:g}"),
        (
            "  arrival order",
            f"{100 * room['in_order_share']:.1f}% of {room['pairs']} pairs let in in order",
        ),
    ]


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.1f}%)" if total else f"{count}"


@dataclass
class Progress:
    """The once-a-second line: counts since the previous line, so a shape shows as it runs."""

    last: dict[str, int] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)  # admitted this second
    lag: list[float] = field(default_factory=list)  # lag this second

    def line(self, stats: Stats, now: float, target_rate: float) -> str:
        counts = {
            "arr": stats.arrivals,
            "ok": stats.admitted,
            "wait": stats.waiting,
            "line": stats.line.answers,
            "ref": stats.refused,
            "err": sum(stats.errors.values()),
        }
        delta = {k: v - self.last.get(k, 0) for k, v in counts.items()}
        self.last = counts
        p99 = percentile(self.latency, 99) * 1000
        lag = percentile(self.lag, 99) * 1000
        self.latency.clear()
        self.lag.clear()
        parts = " ".join(f"{k} {v}/s" for k, v in delta.items())
        return (
            f"[{now:5.1f}s] target {target_rate:.0f}/s  {parts}  ok p99 {p99:.0f} ms  "
            f"in flight {stats.in_flight}  lag p99 {lag:.1f} ms"
        )
