"""guard.accesslog: line formats, hostile input, buffering, the cap on a stuck stream."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from guard.proxy.accesslog import AccessLog

T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z


def clock() -> float:
    return T0


def entry(
    log: AccessLog,
    path: str = "/event/1",
    method: str = "GET",
    request_id: str | None = "rid-1",
    backend: str | None = "was-1",
) -> None:
    log.log("10.0.0.7", method, path, "event", backend, "admitted", 200, 0.0123456, request_id)


def lines(buf: io.BytesIO) -> list[str]:
    return buf.getvalue().decode("ascii").splitlines()


def test_json_line_fields() -> None:
    buf = io.BytesIO()
    log = AccessLog("json", buf, clock=clock)
    entry(log)
    assert buf.getvalue() == b""  # buffered until flush
    log.flush()
    assert json.loads(lines(buf)[0]) == {
        "time": "2023-11-14T22:13:20.250Z",
        "request_id": "rid-1",
        "client": "10.0.0.7",
        "method": "GET",
        "path": "/event/1",
        "rule": "event",
        "backend": "was-1",
        "outcome": "admitted",
        "status": 200,
        "duration_ms": 12.346,
    }
    assert '"duration_ms":12.346}' in lines(buf)[0]  # 3 decimals


def test_json_nulls_for_refusals() -> None:
    buf = io.BytesIO()
    log = AccessLog("json", buf, clock=clock)
    log.log("10.0.0.7", "GET", "/x", "default", None, "over_capacity", 503, 0.0, None)
    log.flush()
    doc = json.loads(buf.getvalue())
    assert doc["backend"] is None and doc["request_id"] is None and doc["status"] == 503


HOSTILE = [
    '/a"b',
    "/a\\b",
    "/a\x00b",
    "/a\r\nb",
    '/x","status":999,"y":"',
    "/caf\u00e9/\u4e2d\u6587/\U0001f600",
    "/\ud800lone-surrogate",
    "/\x7f\x1b[31m",
    "",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_json_hostile_strings_round_trip(path: str) -> None:
    buf = io.BytesIO()
    log = AccessLog("json", buf, clock=clock)
    entry(log, path=path, method=path, request_id=path)
    log.flush()
    out = lines(buf)  # decodes as ASCII: nothing raw leaves the escaper
    assert len(out) == 1  # no line break can be injected
    doc = json.loads(out[0])
    assert doc["path"] == doc["method"] == doc["request_id"] == path
    assert doc["status"] == 200


def test_text_format() -> None:
    buf = io.BytesIO()
    log = AccessLog("text", buf, clock=clock)
    entry(log)
    log.log("10.0.0.7", "GET", '/a b="c"\n', "default", None, "blocked", 403, 0.0005, None)
    log.flush()
    first, second = lines(buf)
    assert first == (
        "time=2023-11-14T22:13:20.250Z request_id=rid-1 client=10.0.0.7 method=GET"
        " path=/event/1 rule=event backend=was-1 outcome=admitted status=200"
        " duration_ms=12.346"
    )
    # Unsafe values are quoted and escaped, so fields and lines stay unambiguous.
    assert ' path="/a b=\\"c\\"\\n" ' in second
    assert "backend=- " in second and "request_id=- " in second
    assert second.endswith("status=403 duration_ms=0.500")


def test_off_writes_nothing() -> None:
    buf = io.BytesIO()
    log = AccessLog("off", buf)
    for _ in range(10_000):
        entry(log)
    log.flush()
    log.close()
    assert buf.getvalue() == b"" and log.dropped == 0 and not log.enabled


def test_bad_format_rejected() -> None:
    with pytest.raises(ValueError):
        AccessLog("xml", io.BytesIO())  # type: ignore[arg-type]


class CountingSink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self.writes.append(bytes(data))
        return len(data)


def test_flushes_itself_in_one_write_past_threshold() -> None:
    sink = CountingSink()
    log = AccessLog("json", sink, flush_bytes=4096, clock=clock)
    line_len = 0
    while not sink.writes:
        entry(log)
        line_len += 1
    assert len(sink.writes) == 1  # one write for many lines
    assert sink.writes[0].count(b"\n") == line_len > 10
    assert log.buffered_bytes == 0
    entry(log)
    log.flush()
    assert len(sink.writes) == 2
    log.flush()  # nothing buffered: no empty write
    assert len(sink.writes) == 2


class StuckSink:
    """A non-blocking pipe nobody reads: takes `room` bytes, then would block."""

    def __init__(self, room: int = 0, raise_blocking: bool = False) -> None:
        self.room = room
        self.raise_blocking = raise_blocking
        self.data = bytearray()
        self.calls = 0

    def write(self, data: bytes | memoryview) -> int | None:
        self.calls += 1
        n = min(self.room, len(data))
        self.data += bytes(data[:n])
        self.room -= n
        if n == 0:
            if self.raise_blocking:
                raise BlockingIOError(11, "would block", 0)
            return None
        return n


@pytest.mark.parametrize("raise_blocking", [False, True])
def test_stuck_stream_is_capped_and_counted_then_recovers(raise_blocking: bool) -> None:
    sink = StuckSink(room=1000, raise_blocking=raise_blocking)
    log = AccessLog("json", sink, flush_bytes=2048, max_buffer_bytes=16384, clock=clock)
    for _ in range(2000):
        entry(log)
    assert log.buffered_bytes <= 16384
    assert log.dropped > 1000
    # Once stuck, logging does not retry the write on every line (the periodic flush does).
    assert sink.calls <= 3
    kept = 2000 - log.dropped
    sink.room = 10**9  # the reader woke up
    log.flush()
    out = bytes(sink.data).decode().splitlines()
    assert len(out) == kept  # a partially written line was completed, nothing duplicated
    assert all(json.loads(line)["path"] == "/event/1" for line in out)
    assert log.buffered_bytes == 0
    entry(log)
    log.flush()
    assert bytes(sink.data).count(b"\n") == kept + 1


class BrokenSink:
    def write(self, data: bytes | memoryview) -> int:
        raise BrokenPipeError(32, "broken pipe")


def test_failing_stream_drops_batch_without_raising() -> None:
    log = AccessLog("json", BrokenSink(), clock=clock)
    for _ in range(5):
        entry(log)
    log.flush()
    assert log.dropped == 5 and log.buffered_bytes == 0
    log.close()


@dataclass(frozen=True)
class Cfg:
    format: str
    path: Path | None = None
    refusals: str = "all"
    refusal_lines_per_second: int = 10


def test_from_config_file_appends_and_close_flushes(tmp_path: Path) -> None:
    target = tmp_path / "access.log"
    target.write_bytes(b"earlier\n")
    log = AccessLog.from_config(Cfg("text", target))
    entry(log)
    log.close()
    text = target.read_text().splitlines()
    assert text[0] == "earlier" and text[1].startswith("time=") and len(text) == 2
    entry(log)  # after close: ignored, no error
    log.flush()


def test_from_config_stdout_override_and_off() -> None:
    buf = io.BytesIO()
    log = AccessLog.from_config(Cfg("json"), stdout=buf)
    entry(log)
    log.flush()
    assert json.loads(buf.getvalue())["rule"] == "event"
    assert not AccessLog.from_config(Cfg("off"), stdout=buf).enabled
    assert not AccessLog.from_config(None).enabled
    with pytest.raises(ValueError):
        AccessLog.from_config(Cfg("xml"), stdout=buf)


def test_timestamp_advances_with_the_clock() -> None:
    now = [T0]
    buf = io.BytesIO()
    log = AccessLog("json", buf, clock=lambda: now[0])
    entry(log)
    now[0] = T0 + 0.7405  # same second, later millisecond
    entry(log)
    now[0] = T0 + 86_400.0  # next day
    entry(log)
    log.flush()
    times = [json.loads(line)["time"] for line in lines(buf)]
    assert times == [
        "2023-11-14T22:13:20.250Z",
        "2023-11-14T22:13:20.990Z",
        "2023-11-15T22:13:20.250Z",
    ]


def refuse(log: AccessLog, rule: str, n: int, outcome: str = "over_capacity") -> None:
    for _ in range(n):
        log.log("10.0.0.7", "GET", "/event/1", rule, None, outcome, 503, 0.0, None)


def test_sampled_refusals_keep_n_lines_per_second_per_rule_and_summarise_the_rest() -> None:
    now = [T0]
    buf = io.BytesIO()
    log = AccessLog("json", buf, clock=lambda: now[0], refusal_lines_per_second=3)
    refuse(log, "event", 10)
    refuse(log, "coupon", 2, "rate_limited")
    for _ in range(5):
        entry(log)  # admitted requests are never sampled
    log.flush()
    docs = [json.loads(line) for line in lines(buf)]
    assert [d["rule"] for d in docs if d["outcome"] == "over_capacity"] == ["event"] * 3
    assert [d["rule"] for d in docs if d["outcome"] == "rate_limited"] == ["coupon"] * 2
    assert sum(d["outcome"] == "admitted" for d in docs) == 5
    assert not any(d["outcome"] == "suppressed" for d in docs)  # the second is not over yet

    now[0] += 1.0  # the next second: a summary of what was left out, then 3 lines again
    refuse(log, "event", 4)
    log.flush()
    docs = [json.loads(line) for line in lines(buf)][10:]
    summary = [d for d in docs if d["outcome"] == "suppressed"]
    assert summary == [
        {"time": "2023-11-14T22:13:21.250Z", "rule": "event", "outcome": "suppressed", "count": 7}
    ]
    assert sum(d["outcome"] == "over_capacity" for d in docs) == 3

    now[0] += 1.0  # no more refusals: the flush alone reports the last second
    log.flush()
    assert json.loads(lines(buf)[-1])["count"] == 1


def test_sampled_summary_in_text_format() -> None:
    now = [T0]
    buf = io.BytesIO()
    log = AccessLog("text", buf, clock=lambda: now[0], refusal_lines_per_second=1)
    refuse(log, "event", 3)
    now[0] += 1.0
    log.flush()
    assert lines(buf)[-1] == "time=2023-11-14T22:13:21.250Z rule=event outcome=suppressed count=2"


def test_reopen_writes_buffered_lines_to_the_old_file_then_opens_the_path(
    tmp_path: Path,
) -> None:
    target = tmp_path / "access.log"
    log = AccessLog.from_config(Cfg("text", target))
    entry(log, path="/before")
    target.rename(tmp_path / "access.log.1")
    log.reopen()
    entry(log, path="/after")
    log.close()
    assert "path=/before " in (tmp_path / "access.log.1").read_text()
    assert "path=/after " in target.read_text()
    assert "/before" not in target.read_text()


def test_sampling_settings_are_validated_with_file_line_and_key(tmp_path: Path) -> None:
    from guard.config import ConfigError, load_config

    path = tmp_path / "guard.yaml"
    path.write_text(
        "backends:\n  - {name: b, url: 'http://127.0.0.1:1', max_active: 1}\n"
        "access_log: {refusals: some, refusal_lines_per_second: 0}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = {(p.line, p.key) for p in info.value.problems}
    assert keys == {(3, "access_log.refusals"), (3, "access_log.refusal_lines_per_second")}
