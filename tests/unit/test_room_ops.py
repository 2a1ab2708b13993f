"""Issue 11, operations side, on fake clocks: the outcomes of the queue, dry runs of plain
rules, return-time places held until their time, and `guard check --at`."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.core import OUTCOMES, FakeClock, Ticket
from guard.core.room_control import ADMITTED, QUEUED, RoomController
from guard.core.room_params import RoomParams
from guard.core.room_schedule import ALWAYS
from guard.core.room_store import MemoryRoomStore
from guard.core.room_token import KeyRing, Place, RoomTokens
from tests.unit.test_core_fakes import backend, build, config, rule

WALL0 = 1_800_000_000.0


def test_every_queue_answer_is_an_outcome_of_its_own() -> None:
    for word in ("queued", "queue_poll", "pass_busy", "would_queue", "would_refuse"):
        assert word in OUTCOMES
    assert len(set(OUTCOMES)) == len(OUTCOMES)


def test_a_dry_run_rule_forwards_what_it_would_refuse_and_says_so() -> None:
    admission, _, _ = build(
        config(backend("a", 2), rules=(rule("sale", "/sale/**", max_active=1, dry_run=True),))
    )
    sale = admission.match("GET", "/sale/x")
    first = admission.admit(sale, "10.0.0.1")
    second = admission.admit(sale, "10.0.0.1")
    third = admission.admit(sale, "10.0.0.1")  # over the backend's ceiling too
    assert isinstance(first, Ticket) and first.outcome == "admitted"
    assert isinstance(second, Ticket) and second.outcome == "would_refuse"
    assert isinstance(third, Ticket) and third.outcome == "would_refuse"
    snap = admission.snapshot()
    assert snap.rules[0].active == 3 and snap.backends[0].active == 3  # what really runs
    for t in (first, second, third):
        t.release()
    assert admission.snapshot().site.active == 0


def test_a_dry_run_rate_counts_what_it_would_refuse() -> None:
    admission, _, _ = build(
        config(backend("a", 2), rules=(rule("sale", "/**", dry_run=True, rate="1/s"),))
    )
    sale = admission.match("GET", "/")
    got = [admission.admit(sale, "10.0.0.1") for _ in range(3)]
    assert [getattr(t, "outcome", None) for t in got] == [
        "admitted",
        "would_refuse",
        "would_refuse",
    ]


class Line:
    """One room on a hand-moved clock, with real tokens."""

    def __init__(self, admit_rate: float) -> None:
        self.clock = FakeClock(10.0)
        params = RoomParams(admit_rate=admit_rate, place_hold=60.0, refresh_max=10.0)
        self.room = RoomController(params, MemoryRoomStore(), ALWAYS, b"seed", self.clock())
        self.tokens = RoomTokens("sale", "default", 0, KeyRing({1: b"k" * 32}, 1), 30.0)

    @property
    def wall(self) -> float:
        return WALL0 + self.clock()

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.2)):
            self.clock.advance(0.2)
            self.room.tick(self.clock(), self.wall, 0.0)


def test_a_long_wait_offers_a_return_time_and_holds_the_place_until_then() -> None:
    line = Line(admit_rate=1.0)  # 1/s: the 1,200th place waits 20 minutes
    places = [line.room.take_place(line.wall) for _ in range(1200)]
    last = places[-1]
    assert last is not None
    view = line.room.view(last, line.wall)
    assert view.status == QUEUED and view.eta_seconds > 600
    held = line.room.return_offer(last, view, line.wall, return_after=600.0, late=120.0)
    assert held is not None and held.return_at == int(line.wall + view.eta_seconds + 120)
    token = line.tokens.sign_place(held)
    # Not polled for far longer than place_hold: still a valid place, still in line.
    line.run(view.eta_seconds + 60)
    back = line.tokens.read_place(token, line.wall, 60.0)
    assert isinstance(back, Place) and back.number == last.number
    assert line.room.view(back, line.wall).status == ADMITTED
    assert line.room.convert(back, line.wall) is not None
    # Past its return time (and its hold) it is gone like any abandoned place.
    line.run(200.0)
    assert line.tokens.read_place(token, line.wall, 60.0) == "expired"


def test_a_short_wait_offers_no_return_time() -> None:
    line = Line(admit_rate=10.0)
    place = [line.room.take_place(line.wall) for _ in range(100)][-1]
    assert place is not None
    view = line.room.view(place, line.wall)
    assert line.room.return_offer(place, view, line.wall, return_after=600.0, late=120.0) is None


def test_check_at_shows_which_rooms_and_rules_are_active(tmp_path: Path) -> None:
    from guard.cli import check_at

    (tmp_path / "waiting.html").write_text("wait")
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(
        "backends:\n  - {name: was, url: 'http://127.0.0.1:9', max_active: 10}\n"
        "rules:\n"
        "  - {name: event, path: /event/**, room: sale}\n"
        "  - {name: home, path: /**}\n"
        "rooms:\n"
        "  - name: sale\n"
        "    admit_rate: 20/s\n"
        "    schedule: {prequeue: '2026-12-01T09:30:00+09:00', start: '2026-12-01T10:00:00+09:00',"
        " end: '2026-12-01T12:00:00+09:00'}\n"
    )
    lines = {}
    for hour in ("09:00", "09:45", "11:00", "13:00"):
        at = f"2026-12-01T{hour}:00+09:00"
        code, text = check_at(cfg, at)
        assert code == 0, text
        lines[at[11:16]] = text
    assert "room sale: not_started" in lines["09:00"]
    assert "room sale: prequeue" in lines["09:45"]
    assert "room sale: queueing" in lines["11:00"]
    assert "room sale: ended" in lines["13:00"]
    assert "rule event: queue sale" in lines["11:00"]
    assert "rule event: plain" in lines["13:00"]
    assert "rule home: plain" in lines["11:00"]
    code, text = check_at(cfg, "tomorrow")
    assert code == 2 and "ISO 8601" in text
    code, text = check_at(cfg, "2026-12-01T10:00:00")
    assert code == 2 and "offset" in text


@pytest.mark.parametrize("key", ["dry_run: yes-please", "dry_run: true, bypass: true"])
def test_rule_dry_run_is_validated(tmp_path: Path, key: str) -> None:
    from guard.config import ConfigError, load_config

    (tmp_path / "waiting.html").write_text("wait")
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(
        "backends:\n  - {name: was, url: 'http://127.0.0.1:9', max_active: 10}\n"
        f"rules:\n  - {{name: a, path: /a/**, max_active: 2, {key}}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    found = [(p.line, p.key) for p in err.value.problems]
    assert (4, "rules[0].dry_run") in found, found


def test_the_workers_status_merge_reads_past_the_rooms_key() -> None:
    from guard.admin import status_doc
    from guard.workers import merge_status
    from tests.unit.test_admin import FakeAdmission, FakeLoaded

    loaded = FakeLoaded(Path("/etc/guard.yaml"), "ab" * 32, 0.5)
    room = {"name": "sale", "state": "queueing", "waiting": 3}
    docs = [status_doc(FakeAdmission(n).snapshot(), loaded, {"success": 1}, [room]) for n in (1, 2)]
    assert docs[0]["rooms"] == [room]
    merged = merge_status(docs)
    assert merged["site"]["active"] == 3 and merged["workers"] == 2


@pytest.mark.parametrize("zone", ["Asia/Seoul", "Europe/Berlin", "America/St_Johns", "UTC"])
def test_queue_json_times_are_local_iso_8601_across_offset_changes(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import time
    from datetime import datetime

    from guard.core.room_params import PlaceView
    from guard.proxy.room_pages import Returns, view_json

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        switch = datetime.fromisoformat("2026-03-29T00:59:00+00:00").timestamp()  # EU DST
        for wall in (switch + k * 37.0 for k in range(-200, 200)):
            view = PlaceView(QUEUED, 7, 65.2, True, wall, 3.3)
            body, refresh = view_json("sale", "queueing", view, Returns(True, wall + 1))
            doc = json.loads(body)
            expected = datetime.fromtimestamp(int(wall)).astimezone().isoformat()
            assert doc["admit_at"] == expected
            assert datetime.fromisoformat(doc["return_at"]).timestamp() == int(wall) + 1
            assert (doc["position"], doc["eta_seconds"], refresh) == (7, 66, 4)
            assert doc["return_url"] == "/__guard/queue?room=sale&return=1"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_sampled_logs_keep_every_dry_run_line_and_sample_queue_answers() -> None:
    import io
    import json

    from guard.proxy.accesslog import AccessLog

    buf = io.BytesIO()
    log = AccessLog("json", buf, clock=lambda: WALL0, refusal_lines_per_second=2)
    for outcome in ("would_refuse", "would_queue", "queued", "queue_poll"):
        for _ in range(5):  # forwarded (dry runs) or answered by the room
            log.log("10.0.0.7", "GET", "/e", "event", "was-1", outcome, 200, 0.01, None)
    log.flush()
    got = [json.loads(line)["outcome"] for line in buf.getvalue().decode().splitlines()]
    assert got.count("would_refuse") == 5 and got.count("would_queue") == 5
    assert got.count("queued") + got.count("queue_poll") == 2  # a line of polls is sampled


def test_return_after_is_validated_with_file_line_and_key(tmp_path: Path) -> None:
    from guard.config import ConfigError, load_config

    (tmp_path / "waiting.html").write_text("wait")
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(
        "backends:\n  - {name: was, url: 'http://127.0.0.1:9', max_active: 10}\n"
        "rules:\n  - {name: a, path: /a/**, room: sale}\n"
        "rooms:\n  - {name: sale, admit_rate: 5/s, return_after: soon}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert [(p.line, p.key) for p in err.value.problems] == [(6, "rooms[0].return_after")]
