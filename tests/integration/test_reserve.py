"""``reserve: N`` through the real proxy, and `guard check` refusing reserves that do not fit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from guard.config import ConfigError, load_config
from tests.support.servers import StartGuard, StartWas, write_config

JSON = {"Accept": "application/json"}


async def test_reserved_page_works_while_the_event_fills_the_backend(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        f"backends:\n  - {{name: was-1, url: '{was.url}', max_active: 3}}\n"
        "rules:\n  - {name: main, path: /main.jsp, reserve: 1}\n"
        "  - {name: event, path: /__was/**}\n"
    )
    async with aiohttp.ClientSession() as s:
        held = [asyncio.ensure_future(s.get(f"{guard.url}/__was/hold")) for _ in range(2)]
        await was.wait_active(2)
        async with s.get(f"{guard.url}/__was/hold", headers=JSON) as r:
            assert r.status == 503  # the event sees 3 - 1
        async with s.get(f"{guard.url}/main.jsp", headers=JSON) as r:
            assert r.status == 200  # the shop front never queues behind the event
        await was.release()
        for task in held:
            (await task).release()
    assert (await was.stats())["max_seen_active"] <= 3
    await guard.wait_idle()


def problems(tmp_path: Path, body: str) -> list[str]:
    path = write_config(tmp_path, "waiting_page: waiting.html\n" + body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [f"{p.line}: {p.key}: {p.message}" for p in info.value.problems]


def test_reserves_must_fit_under_every_ceiling(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "max_active: 20\n"
        "backends:\n"
        "  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 10}\n"
        "  - {name: was-2, url: 'http://127.0.0.1:8082', max_active: 4}\n"
        "rules:\n"
        "  - {name: main, path: /main.jsp, reserve: 2}\n"
        "  - {name: login, path: /login/**, reserve: 2}\n",
    )
    # line 8 is the second reserve, which makes the sum (4) reach was-2's ceiling (4)
    assert len(found) == 1 and found[0].startswith("8: rules[1].reserve:"), found
    assert "backends[1].max_active" in found[0] and "4" in found[0]


def test_reserve_reaching_the_site_ceiling(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "max_active: 3\n"
        "backends:\n"
        "  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 10}\n"
        "rules:\n"
        "  - {name: main, path: /main.jsp, reserve: 3}\n",
    )
    assert found == [
        "6: rules[0].reserve: reserves add up to 3, leaving other rules no room under"
        " max_active (3)"
    ]


def test_reserve_conflicts(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "backends:\n"
        "  - {name: was-1, url: 'http://127.0.0.1:8081', max_active: 10}\n"
        "rules:\n"
        "  - {name: cdn, path: /cdn/**, bypass: true, reserve: 1}\n"
        "  - {name: small, path: /s/**, max_active: 1, reserve: 2}\n",
    )
    assert found == [
        "5: rules[0].reserve: not allowed with bypass: true",
        "6: rules[1].reserve: must not exceed the rule's own max_active (1)",
    ]
