"""Admission through the real proxy: ceilings, refusals, rates, blocks, bypass."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.polling import poll
from tests.support.servers import StartGuard, StartWas, Was, backends_yaml, read_access_log

BROWSER = {"Accept": "text/html,application/xhtml+xml"}


async def fire(
    session: aiohttp.ClientSession, url: str, n: int, **kw: object
) -> list[asyncio.Task[tuple[int, str, dict[str, str]]]]:
    async def one() -> tuple[int, str, dict[str, str]]:
        async with session.get(url, **kw) as r:  # type: ignore[arg-type]
            return r.status, await r.text(), dict(r.headers)

    return [asyncio.create_task(one()) for _ in range(n)]


async def test_backend_never_sees_more_than_its_ceiling(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was(workers=50)
    guard = await start_guard(backends_yaml(was, max_active=4))
    async with aiohttp.ClientSession() as s:
        held = await fire(s, f"{guard.url}/__was/hold", 4, headers=BROWSER)
        await was.wait_active(4)
        extra = await asyncio.gather(*await fire(s, f"{guard.url}/__was/hold", 6, headers=BROWSER))
        for status, body, headers in extra:
            assert status == 503
            assert "please wait" in body
            assert headers["Retry-After"] == "5"
            assert headers["Cache-Control"] == "no-store"
        assert guard.active()["backend:was-1"] == 4
        await was.release()
        done = await asyncio.gather(*held)
    assert [d[0] for d in done] == [200] * 4
    stats = await was.stats()
    assert stats["max_seen_active"] == 4
    await guard.wait_idle()


async def test_json_refusal_for_api_clients(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was, max_active=1) + "retry_after: 1500ms\n")
    async with aiohttp.ClientSession() as s:
        held = await fire(s, f"{guard.url}/__was/hold", 1)
        await was.wait_active(1)
        async with s.get(f"{guard.url}/x", headers={"Accept": "application/json"}) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "2"  # whole seconds, rounded up
            assert await r.json() == {"error": "over_capacity", "rule": "default", "retry_after": 2}
        await was.release()
        await asyncio.gather(*held)
    await guard.wait_idle()


async def test_each_ceiling_binds_on_its_own(start_was: StartWas, start_guard: StartGuard) -> None:
    was1, was2 = await start_was("was-1"), await start_was("was-2")
    roomy = backends_yaml(was1, was2, max_active=50)
    cases = {
        "site": ("max_active: 3\n" + roomy, 3),  # site 3, roomy backends, no rule ceiling
        "backend": (backends_yaml(was1, was2, max_active=2), 4),  # 2 per backend
        "rule": (roomy + "rules:\n  - {name: hold, path: /__was/hold, max_active: 2}\n", 2),
    }
    for name, (yaml, ceiling) in cases.items():
        guard = await start_guard(yaml)
        url = f"{guard.url}/__was/hold"
        async with aiohttp.ClientSession() as s:
            held = await fire(s, url, ceiling)
            await poll(lambda g=guard, c=ceiling: g.active()["site"] == c)  # type: ignore[misc]
            await _wait_inside(s, was1, was2, ceiling)
            async with s.get(url) as r:
                assert r.status == 503, name
                assert (await r.json())["error"] == "over_capacity"
            await was1.release()
            await was2.release()
            assert [t[0] for t in await asyncio.gather(*held)] == [200] * ceiling, name
        await guard.wait_idle()
        await guard.runtime.stop()


async def _wait_inside(s: aiohttp.ClientSession, a: Was, b: Was, n: int) -> None:
    """Both WAS together hold n requests (asked with long-polls, no sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while (await a.stats())["active"] + (await b.stats())["active"] < n:
        assert loop.time() < deadline, "requests did not reach the WAS"
        await poll(lambda: True)


async def test_rate_limit_refuses_without_consuming(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was)
        + "rules:\n"
        + "  - {name: event, path: /event/**, rate: 1/m, burst: 2}\n"
        + "  - {name: coupon, path: /coupon/**, rate: 1/m, burst: 1, per_client: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(4):
            async with s.get(f"{guard.url}/event/x") as r:
                statuses.append(r.status)
                if r.status == 503:
                    assert (await r.json())["error"] == "over_rate"
        assert statuses == [200, 200, 503, 503]
        async with s.get(f"{guard.url}/coupon/1") as r:
            assert r.status == 200
        async with s.get(f"{guard.url}/coupon/1") as r:
            assert r.status == 429
            assert (await r.json()) == {"error": "over_rate", "rule": "coupon", "retry_after": 5}
    status = await guard.status()
    counts = {r["name"]: r["counts"] for r in status["rules"]}
    assert counts["event"]["admitted"] == 2 and counts["event"]["over_rate"] == 2
    assert counts["coupon"]["over_rate"] == 1


async def test_reject_action_answers_json_even_to_browsers(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was)
        + "rules:\n  - {name: order, path: /order/**, rate: 1/m, burst: 1, action: reject}\n"
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{guard.url}/order/1", headers=BROWSER) as r:
            assert r.status == 200
        async with s.get(f"{guard.url}/order/1", headers=BROWSER) as r:
            assert r.status == 503
            assert r.headers["Content-Type"].startswith("application/json")


async def test_block_rule_and_block_ips(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was) + "rules:\n  - {name: admin, path: /admin/**, block: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        for path in ("/admin", "/admin/users", "/x/../admin/y"):
            async with s.get(f"{guard.url}{path}") as r:
                assert r.status == 403, path
    assert (await was.stats())["served"] == 0
    guard2 = await start_guard(backends_yaml(was) + "block_ips: [127.0.0.0/8]\n")
    async with aiohttp.ClientSession() as s, s.get(f"{guard2.url}/x") as r:
        assert r.status == 403
    status = await guard2.status()
    assert {r["name"]: r["counts"]["blocked"] for r in status["rules"]}["default"] == 1


async def test_bypass_goes_through_even_when_full(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was, max_active=1)
        + "rules:\n  - {name: static, path: /static/**, bypass: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        held = await fire(s, f"{guard.url}/__was/hold", 1)
        await was.wait_active(1)
        async with s.get(f"{guard.url}/static/app.js") as r:
            assert r.status == 200
        async with s.get(f"{guard.url}/other") as r:
            assert r.status == 503
        await was.release()
        await asyncio.gather(*held)
    await guard.wait_idle()


async def test_waiting_page_assets_never_touch_the_backend(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{guard.url}/__guard/static/waiting.css") as r:
            assert r.status == 200 and "color" in await r.text()
        async with s.get(f"{guard.url}/__guard/static/nope.css") as r:
            assert r.status == 404
    assert (await was.stats())["served"] == 0


async def test_access_log_has_one_line_per_request(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was) + "rules:\n  - {name: admin, path: /admin/**, block: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{guard.url}/a") as r:
            echoed_id = (await r.json())["headers"]["X-Request-Id"]
        async with s.get(f"{guard.url}/admin/x") as r:
            await r.read()
        for _ in range(5):
            async with s.get(f"{guard.url}/b") as r:
                await r.read()
    lines = read_access_log(guard)
    assert [(x["path"], x["rule"], x["outcome"], x["status"]) for x in lines[:2]] == [
        ("/a", "default", "admitted", 200),
        ("/admin/x", "admin", "blocked", 403),
    ]
    assert lines[0]["backend"] == "was-1" and lines[0]["client"] == "127.0.0.1"
    assert lines[1]["backend"] is None  # refused: no backend was involved
    # guard generated the request id: the backend received the one in the log
    assert lines[0]["request_id"] == echoed_id
    # durations are measured, not rounded down to the event loop's millisecond ticks
    # (sub-millisecond requests would then log 0.000)
    assert all(line["duration_ms"] > 0 for line in lines[2:]) and len(lines) == 7
