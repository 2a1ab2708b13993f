"""Outcome accounting: every request gets exactly one outcome, and "no backend up" is not
an overload. The outcomes are the metrics contract (guard_requests_total{rule, outcome})."""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from guard.core.stats import OUTCOMES
from tests.support.faults import metric
from tests.support.servers import Guard, StartGuard, StartWas, read_access_log

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml"}
DEAD = "http://127.0.0.1:9"  # discard port: nothing listens, every connect is refused
BYPASS = "rules:\n  - {name: assets, path: /assets/**, bypass: true}\n"


def dead_backends(*names: str) -> str:
    rows = [f"  - {{name: {n}, url: '{DEAD}', max_active: 5, cooldown: 1m}}\n" for n in names]
    return "backends:\n" + "".join(rows)


async def take_down(s: aiohttp.ClientSession, guard: Guard) -> None:
    """The first request finds the backends dead (admitted, then 502); they are now down."""
    async with s.get(f"{guard.url}/first", headers=JSON) as r:
        assert r.status == 502
    assert not any(b["up"] for b in (await guard.status())["backends"])


def total_requests(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("guard_requests_total{")
    )


async def test_no_backend_up_is_unavailable_not_over_capacity(start_guard: StartGuard) -> None:
    guard = await start_guard(dead_backends("was-1", "was-2") + BYPASS)
    async with aiohttp.ClientSession() as s:
        await take_down(s, guard)
        async with s.get(f"{guard.url}/page", headers=JSON) as r:
            assert r.status == 503
            assert (await r.json())["error"] == "unavailable"
            assert r.headers["Retry-After"] == "5"
        async with s.get(f"{guard.url}/page", headers=BROWSER) as r:
            assert r.status == 503
            page = await r.text()
            assert "please wait" not in page  # an outage is not the waiting room
            assert r.headers["Content-Type"].startswith("text/html")
            assert "maintenance" in page.lower() and "점검" in page  # the bilingual page
    text = await guard.metrics()
    assert metric(text, "guard_requests_total", rule="default", outcome="unavailable") == 2
    assert metric(text, "guard_requests_total", rule="default", outcome="over_capacity") == 0
    logged = [(x["path"], x["outcome"], x["status"]) for x in read_access_log(guard)]
    assert logged[1:] == [("/page", "unavailable", 503)] * 2


async def test_bypass_with_no_backend_up_is_unavailable(start_guard: StartGuard) -> None:
    guard = await start_guard(dead_backends("was-1") + BYPASS)
    async with aiohttp.ClientSession() as s:
        await take_down(s, guard)
        async with s.get(f"{guard.url}/assets/app.js", headers=JSON) as r:
            assert r.status == 503
            assert (await r.json())["error"] == "unavailable"
    text = await guard.metrics()
    assert metric(text, "guard_requests_total", rule="assets", outcome="unavailable") == 1
    assert metric(text, "guard_requests_total", rule="assets", outcome="admitted") == 0


async def test_full_backends_are_still_over_capacity(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        f"backends:\n  - {{name: was-1, url: '{was.url}', max_active: 1}}\n"
        f"  - {{name: gone, url: '{DEAD}', max_active: 5, cooldown: 1m}}\n"
    )
    async with aiohttp.ClientSession() as s:
        while (await guard.status())["backends"][1]["up"]:  # until a request finds it dead
            async with s.get(f"{guard.url}/x") as r:
                assert r.status == 200  # a failed connect is retried on was-1
        held = asyncio.ensure_future(s.get(f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        async with s.get(f"{guard.url}/x", headers=JSON) as r:
            assert r.status == 503
            assert (await r.json())["error"] == "over_capacity"  # a backend is up, and full
        await was.release()
        (await held).release()


async def test_static_assets_have_their_own_outcome(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(f"backends:\n  - {{name: was-1, url: '{was.url}', max_active: 5}}\n")
    async with aiohttp.ClientSession() as s:
        for asset, status in (("waiting.css", 200), ("nope.css", 404)):
            async with s.get(f"{guard.url}/__guard/static/{asset}") as r:
                assert r.status == status
    text = await guard.metrics()
    assert metric(text, "guard_requests_total", rule="default", outcome="static") == 2
    assert [x["outcome"] for x in read_access_log(guard)] == ["static", "static"]


async def test_every_request_has_exactly_one_outcome(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        f"backends:\n  - {{name: was-1, url: '{was.url}', max_active: 5}}\n"
        "rules:\n  - {name: admin, path: /admin/**, block: true}\n"
        "  - {name: once, path: /once/**, rate: 1/m, burst: 1}\n"
    )
    paths = ["/a", "/admin/x", "/once/1", "/once/2", "/__guard/static/waiting.css", "/%00"]
    async with aiohttp.ClientSession() as s:
        for path in paths:
            async with s.get(URL(f"{guard.url}{path}", encoded=True), headers=JSON) as r:
                await r.read()
    assert total_requests(await guard.metrics()) == len(paths)
    logged = [x["outcome"] for x in read_access_log(guard)]
    assert logged == ["admitted", "blocked", "admitted", "over_rate", "static", "bad_request"]
    assert set(logged) <= set(OUTCOMES)
    assert {"unavailable", "static"} <= set(OUTCOMES)
