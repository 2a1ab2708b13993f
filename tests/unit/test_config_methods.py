"""Rule methods are checked against the RFC 9110 token grammar; "*" and "" are refused;
a method outside the registered set is a warning (with a suggestion), not an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guard.config import ConfigError, load_config
from tests.support.servers import write_config

BACKENDS = "backends:\n  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 10}\n"


def config_with(tmp_path: Path, methods: str) -> Path:
    return write_config(
        tmp_path,
        "waiting_page: waiting.html\n"
        + BACKENDS
        + f"rules:\n  - {{name: event, path: /event/**, methods: {methods}}}\n",
    )


@pytest.mark.parametrize("bad", ['["*"]', '[""]', '["GE T"]', '["GET/1"]', '["G\\u00c9T"]', "[]"])
def test_methods_outside_the_token_grammar_are_errors(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, bad))
    (problem,) = info.value.problems
    assert problem.line == 5 and problem.key.startswith("rules[0].methods")


def test_star_error_says_to_leave_methods_out(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, "[GET, '*']"))
    (problem,) = info.value.problems
    assert problem.key == "rules[0].methods[1]"
    assert "leave out methods" in problem.message


@pytest.mark.parametrize(
    "methods",
    ["[GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH]", "[PROPFIND, MKCOL, LOCK]"],
)
def test_registered_methods_pass_without_warnings(tmp_path: Path, methods: str) -> None:
    assert load_config(config_with(tmp_path, methods)).warnings == ()


def test_unknown_method_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    loaded = load_config(config_with(tmp_path, "[GETT, POST, BREW]"))
    assert loaded.config.rules[0].methods == ("GETT", "POST", "BREW")  # still loads
    found = [(w.line, w.key, w.message) for w in loaded.warnings]
    assert found[0][:2] == (5, "rules[0].methods[0]")
    assert 'did you mean "GET"' in found[0][2]
    assert found[1][:2] == (5, "rules[0].methods[2]") and "did you mean" not in found[1][2]


def test_guard_check_prints_warnings_and_succeeds(tmp_path: Path) -> None:
    path = config_with(tmp_path, "[GETT]")
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"warning: {path}:5: rules[0].methods[0]:" in done.stderr
    assert 'did you mean "GET"' in done.stderr
