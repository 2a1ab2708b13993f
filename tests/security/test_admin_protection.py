"""The admin port answers its operators, not browsers (issue 9 item 10, issue 12 item 3):
a foreign Host (DNS rebinding) is refused, a state-changing request from a foreign origin
is refused, and an optional bearer token guards every endpoint but /healthz. curl, which
sends no Origin, keeps working."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from guard.config import ConfigError, load_config, summarize
from tests.support.rawhttp import RawResponse, exchange
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml, write_config

TOKEN = "s3cret-T0ken_value"


async def ask(
    guard: Guard, method: str, path: str, host: str | None = None, *headers: str
) -> RawResponse:
    host = host if host is not None else f"127.0.0.1:{guard.admin_port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Content-Length: 0", *headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return await exchange(guard.admin_port, raw)


async def plain_guard(start_was: StartWas, start_guard: StartGuard, extra: str = "") -> Guard:
    was = await start_was()
    return await start_guard(backends_yaml(was) + extra)


async def token_guard(start_was: StartWas, start_guard: StartGuard, tmp_path: Path) -> Guard:
    token = tmp_path / "admin.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return await plain_guard(start_was, start_guard, f"admin_token_file: {token.name}\n")


@pytest.mark.parametrize("path", ["/status", "/metrics"])
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:1"]
)
async def test_a_foreign_host_is_refused(
    start_was: StartWas, start_guard: StartGuard, host: str, path: str
) -> None:
    guard = await plain_guard(start_was, start_guard)
    res = await ask(guard, "GET", path, host.format(port=guard.admin_port))
    assert res.status == 403
    assert b"backends" not in res.body and b"guard_" not in res.body


async def test_a_request_without_host_is_refused(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    res = await exchange(guard.admin_port, b"GET /status HTTP/1.0\r\n\r\n")
    assert res.status == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
async def test_loopback_names_with_the_admin_port_are_served(
    start_was: StartWas, start_guard: StartGuard, host: str
) -> None:
    guard = await plain_guard(start_was, start_guard)
    res = await ask(guard, "GET", "/status", host.format(port=guard.admin_port))
    assert res.status == 200 and b"backends" in res.body
    assert res.header("X-Content-Type-Options") == "nosniff"


async def test_configured_admin_hosts_are_served(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    extra = "admin_hosts: [guard.internal, 'ops.example:8443']\n"
    guard = await plain_guard(start_was, start_guard, extra)
    port = guard.admin_port
    assert (await ask(guard, "GET", "/status", f"guard.internal:{port}")).status == 200
    assert (await ask(guard, "GET", "/status", "ops.example:8443")).status == 200
    assert (await ask(guard, "GET", "/status", f"ops.example:{port}")).status == 403


@pytest.mark.parametrize(
    "headers",
    [
        ("Origin: http://evil.example", "Content-Type: text/plain"),
        ("Origin: null",),
        ("Origin: http://127.0.0.1:1",),
        ("Sec-Fetch-Site: cross-site",),
        ("Sec-Fetch-Site: same-site",),
    ],
)
async def test_a_cross_origin_reload_is_refused(
    start_was: StartWas, start_guard: StartGuard, headers: tuple[str, ...]
) -> None:
    guard = await plain_guard(start_was, start_guard)
    res = await ask(guard, "POST", "/reload", None, *headers)
    assert res.status == 403
    assert guard.runtime.reload_counts == {"success": 0, "failure": 0}


async def test_curl_and_same_origin_reloads_still_work(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    guard = await plain_guard(start_was, start_guard)
    origin = f"Origin: http://127.0.0.1:{guard.admin_port}"
    assert (await ask(guard, "POST", "/reload")).status == 200
    assert (
        await ask(guard, "POST", "/reload", None, origin, "Sec-Fetch-Site: same-origin")
    ).status == 200
    assert guard.runtime.reload_counts["success"] == 2


@pytest.mark.parametrize("path", ["/status", "/metrics"])
async def test_with_a_token_every_endpoint_but_healthz_needs_it(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path, path: str
) -> None:
    guard = await token_guard(start_was, start_guard, tmp_path)
    refused = await ask(guard, "GET", path)
    assert refused.status == 401 and "Bearer" in (refused.header("WWW-Authenticate") or "")
    wrong = await ask(guard, "GET", path, None, "Authorization: Bearer nope")
    assert wrong.status == 401
    right = await ask(guard, "GET", path, None, f"Authorization: Bearer {TOKEN}")
    assert right.status == 200
    assert (await ask(guard, "GET", "/healthz")).status == 200


async def test_with_a_token_reload_needs_it_too(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    guard = await token_guard(start_was, start_guard, tmp_path)
    assert (await ask(guard, "POST", "/reload")).status == 401
    assert guard.runtime.reload_counts["success"] == 0
    res = await ask(guard, "POST", "/reload", None, f"Authorization: Bearer {TOKEN}")
    assert res.status == 200 and guard.runtime.reload_counts["success"] == 1


async def test_a_token_in_the_query_sets_a_strict_cookie(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    guard = await token_guard(start_was, start_guard, tmp_path)
    assert (await ask(guard, "GET", "/status?token=nope")).status == 401
    res = await ask(guard, "GET", f"/status?token={TOKEN}")
    assert res.status in (302, 303) and res.header("Location") == "/status"  # out of history
    cookie = res.header("Set-Cookie") or ""
    assert cookie.startswith(f"guard_admin={TOKEN};")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    with_cookie = await ask(guard, "GET", "/status", None, f"Cookie: guard_admin={TOKEN}")
    assert with_cookie.status == 200 and b"backends" in with_cookie.body
    assert (await ask(guard, "GET", "/status", None, "Cookie: guard_admin=x")).status == 401


async def test_the_token_is_checked_after_the_host(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    guard = await token_guard(start_was, start_guard, tmp_path)
    auth = f"Authorization: Bearer {TOKEN}"
    assert (await ask(guard, "GET", "/status", "evil.example", auth)).status == 403


def config_with_token(tmp_path: Path, token_line: str) -> Path:
    return write_config(
        tmp_path,
        f"""
        waiting_page: waiting.html
        backends:
          - {{name: was-1, url: 'http://127.0.0.1:9', max_active: 1}}
        {token_line}
        """,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("", "empty"), ("  \n", "empty"), ("two words", "token")],
)
def test_guard_check_validates_the_token_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "t").write_text(content)
    path = config_with_token(tmp_path, "admin_token_file: t")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    (problem,) = err.value.problems
    assert problem.key == "admin_token_file" and problem.line == 5
    assert message in problem.message


def test_guard_check_warns_about_a_world_readable_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "t").write_text(TOKEN)
    os.chmod(tmp_path / "t", 0o644)
    with caplog.at_level(logging.WARNING):
        load_config(config_with_token(tmp_path, "admin_token_file: t"))
    assert any("readable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("hosts", ["[evil example]", "['http://x']", "['a:99999']", "[7]"])
def test_admin_hosts_are_validated(tmp_path: Path, hosts: str) -> None:
    path = config_with_token(tmp_path, f"admin_hosts: {hosts}")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems[0].key.startswith("admin_hosts")


def test_guard_check_shows_the_admin_protection(tmp_path: Path) -> None:
    (tmp_path / "t").write_text(TOKEN)
    os.chmod(tmp_path / "t", 0o600)
    indented = "\n        "  # the next line of the dedented config
    path = config_with_token(
        tmp_path, f"admin_token_file: t{indented}admin_hosts: [Guard.Internal]"
    )
    lines = summarize(load_config(path)).splitlines()
    assert f"admin hosts guard.internal   admin token {tmp_path / 't'}" in lines
