"""The admin endpoints (/metrics, /status, /healthz, /reload) exist on admin_listen only:
on the public port those paths are ordinary requests for the backend; /reload takes no
config from a request body."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.support.rawhttp import exchange
from tests.support.servers import Guard, StartGuard, StartWas, Was, backends_yaml

RULES = "rules:\n  - {name: event, path: /event/**, max_active: 7}\n"


async def admin_guard(start_was: StartWas, start_guard: StartGuard) -> tuple[Guard, Was]:
    was = await start_was()
    return await start_guard(backends_yaml(was) + RULES), was


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/metrics"),
        ("GET", "/status"),
        ("GET", "/healthz"),
        ("POST", "/reload"),
        ("GET", "/status?format=json"),
        ("GET", "//metrics"),
        ("GET", "/%73tatus"),
    ],
)
async def test_admin_paths_on_the_public_port_go_to_the_backend(
    start_was: StartWas, start_guard: StartGuard, method: str, path: str
) -> None:
    guard, was = await admin_guard(start_was, start_guard)
    reloads = dict(guard.runtime.reload_counts)
    raw = f"{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n".encode()
    res = await exchange(guard.port, raw)
    assert res.status == 200
    doc = json.loads(res.body)
    assert doc["name"] == "was-1"  # the WAS echo answered, not guard's admin app
    assert "guard_" not in res.body.decode() and "site" not in doc
    assert (await was.stats())["served"] == 1
    assert guard.runtime.reload_counts == reloads
    await guard.wait_idle()


async def test_post_reload_on_the_public_port_never_reloads(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, _was = await admin_guard(start_was, start_guard)
    before = (await guard.status())["config"]["sha256"]
    # A new, valid config on disk: only a real reload would pick it up.
    guard.config_path.write_text(
        guard.config_path.read_text().replace("max_active: 7", "max_active: 8")
    )
    body = b"rules: []\n"
    for raw in (
        b"POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body),
        b"POST http://127.0.0.1:%d/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
        % guard.admin_port,
    ):
        assert (await exchange(guard.port, raw)).status == 200
    status = await guard.status()
    assert status["reloads"] == {"success": 0, "failure": 0}
    assert status["config"]["sha256"] == before
    assert {r["name"]: r["max_active"] for r in status["rules"]}["event"] == 7
    metrics = await guard.metrics()
    assert 'guard_config_reloads_total{result="success"} 0.0' in metrics


async def test_host_header_naming_the_admin_port_is_still_proxied(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, was = await admin_guard(start_was, start_guard)
    admin_port = guard.admin_port
    raw = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % admin_port
    res = await exchange(guard.port, raw)
    assert res.status == 200 and json.loads(res.body)["name"] == "was-1"
    assert (await was.stats())["served"] == 1


async def test_reload_with_a_body_is_refused_and_config_unchanged(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard, _was = await admin_guard(start_was, start_guard)
    before = await guard.status()
    guard.config_path.write_text(
        guard.config_path.read_text().replace("max_active: 7", "max_active: 9")
    )
    new_config = guard.config_path.read_text().encode()
    async with aiohttp.ClientSession() as s:
        for kwargs in (
            {"data": new_config},
            {"data": b"rules: []\n", "headers": {"Content-Type": "application/yaml"}},
            {"json": {"rules": []}},
            {"data": _chunks(new_config)},  # chunked, no Content-Length
        ):
            async with s.post(f"{guard.admin_url}/reload", **kwargs) as r:  # type: ignore[arg-type]
                assert r.status == 400, kwargs
                assert (await r.json())["error"] == "body_not_accepted"
        after = await guard.status()
        assert after["config"] == before["config"]
        assert after["reloads"] == {"success": 0, "failure": 0}
        assert {r["name"]: r["max_active"] for r in after["rules"]}["event"] == 7
        # Control: the same call without a body reloads the file on disk.
        async with s.post(f"{guard.admin_url}/reload") as r:
            assert r.status == 200
    final = await guard.status()
    assert {r["name"]: r["max_active"] for r in final["rules"]}["event"] == 9
    assert final["reloads"]["success"] == 1


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    yield data


async def test_config_and_logs_are_not_served_as_static_assets(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """The waiting page's folder is served under /__guard/static/. When it is also the
    config's folder (as here), the config file (backends, trusted proxies) and the access
    log (client addresses) must not become public."""
    guard, was = await admin_guard(start_was, start_guard)
    for name in ("guard.yaml", "access.log"):
        raw = f"GET /__guard/static/{name} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        res = await exchange(guard.port, raw)
        assert b"backends" not in res.body and b'"client"' not in res.body, name
        assert res.status == 404, (name, res.status)
    assert (await was.stats())["served"] == 0
