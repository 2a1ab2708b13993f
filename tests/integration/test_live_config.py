"""The `live:` config section: defaults, forms, and errors with file:line:key."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.config import ConfigError, parse_config
from guard.config.live import Live

BASE = "backends:\n  - {name: a, url: 'http://127.0.0.1:9', max_active: 1}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + text, Path("/nonexistent/guard.yaml"))
    return [f"{p.line}:{p.key}: {p.message}" for p in err.value.problems]


def test_defaults_and_forms() -> None:
    live = Live()
    assert (live.enabled, live.tick, live.age_bands, live.history) == (True, 1.0, (3.0, 8.0), 300)
    assert (live.max_viewers, live.show_paths, live.frames_kept) == (16, True, 300)
    doc = {"tick": "200ms", "age_bands": ["300ms", 0.8], "history": "1m", "max_viewers": 2}
    live = Live.model_validate(doc)
    assert (live.tick, live.age_bands, live.frames_kept, live.max_viewers) == (
        0.2,
        (0.3, 0.8),
        300,
        2,
    )


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("live:\n  tick: 10ms\n", "4:live.tick", "at least 50ms"),
        ("live:\n  age_bands: [8s, 3s]\n", "4:live.age_bands", "two increasing durations"),
        ("live:\n  age_bands: [3s]\n", "4:live.age_bands", ""),
        ("live:\n  history: 2h\n", "4:live.history", "at most 1h"),
        ("live:\n  max_viewers: 0\n", "4:live.max_viewers", ""),
        ("live:\n  show_paths: maybe\n", "4:live.show_paths", ""),
        ("live:\n  colours: red\n", "4:live.colours", ""),
    ],
)
def test_errors_name_the_line_and_key(text: str, where: str, says: str) -> None:
    found = problems(text)
    assert any(p.startswith(where) and says in p for p in found), found
