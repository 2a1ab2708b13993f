"""The pages guard serves by itself: the waiting page is a template filled with the
configured values (retry delay, rule, request id, branding), every substituted value is
escaped, browsers get HTML (not JSON) for 502/504, and "no backend up" has its own page."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import aiohttp
import pytest

from guard.config import ConfigError, load_config
from tests.support.servers import StartGuard, StartWas, backends_yaml, free_port, write_config

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
SHIPPED = Path(__file__).resolve().parents[2] / "guard" / "static"
RATE_RULE = "rules:\n  - {name: event, path: /event/**, rate: 1/m, burst: 1}\n"


async def refused_page(url: str, headers: dict[str, str]) -> tuple[aiohttp.ClientResponse, str]:
    """The second request to a rule that admits one per minute: the waiting page."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/event/1") as r:
            assert r.status == 200
        async with s.get(f"{url}/event/2", headers={**BROWSER, **headers}) as r:
            return r, await r.text()


def shipped_page_header(tmp_path: Path) -> str:
    """Put the shipped waiting page and its assets where the test guard looks for them."""
    for name in ("waiting.html", "waiting.css", "logo.svg"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return ""


async def test_waiting_page_reflects_retry_after_rule_and_request_id(
    tmp_path: Path, start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        shipped_page_header(tmp_path) + "retry_after: 12s\n" + backends_yaml(was) + RATE_RULE
    )
    r, page = await refused_page(guard.url, {"X-Request-Id": "order-4711"})
    assert r.status == 503 and r.headers["Retry-After"] == "12"
    assert r.headers["Content-Type"].startswith("text/html")
    refresh = re.search(r'<meta http-equiv="refresh" content="(\d+)">', page)
    assert refresh and 12 <= int(refresh.group(1)) <= 18, "meta refresh ignores retry_after"
    assert 'data-retry-after="12"' in page  # what the script counts down from
    assert "order-4711" in page and "event" in page
    assert "순서대로" not in page  # no promise of order: there is no line yet
    async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/__guard/static/waiting.css") as c:
        assert "keep-all" in await c.text()


async def test_every_substituted_value_is_escaped(
    tmp_path: Path, start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(shipped_page_header(tmp_path) + backends_yaml(was) + RATE_RULE)
    hostile = '"><script>alert(1)</script>'
    _, page = await refused_page(guard.url, {"X-Request-Id": hostile})
    assert "<script>alert(1)" not in page
    assert html.escape(hostile) in page


async def test_branding_from_the_page_section(
    tmp_path: Path, start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    (tmp_path / "brand").mkdir()
    (tmp_path / "brand" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    guard = await start_guard(
        shipped_page_header(tmp_path)
        + "static_dir: brand\n"
        + "page: {shop_name: \"Kim's <Mall>\", logo: logo.png, primary_color: '#ff6600'}\n"
        + backends_yaml(was)
        + RATE_RULE
    )
    _, page = await refused_page(guard.url, {})
    assert "Kim&#x27;s &lt;Mall&gt;" in page
    assert 'src="/__guard/static/logo.png"' in page
    assert "#ff6600" in page


@pytest.mark.parametrize(
    ("page", "key", "message"),
    [
        ("{primary_color: red}", "page.primary_color", 'expected a colour like "#1a73e8"'),
        ("{logo: nope.png}", "page.logo", "no such file"),
        ("{shop_name: 3, colour: x}", "page.colour", ""),
    ],
)
def test_guard_check_validates_the_page_section(
    tmp_path: Path, page: str, key: str, message: str
) -> None:
    path = write_config(
        tmp_path,
        "backends:\n  - {name: b, url: 'http://127.0.0.1:1', max_active: 1}\n" + f"page: {page}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [p for p in info.value.problems if p.key == key]
    assert found and found[0].line == 3 and message in found[0].message, info.value.problems


async def test_browsers_get_html_for_502_and_others_json(start_guard: StartGuard) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    guard = await start_guard(f"backends:\n  - {{name: b, url: '{dead}', max_active: 5}}\n")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{guard.url}/a", headers=BROWSER) as r:
            assert r.status == 502
            assert r.headers["Content-Type"].startswith("text/html")
            body = await r.text()
            assert "<html" in body and "502" in body
        async with s.get(f"{guard.url}/b") as r:
            assert r.status in (502, 503)
            assert r.headers["Content-Type"] == "application/json"
            assert "error" in json.loads(await r.text())


async def test_browsers_get_html_for_504(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was(service_time=2.0)
    guard = await start_guard("timeouts: {read: 200ms}\n" + backends_yaml(was))
    async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/slow", headers=BROWSER) as r:
        assert r.status == 504
        assert r.headers["Content-Type"].startswith("text/html")
        assert "504" in await r.text()


async def test_unavailable_gets_the_maintenance_page(
    tmp_path: Path, start_was: StartWas, start_guard: StartGuard
) -> None:
    """The page choice for the core's `unavailable` outcome (no backend up), keyed on the
    outcome word: browsers get the maintenance page, other clients JSON, status 503."""
    was = await start_was()
    (tmp_path / "maint.html").write_text("<html>back at 3pm · {{request_id}}</html>")
    guard = await start_guard("maintenance_page: maint.html\n" + backends_yaml(was))
    pages = guard.runtime.gen.pages
    page = pages.refusal("default", "unavailable", 503, True, False, False, b"<id>")
    assert page.startswith(b"HTTP/1.1 503 ")
    assert b"text/html" in page and page.endswith(b"<html>back at 3pm \xc2\xb7 &lt;id&gt;</html>")
    data = pages.refusal("default", "unavailable", 503, False, False, False, b"id")
    assert data.startswith(b"HTTP/1.1 503 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "unavailable"


async def test_default_maintenance_page_is_bilingual(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    page = guard.runtime.gen.pages.refusal("default", "unavailable", 503, True, True, False, b"x")
    body = page.split(b"\r\n\r\n", 1)[1].decode()
    assert "점검" in body and "maintenance" in body.lower()
