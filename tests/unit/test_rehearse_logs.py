"""`guard rehearse` log readers: guard's JSON, nginx combined + $request_time, Tomcat %D."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guard.tools.rehearse_inputs import within
from guard.tools.rehearse_logs import detect_format, read_log

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rehearse"


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_guard_json_start_is_completion_minus_duration() -> None:
    read = read_log(FIXTURES / "guard.log")
    assert read.bad_lines == 1 and read.skipped == 1  # the garbage line; the bad request
    first, refused, checkout = sorted(read.events, key=lambda e: e.end)
    assert first.end == pytest.approx(at("2025-05-01T10:00:01.500+00:00"))
    assert first.start == pytest.approx(at("2025-05-01T10:00:01.000+00:00"))
    assert (first.method, first.path, first.client, first.backend) == (
        "GET",
        "/event/1",
        "192.0.2.1",
        "was-1",
    )
    assert first.forwarded and not refused.forwarded  # guard answered the refusal itself
    assert checkout.duration == pytest.approx(2.25) and checkout.status == 200


def test_gzip_logs_are_read_like_plain_ones(tmp_path: Path) -> None:
    packed = tmp_path / "access.log.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "guard.log").read_bytes()))
    assert read_log(packed).events == read_log(FIXTURES / "guard.log").events


def test_nginx_spreads_the_lines_of_one_second_in_completion_order() -> None:
    read = read_log(FIXTURES / "nginx.log")
    assert read.bad_lines == 1
    first, second, third = sorted(read.events, key=lambda e: e.end)
    second_start = at("2025-05-01T19:00:01+09:00")
    assert first.end == pytest.approx(second_start + 0.25)  # 1st of 2 lines in that second
    assert second.end == pytest.approx(second_start + 0.75)
    assert first.duration == pytest.approx(0.25) and second.duration == pytest.approx(1.0)
    assert first.path == "/event/1" and first.method == "GET"  # query dropped, as guard matches
    assert third.method == "POST" and third.path == "/order/pay" and third.status == 201
    assert read.tz.utcoffset(None).total_seconds() == 9 * 3600


def test_tomcat_time_is_the_start_and_d_is_milliseconds_or_micro() -> None:
    read = read_log(FIXTURES / "tomcat.log", "tomcat")
    first, second = read.events
    assert first.start == pytest.approx(at("2025-05-01T19:00:01.5+09:00"))  # mid-second
    assert first.duration == pytest.approx(0.25) and second.duration == pytest.approx(1.5)
    assert first.path == "/event/1"  # ;jsessionid stripped, as guard's canonical path
    micro = read_log(FIXTURES / "tomcat.log", "tomcat", unit="us")
    assert micro.events[1].duration == pytest.approx(0.0015, abs=1e-6)


def test_formats_are_detected_from_the_first_line() -> None:
    assert detect_format((FIXTURES / "guard.log").read_text().splitlines()[0]) == "guard-json"
    assert detect_format((FIXTURES / "nginx.log").read_text().splitlines()[0]) == "nginx"
    assert detect_format((FIXTURES / "tomcat.log").read_text().splitlines()[0]) == "tomcat"


def test_from_to_selects_by_start_time_in_the_logs_offset() -> None:
    read = read_log(FIXTURES / "nginx.log")
    kept = within(read.events, "19:00:01", "19:00:01.9", read.tz)
    assert [e.path for e in kept] == ["/event/1"]  # /event/2 started at 19:00:00.75
    assert within(read.events, "2025-05-01T10:00:02Z", None, UTC)[0].method == "POST"
    with pytest.raises(ValueError, match="--from/--to"):
        within(read.events, "noon", None, read.tz)
