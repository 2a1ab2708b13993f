"""guard.config: YAML -> frozen models, and every problem reported as file:line: key: message."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
import time
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from guard.config import (
    Backend,
    Config,
    ConfigError,
    HostPort,
    LoadedConfig,
    Problem,
    Rate,
    Rule,
    load_config,
    parse_config,
    problems_as_json,
    summarize,
)
from guard.config.sections import SHIPPED_STATIC
from guard.config.types import (
    BackendUrl,
    Methods,
    NetworkList,
    PathPattern,
    parse_duration,
    parse_positive_duration,
    parse_size,
)

REPO = Path(__file__).resolve().parents[2]

BACKENDS = """\
backends:
  - {name: was-1, url: http://127.0.0.1:8081, max_active: 10}
"""

Found = list[tuple[int, str, str]]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config folder next to a static folder with a waiting page, like the repo layout."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "waiting.html").write_text("<p>please wait</p>")
    (tmp_path / "config").mkdir()
    return tmp_path / "config" / "guard.yaml"


def load(path: Path, *parts: str) -> Config:
    path.write_text("".join(dedent(part) for part in parts))
    return load_config(path).config


def problems(path: Path, *parts: str) -> Found:
    path.write_text("".join(dedent(part) for part in parts))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [(p.line, p.key, p.message) for p in info.value.problems]


# --- value parsers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 3 ", 3.0),
        ("0", 0.0),
        (5, 5.0),
        (0.25, 0.25),
    ],
)
def test_duration_forms(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", "1d", "2 seconds", True, None, float("inf"), [1]])
def test_duration_rejects(bad: Any) -> None:
    with pytest.raises(PydanticCustomError, match='expected a duration like "500ms", "2s" or "1m"'):
        parse_duration(bad)


def test_positive_duration_rejects_zero() -> None:
    with pytest.raises(PydanticCustomError, match='expected a duration greater than 0, got "0s"'):
        parse_positive_duration("0s")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8k", 8192),
        ("10m", 10 << 20),
        ("1g", 1 << 30),
        ("10MB", 10 << 20),
        ("512", 512),
        (4096, 4096),
    ],
)
def test_size_forms(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["ten", "1t", "1.5k", 1.5, True, None])
def test_size_rejects(bad: Any) -> None:
    with pytest.raises(PydanticCustomError, match='expected a size like "8k", "10m", "1g"'):
        parse_size(bad)


def test_size_rejects_zero() -> None:
    with pytest.raises(PydanticCustomError, match="expected a size greater than 0, got 0"):
        parse_size(0)


@pytest.mark.parametrize(
    ("text", "per_second", "shown"),
    [
        ("200/s", 200.0, "200/s"),
        ("30/m", 0.5, "30/m"),
        ("1.5/s", 1.5, "1.5/s"),
        (" 10 / s ", 10.0, "10/s"),
    ],
)
def test_rate_forms(text: str, per_second: float, shown: str) -> None:
    rate = Rate.model_validate(text)
    assert (rate.per_second, rate.text, str(rate)) == (per_second, shown, shown)


@pytest.mark.parametrize("bad", ["fast", "200", "5/h", 200, None])
def test_rate_rejects(bad: Any) -> None:
    with pytest.raises(ValidationError, match=r'expected "<n>/s" or "<n>/m", got'):
        Rate.model_validate(bad)


def test_rate_rejects_zero() -> None:
    with pytest.raises(ValidationError, match='with n > 0, got "0/s"'):
        Rate.model_validate("0/s")


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("0.0.0.0:8000", "0.0.0.0", 8000, "0.0.0.0:8000"),
        ("[::1]:8000", "::1", 8000, "[::1]:8000"),
        ("localhost:9100", "localhost", 9100, "localhost:9100"),
        ("127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"),
    ],
)
def test_host_port_forms(text: str, host: str, port: int, shown: str) -> None:
    hp = HostPort.model_validate(text)
    assert (hp.host, hp.port, str(hp)) == (host, port, shown)


@pytest.mark.parametrize("bad", [8000, ":8000", "1.2.3.4", "host:70000", "[zz]:80", "::1:80"])
def test_host_port_rejects(bad: Any) -> None:
    with pytest.raises(ValidationError, match=re.escape('expected "host:port" like "0.0.0.0')):
        HostPort.model_validate(bad)


@pytest.mark.parametrize(
    ("url", "normal", "host", "port"),
    [
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081", "127.0.0.1", 8081),
        ("http://WAS1.internal:8080/", "http://was1.internal:8080", "was1.internal", 8080),
        ("http://[::1]:8081", "http://[::1]:8081", "::1", 8081),
        ("http://was2", "http://was2:80", "was2", 80),
    ],
)
def test_backend_url_forms(url: str, normal: str, host: str, port: int) -> None:
    backend = Backend(name="b", url=url, max_active=1)
    assert (backend.url, backend.host, backend.port) == (normal, host, port)


@pytest.mark.parametrize(
    "bad",
    [
        "http://h:1/app",
        "http://h:1?x=1",
        "http://h:1/#",
        "ftp://h:1",
        "http://:80",
        "127.0.0.1:8081",
        "http://h:99999",
        "http://u:p@h:1",
        8081,
    ],
)
def test_backend_url_rejects(bad: Any) -> None:
    with pytest.raises(ValidationError, match='expected "http://host:port" with no path, got'):
        TypeAdapter(BackendUrl).validate_python(bad)


def test_backend_url_https_is_not_supported_yet() -> None:
    with pytest.raises(ValidationError, match="https backends are not supported yet"):
        TypeAdapter(BackendUrl).validate_python("https://h:443")


def test_methods_upper_cased_and_deduplicated() -> None:
    adapter = TypeAdapter(Methods)
    assert adapter.validate_python(["get", "POST", "Get"]) == ("GET", "POST")
    assert adapter.validate_python("post") == ("POST",)
    with pytest.raises(ValidationError, match='expected an HTTP method like "GET"'):
        adapter.validate_python(["GET", "PO ST"])
    with pytest.raises(ValidationError):
        adapter.validate_python([])


@pytest.mark.parametrize(
    "good", ["/", "/event/**", "/*.jsp", "/a/*/b", "/a/", "/%EC%9D%B4", "/x/*-*.do", "/**"]
)
def test_path_pattern_accepts(good: str) -> None:
    assert TypeAdapter(PathPattern).validate_python(good) == good


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("event/**", 'starting with "/"'),
        ("/a**", "'**' must be a whole segment"),
        ("/a/***", "'**' must be a whole segment"),
        ("/a//b", "canonical path"),
        ("/a/../b", "canonical path"),
        ("/a?x=1", "URL path characters"),
        ("/a;jsessionid=1", "URL path characters"),
        ("/이벤트", "percent-encoded"),
        ("/%2F", '"%XX" only'),
        ("/%41", '"%XX" only'),
        ("/%ec", '"%XX" only'),
    ],
)
def test_path_pattern_rejects(bad: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)):
        TypeAdapter(PathPattern).validate_python(bad)


def test_networks() -> None:
    adapter = TypeAdapter(NetworkList)
    assert adapter.validate_python("10.0.0.0/8") == (ipaddress.ip_network("10.0.0.0/8"),)
    assert adapter.validate_python(["192.0.2.7", "::1"]) == (
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValidationError, match="expected an address or network like"):
        adapter.validate_python(["10.0.0.5/8"])  # host bits set: almost always a typo


# --- defaults and derived values ---------------------------------------------------------


def test_defaults(site: Path) -> None:
    cfg = load(site, BACKENDS)
    assert str(cfg.listen) == "0.0.0.0:8000" and str(cfg.admin_listen) == "127.0.0.1:9100"
    assert (cfg.workers, cfg.max_active, cfg.retry_after, cfg.retry_after_s) == (1, None, 5.0, 5)
    assert cfg.waiting_page == SHIPPED_STATIC / "waiting.html"
    assert cfg.static_dir == SHIPPED_STATIC
    assert (cfg.trusted_proxies, cfg.block_ips, cfg.rules) == ((), (), ())
    assert (cfg.timeouts.connect, cfg.timeouts.read, cfg.timeouts.shutdown) == (2.0, 30.0, 30.0)
    assert cfg.limits.model_dump() == {
        "header_timeout": 10.0,
        "body_timeout": 30.0,
        "keepalive_timeout": 60.0,
        "send_timeout": 30.0,
        "max_request_line": 8192,
        "max_header_size": 16384,
        "max_headers": 100,
        "max_trailer_size": 8192,
        "max_connections": 10000,
        "max_tracked_clients": 100000,
        "min_body_rate": 240,
        "body_buffer_size": 64 << 10,
        "body_temp_dir": None,
        "body_rate_window": 10.0,
    }
    assert cfg.client_max_size == 100 << 20
    assert "X-Real-IP" in cfg.strip_headers and "X-Original-URL" in cfg.strip_headers
    assert (cfg.access_log.format, cfg.access_log.path) == ("json", None)
    backend = cfg.backends[0]
    assert (backend.drain, backend.cooldown, backend.health, backend.max_idle) == (
        False,
        5.0,
        None,
        64,
    )


def test_rule_defaults_and_effective_burst() -> None:
    rule = Rule(name="r", path="/x")
    assert (rule.methods, rule.max_active, rule.rate, rule.burst, rule.per_client) == (
        None,
        None,
        None,
        None,
        False,
    )
    assert (rule.action, rule.bypass, rule.block) == ("wait", False, False)
    assert Rule.model_validate({"name": "r", "path": "/", "rate": "200/s"}).effective_burst == 200
    assert Rule.model_validate({"name": "r", "path": "/", "rate": "30/m"}).effective_burst == 1
    assert Rule.model_validate({"name": "r", "path": "/", "rate": "2.5/s"}).effective_burst == 3
    rule = Rule.model_validate({"name": "r", "path": "/", "rate": "200/s", "burst": 7})
    assert rule.effective_burst == 7


@pytest.mark.parametrize(("text", "whole"), [("1.2s", 2), ("0", 1), ("500ms", 1), ("1m", 60)])
def test_retry_after_rounds_up_to_whole_seconds(site: Path, text: str, whole: int) -> None:
    assert load(site, f"retry_after: {text}\n", BACKENDS).retry_after_s == whole


def test_full_document(site: Path) -> None:
    cfg = load(
        site,
        """\
        listen: "[::]:8080"
        max_active: 300
        trusted_proxies: [10.0.0.0/8]
        block_ips: 203.0.113.0/24
        timeouts: {connect: 500ms, read: 1m}
        limits: {max_request_line: 4k, header_timeout: 5s}
        client_max_size: 1g
        access_log: {format: off}
        backends:
          - name: was-1
            url: http://127.0.0.1:8081
            max_active: 100
            drain: true
            health: {path: /health, interval: 5s}
        rules:
          - {name: event, path: /event/**, methods: [get, post], rate: 200/s, per_client: true}
        """,
    )
    assert (cfg.listen.host, cfg.max_active, cfg.client_max_size) == ("::", 300, 1 << 30)
    assert cfg.block_ips == (ipaddress.ip_network("203.0.113.0/24"),)
    assert (cfg.timeouts.connect, cfg.timeouts.read, cfg.limits.max_request_line) == (
        0.5,
        60.0,
        4096,
    )
    assert cfg.access_log.format == "off"  # YAML reads bare `off` as false
    assert cfg.backends[0].health is not None and cfg.backends[0].health.interval == 5.0
    assert cfg.rules[0].methods == ("GET", "POST") and cfg.rules[0].per_client


def test_models_are_frozen(site: Path) -> None:
    cfg = load(site, BACKENDS)
    with pytest.raises(ValidationError):
        cfg.workers = 2


def test_models_built_in_code_do_not_touch_the_filesystem() -> None:
    cfg = Config.model_validate({"backends": [{"name": "a", "url": "http://a:1", "max_active": 1}]})
    assert cfg.waiting_page == SHIPPED_STATIC / "waiting.html"
    assert cfg.static_dir == SHIPPED_STATIC


# --- YAML features -------------------------------------------------------------------


def test_merge_keys_explicit_keys_win(site: Path) -> None:
    cfg = load(
        site,
        """\
        backends:
          - &was {name: was-1, url: http://127.0.0.1:8081, max_active: 10}
          - <<: *was
            name: was-2
            url: http://127.0.0.1:8082
        """,
    )
    assert [(b.name, b.url, b.max_active) for b in cfg.backends] == [
        ("was-1", "http://127.0.0.1:8081", 10),
        ("was-2", "http://127.0.0.1:8082", 10),
    ]


# --- paths ---------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(
    site: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "wait.html").write_text("wait")
    (tmp_path / "assets").mkdir()
    (tmp_path / "logs").mkdir()
    monkeypatch.chdir("/")
    cfg = load(
        site,
        """\
        waiting_page: ../pages/wait.html
        static_dir: ../assets
        access_log: {format: text, path: ../logs/access.log}
        """,
        BACKENDS,
    )
    assert cfg.waiting_page == tmp_path / "pages" / "wait.html"
    assert cfg.static_dir == tmp_path / "assets"
    assert cfg.access_log.path == tmp_path / "logs" / "access.log"


def test_absolute_paths_are_kept(site: Path, tmp_path: Path) -> None:
    page = tmp_path / "static" / "waiting.html"
    assert load(site, f"waiting_page: {page}\n", BACKENDS).waiting_page == page


def test_missing_waiting_page(site: Path, tmp_path: Path) -> None:
    page = tmp_path / "nope.html"
    assert problems(site, "waiting_page: ../nope.html\n", BACKENDS) == [
        (1, "waiting_page", f"no such file: {page}")
    ]


def test_default_pages_are_the_shipped_ones(site: Path, tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "static")  # nothing beside the config: the package has them
    cfg = load(site, BACKENDS)
    assert cfg.waiting_page == SHIPPED_STATIC / "waiting.html"
    assert cfg.maintenance_page == SHIPPED_STATIC / "maintenance.html"
    assert cfg.static_dir == SHIPPED_STATIC and (SHIPPED_STATIC / "waiting.css").is_file()


def test_waiting_page_must_be_a_file(site: Path, tmp_path: Path) -> None:
    assert problems(site, BACKENDS, "waiting_page: ../static\n") == [
        (3, "waiting_page", f"no such file: {tmp_path / 'static'}")
    ]


def test_missing_static_dir_and_log_folder(site: Path, tmp_path: Path) -> None:
    found = problems(site, BACKENDS, "static_dir: ../assets\naccess_log: {path: /no/such/a.log}\n")
    assert found == [
        (3, "static_dir", f"no such folder: {tmp_path / 'assets'}"),
        (4, "access_log.path", "folder does not exist: /no/such"),
    ]


# --- errors: exact messages and lines --------------------------------------------------


def test_the_issue_example_rate_message(site: Path) -> None:
    found = problems(
        site,
        BACKENDS,
        """\
        rules:
          - {name: static, path: /static/**, bypass: true}
          - name: event
            path: /event/**
            rate: fast
        """,
    )
    assert found == [(7, "rules[1].rate", 'expected "<n>/s" or "<n>/m", got "fast"')]
    assert str(Problem("config/guard.yaml", 14, "rules[1].rate", "m")) == (
        "config/guard.yaml:14: rules[1].rate: m"
    )


def test_duration_message(site: Path) -> None:
    assert problems(site, "timeouts:\n  connect: 1s\n  read: soon\n", BACKENDS) == [
        (3, "timeouts.read", 'expected a duration like "500ms", "2s" or "1m", got "soon"')
    ]


def test_every_problem_is_reported_at_once(site: Path) -> None:
    found = problems(
        site,
        """\
        listen: 8000
        workers: 0
        max_active: many
        retry_after: later
        access_log: {format: xml}
        limits: {max_headers: 1.5, max_header_size: 16q}
        backends:
          - {name: was 1, url: https://h:1, max_active: 0, drain: "yes"}
        rules:
          - {name: r, path: event, methods: [GET, "A B"], action: queue}
        """,
    )
    assert found == [
        (1, "listen", 'expected "host:port" like "0.0.0.0:8000" or "[::1]:8000", got 8000'),
        (2, "workers", "expected a number >= 1, got 0"),
        (3, "max_active", 'expected a whole number, got "many"'),
        (4, "retry_after", 'expected a duration like "500ms", "2s" or "1m", got "later"'),
        (5, "access_log.format", 'expected "json", "text" or "off", got "xml"'),
        (
            6,
            "limits.max_header_size",
            'expected a size like "8k", "10m", "1g" or a number of bytes, got "16q"',
        ),
        (6, "limits.max_headers", "expected a whole number, got 1.5"),
        (8, "backends[0].drain", 'expected true or false, got "yes"'),
        (8, "backends[0].max_active", "expected a number >= 1, got 0"),
        (
            8,
            "backends[0].name",
            "expected a name of letters, digits, '.', '_' or '-' (at most 64), got \"was 1\"",
        ),
        (
            8,
            "backends[0].url",
            'https backends are not supported yet; expected "http://host:port"'
            ' with no path, got "https://h:1"',
        ),
        (10, "rules[0].action", 'expected "wait" or "reject", got "queue"'),
        (10, "rules[0].methods[1]", 'expected an HTTP method like "GET" or "POST", got "A B"'),
        (10, "rules[0].path", 'expected a path pattern starting with "/", got "event"'),
    ]


def test_missing_required_keys_point_at_the_parent(site: Path) -> None:
    found = problems(
        site,
        """\
        workers: 1
        backends:
          - name: was-1
            url: http://127.0.0.1:8081
          - {name: was-2, max_active: 3}
        """,
    )
    assert found == [
        (3, "backends[0].max_active", "is required"),
        (5, "backends[1].url", "is required"),
    ]
    assert problems(site, "\n\nworkers: 2\n") == [(3, "backends", "is required")]


def test_empty_value_points_at_its_key(site: Path) -> None:
    found = problems(site, "backends:\n  - name: a\n    url: http://a:1\n    max_active:\n\n")
    assert found == [(4, "backends[0].max_active", "expected a whole number, got nothing")]


def test_empty_lists_and_wrong_shapes(site: Path) -> None:
    assert problems(site, "backends: []\n") == [
        (1, "backends", "expected at least 1 entry, got none")
    ]
    assert problems(site, "backends: was-1\n") == [(1, "backends", 'expected a list, got "was-1"')]
    assert problems(site, BACKENDS, "timeouts: 5s\n") == [
        (3, "timeouts", 'expected a mapping, got "5s"')
    ]


def test_unknown_keys_with_and_without_a_suggestion(site: Path) -> None:
    found = problems(
        site,
        """\
        listn: 0.0.0.0:8000
        colour: blue
        backends:
          - {name: was-1, url: http://127.0.0.1:8081, max_active: 10, drian: true}
        rules:
          - name: event
            path: /event/**
            ratee: 5/s
            health:
              path: /x
        """,
    )
    assert found == [
        (1, "listn", 'unknown key (did you mean "listen"?)'),
        (2, "colour", "unknown key"),
        (4, "backends[0].drian", 'unknown key (did you mean "drain"?)'),
        (8, "rules[0].ratee", 'unknown key (did you mean "rate"?)'),
        (9, "rules[0].health", "unknown key"),
    ]


def test_unknown_key_in_a_nested_model(site: Path) -> None:
    found = problems(
        site,
        """\
        backends:
          - name: was-1
            url: http://127.0.0.1:8081
            max_active: 10
            health: {path: /h, intervall: 5s}
        """,
    )
    assert found == [
        (5, "backends[0].health.interval", "is required"),
        (5, "backends[0].health.intervall", 'unknown key (did you mean "interval"?)'),
    ]


def test_duplicate_keys(site: Path) -> None:
    found = problems(
        site,
        """\
        listen: 0.0.0.0:8000
        workers: 1
        listen: 0.0.0.0:9000
        backends:
          - {name: was-1, url: http://127.0.0.1:8081, max_active: 10, max_active: 20}
        rules:
          - name: event
            path: /event/**
            rate: 5/s
            rate: 10/s
        """,
    )
    assert found == [
        (3, "listen", "duplicate key (first set on line 1)"),
        (5, "backends[0].max_active", "duplicate key (first set on line 5)"),
        (10, "rules[0].rate", "duplicate key (first set on line 9)"),
    ]


def test_duplicate_names(site: Path) -> None:
    found = problems(
        site,
        """\
        backends:
          - {name: was-1, url: http://127.0.0.1:8081, max_active: 10}
          - {name: was-1, url: http://127.0.0.1:8082, max_active: 10}
        rules:
          - {name: event, path: /event/**}
          - {name: shop, path: /shop/**}
          - {name: event, path: /event2/**}
        """,
    )
    assert found == [
        (3, "backends[1].name", 'duplicate name "was-1" (already used by backends[0])'),
        (7, "rules[2].name", 'duplicate name "event" (already used by rules[0])'),
    ]


def test_duplicate_names_reported_alongside_other_problems(site: Path) -> None:
    found = problems(
        site,
        BACKENDS,
        """\
        rules:
          - {name: event, path: /event/**}
          - {name: event, path: /event2/**, rate: fast}
        """,
    )
    assert found == [
        (5, "rules[1].name", 'duplicate name "event" (already used by rules[0])'),
        (5, "rules[1].rate", 'expected "<n>/s" or "<n>/m", got "fast"'),
    ]


def test_rule_named_default(site: Path) -> None:
    assert problems(site, BACKENDS, "rules:\n  - {name: default, path: /x}\n") == [
        (4, "rules[0].name", '"default" is reserved for the implicit last rule')
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("bypass: true, block: true", [("block", "not allowed with bypass: true")]),
        ("bypass: true, max_active: 3", [("max_active", "not allowed with bypass: true")]),
        ("bypass: true, rate: 5/s", [("rate", "not allowed with bypass: true")]),
        ("block: true, max_active: 3", [("max_active", "not allowed with block: true")]),
        ("block: true, rate: 5/s, burst: 2", [("rate", "not allowed with block: true")]),
        ("burst: 5", [("burst", "requires rate")]),
        (
            "per_client: true, burst: 2",
            [("burst", "requires rate"), ("per_client", "requires rate")],
        ),
    ],
)
def test_cross_field_conflicts(site: Path, settings: str, expected: list[tuple[str, str]]) -> None:
    found = problems(site, BACKENDS, f"rules:\n  - {{name: r, path: /x, {settings}}}\n")
    assert found == [(4, f"rules[0].{key}", message) for key, message in expected]


def test_conflict_lines_point_at_the_offending_key(site: Path) -> None:
    found = problems(
        site, BACKENDS, "rules:\n  - name: r\n    path: /x\n    bypass: true\n    max_active: 5\n"
    )
    assert found == [(7, "rules[0].max_active", "not allowed with bypass: true")]


def test_yaml_syntax_error(site: Path) -> None:
    found = problems(site, BACKENDS, "rules:\n  - {name: r, path: /x\nworkers: 2\n")
    assert len(found) == 1
    line, key, message = found[0]
    assert (line, key) == (5, "config")  # where the parser noticed
    assert message.startswith("invalid YAML: ")


def test_tab_indentation_is_a_syntax_error_with_its_line(site: Path) -> None:
    found = problems(site, "workers: 1\nbackends:\n\t- {name: a}\n")
    assert [(line, key) for line, key, _ in found] == [(3, "config")]


def test_document_must_be_a_mapping(site: Path) -> None:
    assert problems(site, "- listen\n") == [(1, "config", "expected a mapping of settings")]


def test_unknown_tags_are_reported(site: Path) -> None:
    found = problems(site, "listen: !env LISTEN\n", BACKENDS)
    assert found[0] == (
        1,
        "listen",
        "invalid YAML value: could not determine a constructor for the tag '!env'",
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:0: file: cannot read: No such file or directory"
    ]


def test_not_utf8(site: Path) -> None:
    site.write_bytes(b"workers: 1\nlisten: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(site)
    assert [(p.line, p.key, p.message) for p in info.value.problems] == [
        (2, "file", "not valid UTF-8")
    ]


def test_error_text_and_json(site: Path) -> None:
    site.write_text("workers: 0\n" + BACKENDS)
    with pytest.raises(ConfigError) as info:
        load_config(site)
    assert str(info.value) == f"{site}:1: workers: expected a number >= 1, got 0"
    assert problems_as_json(info.value) == [
        {"file": str(site), "line": 1, "key": "workers", "message": "expected a number >= 1, got 0"}
    ]


def test_parse_config_names_the_file_as_given(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        parse_config("workers: 0\n" + BACKENDS, Path("config/guard.yaml"))
    assert [str(p) for p in info.value.problems] == [
        "config/guard.yaml:1: workers: expected a number >= 1, got 0"
    ]
    cfg = parse_config(
        "waiting_page: ../static/waiting.html\n" + BACKENDS, Path("config/guard.yaml")
    )
    assert cfg.waiting_page == tmp_path / "static" / "waiting.html"  # absolute once resolved


# --- load_config, shipped files, summary ----------------------------------------------


def test_load_config_stamps(site: Path) -> None:
    site.write_text(BACKENDS)
    before = time.time()
    loaded = load_config(site)
    assert isinstance(loaded, LoadedConfig) and loaded.path == site
    assert loaded.sha256 == hashlib.sha256(site.read_bytes()).hexdigest()
    assert before <= loaded.loaded_at <= time.time()


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """The repo's config files in a copy of the layout, with a waiting page of our own."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "waiting.html").write_text("wait")
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path / "config"


def test_demo_yaml(shipped: Path) -> None:
    cfg = load_config(shipped / "demo.yaml").config
    assert (str(cfg.listen), str(cfg.admin_listen), cfg.max_active) == (
        "127.0.0.1:8000",
        "127.0.0.1:9100",
        30,
    )
    assert [(b.name, b.url, b.max_active) for b in cfg.backends] == [
        ("was-1", "http://127.0.0.1:8081", 20),
        ("was-2", "http://127.0.0.1:8082", 20),
    ]
    static, admin, event, checkout = cfg.rules
    assert (static.path, static.bypass, admin.path, admin.block) == (
        "/static/**",
        True,
        "/admin/**",
        True,
    )
    assert (event.path, event.max_active, event.rate) == (
        "/event/**",
        10,
        Rate(per_second=50.0, text="50/s"),
    )
    assert (checkout.path, checkout.methods, checkout.max_active, checkout.action) == (
        "/order/**",
        ("POST",),
        10,
        "reject",
    )
    assert cfg.waiting_page == SHIPPED_STATIC / "waiting.html"  # the page inside the package


def test_guard_yaml(shipped: Path) -> None:
    cfg = load_config(shipped / "guard.yaml").config
    assert [b.url for b in cfg.backends] == ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]
    assert len(cfg.rules) >= 3


def test_summarize(shipped: Path) -> None:
    text = summarize(load_config(shipped / "demo.yaml"))
    lines = text.splitlines()
    assert "listen 127.0.0.1:8000   admin 127.0.0.1:9100   workers 1" in lines
    assert any(line.split() == ["was-1", "http://127.0.0.1:8081", "20", "no"] for line in lines)
    assert any(
        line.split() == ["3", "event", "/event/**", "*", "10", "50/s", "(50)", "-", "wait"]
        for line in lines
    )
    assert any(line.split()[:4] == ["4", "checkout", "/order/**", "POST"] for line in lines)
    assert any(line.split()[1] == "default" for line in lines if line.startswith("  -"))
    names = [line.split()[1] for line in lines if line[:3].strip().isdigit()]
    assert names == ["static", "admin", "event", "checkout"]
    assert lines[-1].startswith("configuration OK")


def test_request_buffering_and_strip_headers(site: Path, tmp_path: Path) -> None:
    cfg = load(
        site,
        BACKENDS,
        "limits: {body_buffer_size: 1m, body_temp_dir: ., body_rate_window: 5s}\n"
        "strip_headers: X-Internal-User\n"
        "rules:\n  - {name: up, path: /up/**, request_buffering: false}\n",
    )
    assert (cfg.limits.body_buffer_size, cfg.limits.body_rate_window) == (1 << 20, 5.0)
    assert cfg.limits.body_temp_dir == site.parent
    assert cfg.strip_headers == ("X-Internal-User",)
    assert cfg.rules[0].request_buffering is False
    found = problems(
        site,
        BACKENDS,
        "limits: {body_temp_dir: ../nowhere}\nstrip_headers: ['X Bad']\n",
    )
    assert found == [
        (3, "limits.body_temp_dir", f"no such folder: {tmp_path / 'nowhere'}"),
        (4, "strip_headers[0]", 'expected a header name like "X-Real-IP", got "X Bad"'),
    ]
