"""`guard rehearse` with waiting rooms: lines moved by the real controller, against hand answers.

The hand answer for constant arrivals above a room's rate: a room of 2/s with a burst of 1 and
ceilings far away; a new shopper every 100 ms. The first goes straight through (the direct
bucket holds one token); the second finds the bucket empty and takes place 2, and from then on
the line never empties (10/s in, 2/s out), so nobody else goes straight through: shopper k
(k >= 1) holds place k + 1. Each 0.2 s tick moves the watermark by 2/s x 0.2 s from 1, so
place k + 1 is let in at the first tick at or after k / 2 s, having arrived at k / 10 s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guard.config import load_config
from guard.tools.rehearse import rehearse
from guard.tools.rehearse_html import to_html
from guard.tools.rehearse_logs import Event, read_log
from guard.tools.rehearse_report import to_json, to_text
from tests.support.servers import write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rehearse"
TICK = 0.2
T0 = datetime(2025, 5, 1, 10, tzinfo=UTC).timestamp()


def config(tmp_path: Path, ceiling: int = 1000, room: str = "") -> Any:
    text = f"""
waiting_page: waiting.html
backends:
  - {{name: was-1, url: 'http://127.0.0.1:9', max_active: 1000}}
rooms:
  - {{name: sale, admit_rate: 2/s, admit_burst: 1{room}}}
rules:
  - {{name: event, path: /event/**, max_active: {ceiling}, room: sale}}
  - {{name: other, path: /**}}
"""
    return load_config(write_config(tmp_path, text)).config


def arrivals(count: int, client: str | None = None) -> list[Event]:
    return [
        Event(T0 + i / 10, T0 + i / 10 + 0.1, "GET", "/event/x", client or f"10.0.0.{i}", 200)
        for i in range(count)
    ]


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in items if item["name"] == name)


def test_constant_arrivals_above_the_admit_rate_queue_and_wait_as_computed(
    tmp_path: Path,
) -> None:
    doc = rehearse(config(tmp_path), arrivals(100), {"source": "constant"})
    room = by_name(doc["rooms"], "sale")
    assert (room["shoppers_direct"], room["shoppers_queued"], room["shoppers_admitted"]) == (
        1,
        99,
        99,
    )
    assert room["requests_left_waiting"] == 0 and doc["admitted"] == 100 and doc["refused"] == 0
    assert by_name(doc["rules"], "event")["queued"] == 99
    # shopper 99 arrives at 9.9 s and is let in at the first tick at or after 49.5 s
    assert room["wait_s"]["max"] == pytest.approx(49.5 - 9.9, abs=TICK + 1e-6)
    # the median of the 99 waits is shopper 50's: let in at 25 s, arrived at 5 s
    assert room["wait_s"]["p50"] == pytest.approx(25.0 - 5.0, abs=TICK + 1e-6)
    # at 9.9 s: 100 numbers issued, the watermark at 1 + 2 x 9.8 (the last tick)
    assert room["longest_line"] == 100 - 20
    assert doc["input"]["span_s"] == pytest.approx(49.6 + 0.1, abs=TICK + 1e-6)


def test_a_shopper_with_a_pass_goes_on_and_unknown_clients_queue_alone(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    same = by_name(rehearse(cfg, arrivals(3, "10.0.0.1"), {"source": "one"})["rooms"], "sale")
    assert (same["shoppers_direct"], same["shoppers_queued"], same["requests_queued"]) == (1, 0, 0)
    unknown = by_name(rehearse(cfg, arrivals(3, "-"), {"source": "anon"})["rooms"], "sale")
    assert (unknown["shoppers_direct"], unknown["shoppers_queued"]) == (1, 2)


def test_a_line_left_when_the_event_ends_is_reported_and_later_shoppers_go_plain(
    tmp_path: Path,
) -> None:
    end = ", schedule: {end: '2025-05-01T10:00:05.25+00:00'}"
    doc = rehearse(config(tmp_path, room=end), arrivals(100), {"source": "ends"})
    room = by_name(doc["rooms"], "sale")
    # queued: shoppers 1..52 (before 5.25 s); let in by the tick at 5.2 s: places <= 11
    assert (room["shoppers_queued"], room["shoppers_admitted"]) == (52, 10)
    assert room["requests_left_waiting"] == 42
    assert by_name(doc["rules"], "event")["left_waiting"] == 42
    assert doc["admitted"] == 1 + 10 + 47  # 47 after the end: the rule without its line


def test_the_fixture_log_through_a_room(tmp_path: Path) -> None:
    """constant.log: 100 requests, one every 100 ms, 450 ms each, from 50 clients (client k
    at k / 10 s and again at 5 + k / 10 s). As above, shopper k >= 1 is let in at the first
    tick after k / 2 s; the last new one (k = 49, at 4.9 s) waits 24.5 - 4.9 s. Clients let in
    before their second request (k <= 12) go straight on with their pass."""
    events = read_log(FIXTURES / "constant.log").events
    doc = rehearse(config(tmp_path, ceiling=10), events, {"source": "constant.log"})
    room = by_name(doc["rooms"], "sale")
    assert (room["shoppers_direct"], room["shoppers_queued"], room["shoppers_admitted"]) == (
        1,
        49,
        49,
    )
    assert room["wait_s"]["max"] == pytest.approx(24.5 - 4.9, abs=TICK + 1e-6)
    assert 49 + 36 <= room["requests_queued"] <= 49 + 37  # k = 12 is let in one tick early
    assert doc["admitted"] == 100 and doc["refused"] == 0
    assert by_name(doc["rules"], "event")["queued"] == room["requests_queued"]
    assert "sale" in to_text(doc) and "max wait" in to_text(doc)
    assert "Waiting rooms" in to_html(doc) and '"shoppers_queued": 49' in to_json(doc)

    # Under a ceiling of 3 without the room, 40 are refused (test_rehearse_replay); with it,
    # only pass holders meeting the ceiling are.
    tight = rehearse(config(tmp_path, ceiling=3), events, {"source": "constant.log"})
    assert 0 < tight["refused"] == by_name(tight["rooms"], "sale")["pass_refused"] < 40
