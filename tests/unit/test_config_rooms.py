"""The rooms: section of the config: keys, cross-checks with file:line:key, key files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.config import ConfigError, load_config, summarize
from guard.config.rooms import read_key_file

BASE = """\
waiting_page: waiting.html
backends: [{name: a, url: 'http://127.0.0.1:9', max_active: 4}]
rules:
  - {name: event, path: /event/**, max_active: 2, room: sale}
  - {name: cart, path: /cart/**, room: sale}
"""
ROOM = "rooms:\n  - {name: sale, admit_rate: 20/s%s}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "waiting.html").write_text("wait")
    return tmp_path


def problems(folder: Path, text: str) -> list[tuple[int, str, str]]:
    path = folder / "guard.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [(p.line, p.key, p.message) for p in info.value.problems]


def test_a_room_with_defaults_and_a_key_file(folder: Path) -> None:
    (folder / "keys").write_text(
        "# rotation: the first line signs\n2:" + "cd" * 32 + "\n1:" + "A" * 44 + "\n"
    )
    path = folder / "guard.yaml"
    extra = ", key_file: keys, schedule: {start: '2026-12-01T10:00:00+09:00',"
    extra += " end: 2026-12-01T12:00:00+09:00}"
    path.write_text(BASE + ROOM % extra)
    loaded = load_config(path)
    room = loaded.config.rooms[0]
    assert (room.admit_rate.per_second, room.api_status, room.place_hold) == (20.0, 429, 120.0)
    assert room.schedule.start == 1796086800.0 and room.schedule.end == room.schedule.start + 7200
    assert room.queue_page.name == "queue.html" and room.queue_page.is_file()
    assert list(read_key_file(folder / "keys")) == [2, 1]
    text = summarize(loaded)
    assert re.search(r"sale +20/s +event,cart", text)
    assert "no key_file" not in text and "warning: room sale: no state_file" in text


def test_guard_check_warns_without_a_key_file(folder: Path) -> None:
    path = folder / "guard.yaml"
    path.write_text(BASE + ROOM % "")
    text = summarize(load_config(path))
    assert (
        "warning: room sale: no key_file" in text and "sends everyone in line to the back" in text
    )


def test_cross_checks_name_file_line_and_key(folder: Path) -> None:
    text = BASE.replace("room: sale}", "room: sael}", 1) + ROOM % "" + "workers: 2\n"
    found = problems(folder, text)
    assert (4, "rules[0].room", 'unknown room "sael" (rooms: sale)') in found
    assert any(key == "workers" and "one process until cluster mode" in m for _, key, m in found)


@pytest.mark.parametrize(
    ("extra", "key", "says"),
    [
        (", place_hold: 10s, refresh_max: 5s", "rooms[0].place_hold", "3 x refresh_max"),
        (", brake_from: 0.9, brake_stop: 0.8", "rooms[0].brake_from", "below brake_stop"),
        (", pass_idle: 1h, pass_max: 30m", "rooms[0].pass_idle", "must not exceed pass_max"),
        (", api_status: 200", "rooms[0].api_status", "expected 429 or 503"),
        (", schedule: {start: '2026-12-01T10:00:00'}", "rooms[0].schedule.start", "with an offset"),
        (", key_file: nothing", "rooms[0].key_file", "cannot read"),
        (", admit_rate: 0/s", "rooms[0].admit_rate", 'expected "<n>/s"'),
    ],
)
def test_room_key_errors(folder: Path, extra: str, key: str, says: str) -> None:
    text = BASE + ROOM % extra
    if "admit_rate: 0/s" in extra:
        text = BASE + "rooms:\n  - {name: sale, admit_rate: 0/s}\n"
    found = problems(folder, text)
    assert any(k == key and says in m for _, k, m in found), found


def test_bad_key_file_lines(folder: Path) -> None:
    (folder / "keys").write_text("1:" + "ab" * 8 + "\n")  # 8 bytes: too short
    found = problems(folder, BASE + ROOM % ", key_file: keys")
    assert any(k == "rooms[0].key_file" and "line 1" in m for _, k, m in found), found
