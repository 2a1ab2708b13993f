"""`guard surge` through a real waiting room: shoppers follow the line as a browser or an app
does, and what surge reports about the line matches what guard's access log saw."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from guard.tools.surge import Record, surge
from guard.tools.surge_args import SurgeOptions, resolve_target
from guard.tools.surge_report import Stats, summary, to_text
from guard.tools.surge_room import Line, out_of_order, read_answer
from guard.tools.surge_schedule import Shape
from tests.integration.test_room_ops import admin
from tests.support.polling import poll
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml, read_access_log

ROOT = Path(__file__).resolve().parents[2]
# 10 shoppers let in per second; polls every second (Retry-After is whole seconds).
ROOM = """
rules:
  - {name: event, path: /event, max_active: 2, room: sale}
rooms:
  - {name: sale, admit_rate: 10/s, admit_burst: 2, place_hold: 3s, refresh_min: 100ms,
     refresh_max: 1s}
"""


async def room_guard(start_was: StartWas, start_guard: StartGuard) -> Guard:
    was = await start_was(workers=50, service_time=0.02)
    return await start_guard(backends_yaml(was) + ROOM)


def options(target_path: str, shape: Shape) -> SurgeOptions:
    # Half browsers (reload the page), half apps (poll /__guard/queue with X-Guard-Place).
    return SurgeOptions(
        shape=shape, paths=(target_path,), browsers=0.5, seed=7, patience=10.0,
        keep_records=True,
    )  # fmt: skip


def by_request_id(records: list[Record]) -> dict[str, Record]:
    """surge-<shopper>-<n>: a shopper's n-th request, as guard logged it."""
    sent: dict[int, int] = defaultdict(int)
    out = {}
    for record in records:
        out[f"surge-{record[0]}-{sent[record[0]]}"] = record
        sent[record[0]] += 1
    return out


def started(line: dict[str, Any]) -> float:
    """When guard took the request: the log's time is when it answered."""
    return datetime.fromisoformat(line["time"]).timestamp() - line["duration_ms"] / 1000


def logged_waits(log: list[dict[str, Any]]) -> list[float]:
    """Per shopper: from its first queued request to its admitted one, by guard's clock."""
    first: dict[str, float] = {}
    waits = []
    for line in sorted(log, key=started):
        shopper = line["request_id"].rsplit("-", 1)[0]
        if line["outcome"] == "queued":
            first.setdefault(shopper, started(line))
        elif line["outcome"] == "admitted" and shopper in first:
            waits.append(started(line) - first.pop(shopper))
    return sorted(waits)


async def test_queued_shoppers_are_never_counted_admitted_and_get_in_in_order(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """20 arrivals in 0.5 s onto a room letting 10/s in: most wait in line, up to 2 s."""
    guard = await room_guard(start_was, start_guard)
    target = resolve_target(f"{guard.url}/event")
    stats, records = await surge(options(target.path, Shape(rate=40, duration=0.5)), target)

    log = read_access_log(guard)
    assert len(log) == len(records) == stats.requests
    records_by_id = by_request_id(records)
    kinds = {line["outcome"]: set() for line in log}
    for line in log:
        kinds[line["outcome"]].add(records_by_id[line["request_id"]][9])
    # A queue answer (a 200 page for browsers, 429 JSON for apps, a poll) is never admitted.
    assert kinds["queued"] == {"line"} and kinds["queue_poll"] == {"line"}
    assert kinds["admitted"] == {"admitted"}
    outcomes = [line["outcome"] for line in log]
    assert stats.admitted == outcomes.count("admitted") == stats.arrivals == 20
    assert stats.line.answers == outcomes.count("queued") + outcomes.count("queue_poll")
    assert any(line["status"] == 200 for line in log if line["outcome"] == "queued")  # pages
    assert outcomes.count("queue_poll") > 0  # and apps polled

    line = stats.line
    assert line.shoppers >= 10 and line.admitted == line.shoppers  # everyone in line got in
    assert line.sold_out == line.gave_up == 0 and stats.in_flight == 0
    # Positions as told: each behind at most everyone queued, the line growing as they came.
    assert len(line.positions) == line.shoppers and min(line.positions) >= 1
    assert line.shoppers >= max(line.positions) >= line.shoppers // 2
    room = summary(stats)["waiting_room"]
    assert (
        room["in_order_share"] >= 0.95 and room["pairs"] == line.shoppers * (line.shoppers - 1) // 2
    )

    # The waits surge reports are the waits guard saw, shopper by shopper (sorted).
    from_log = logged_waits(log)
    assert len(from_log) == line.shoppers
    for reported, seen in zip(sorted(line.waits), from_log, strict=True):
        assert reported == pytest.approx(seen, abs=0.05)
    assert max(line.waits) >= 1.0  # a real wait: at least one refresh
    assert "waiting room" in to_text(stats) and "pairs let in in order" in to_text(stats)


async def test_a_room_closed_mid_run_shows_as_sold_out(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await room_guard(start_was, start_guard)
    target = resolve_target(f"{guard.url}/event")
    run = asyncio.ensure_future(surge(options(target.path, Shape(rate=40, duration=1)), target))
    room = guard.runtime.rooms.rooms["sale"]
    await poll(lambda: room.controller.store.issued() >= 10 or run.done(), timeout=5.0)
    assert (await admin(guard, "POST", "/rooms/sale/close"))[1]["state"] == "closed"
    stats, _ = await run
    sold: Stats = stats

    assert sold.line.sold_out > 0  # those still in line, and arrivals after the close
    assert sold.line.sold_out + sold.line.admitted == sold.line.shoppers
    assert sold.done + sold.line.sold_out == sold.arrivals and sold.in_flight == 0
    assert sold.gave_up == 0 and not sold.errors
    logged_admitted = [line for line in read_access_log(guard) if line["outcome"] == "admitted"]
    assert sold.admitted == len(logged_admitted)
    assert summary(sold)["shoppers"]["sold_out"] == sold.line.sold_out
    assert "sold out" in to_text(sold)


def test_out_of_order_pairs_are_those_a_shopper_could_see() -> None:
    """Joined in order 0, 1, 2, 3. Shopper 2 got in (t=5) while 0 was still told to wait
    (t=6): one pair out of order; 3 never got in and is behind everyone (in order)."""
    lines = []
    for joined, told_wait, admitted in ((0, 6, 7), (1, 4, 4.5), (2, 3, 5), (3, 9, math.inf)):
        line = Line(joined, joined, None)
        line.told_wait, line.admitted = told_wait, admitted
        lines.append(line)
    # (0,1): 1 in at 4.5 < 0 waiting at 6; (0,2): 5 < 6. (1,2), (x,3): in order.
    assert out_of_order(lines) == (2, 6)
    assert out_of_order(list(reversed(lines))) == (2, 6)  # order of input does not matter
    assert out_of_order([]) == (0, 0)


def test_queue_answers_read_from_json_and_the_shipped_page() -> None:
    said = read_answer(b'{"room":"sale","state":"open","status":"queued","position":7}')
    assert (said.status, said.position, said.room) == ("queued", 7, "sale")
    page = (ROOT / "guard" / "static" / "queue.html").read_bytes()
    filled = page.replace(b"{{status}}", b"closed").replace(b"{{position}}", b"3")
    said = read_answer(filled.replace(b"{{room}}", b"sale"))
    assert (said.status, said.position, said.room) == ("closed", 3, "sale")
    assert read_answer(b"<html>a custom page</html>").status == ""
