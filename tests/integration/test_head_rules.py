"""A rule that lists GET also covers HEAD (as nginx's ``limit_except GET`` does): servlet
containers run doGet for HEAD, so a HEAD must never slip past a GET ceiling or block."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.servers import StartGuard, StartWas, backends_yaml

JSON = {"Accept": "application/json"}


async def test_head_is_refused_by_a_full_get_rule(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was, max_active=50)
        + "rules:\n  - {name: was, path: /__was/**, methods: [GET], max_active: 1}\n"
    )
    async with aiohttp.ClientSession() as s:
        held = asyncio.ensure_future(s.get(f"{guard.url}/__was/hold"))
        await was.wait_active(1)
        async with s.head(f"{guard.url}/__was/stats", headers=JSON) as r:
            assert r.status == 503  # the GET rule is full: HEAD waits like GET
        async with s.get(f"{guard.url}/__was/stats", headers=JSON) as r:
            assert r.status == 503
        await was.release()
        (await held).release()
    counts = {r["name"]: r["counts"] for r in (await guard.status())["rules"]}
    assert counts["was"]["over_capacity"] == 2
    assert counts["default"]["admitted"] == 0  # the HEAD did not slip in under default
    await guard.wait_idle()


async def test_head_is_blocked_by_a_get_block_rule(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was)
        + "rules:\n  - {name: admin, path: /admin/**, methods: [GET], block: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        for method in ("GET", "HEAD"):
            async with s.request(method, f"{guard.url}/admin/users") as r:
                assert r.status == 403, method
        async with s.post(f"{guard.url}/admin/users") as r:
            assert r.status == 200  # the rule lists GET only: POST is not covered
    assert (await was.stats())["served"] == 1


async def test_a_rule_without_get_does_not_take_head(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was)
        + "rules:\n"
        + "  - {name: posts, path: /form/**, methods: [POST], block: true}\n"
        + "  - {name: heads, path: /head/**, methods: [HEAD], block: true}\n"
    )
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{guard.url}/form/x") as r:
            assert r.status == 200  # HEAD joins GET rules only
        async with s.get(f"{guard.url}/head/x") as r:
            assert r.status == 200  # a HEAD-only rule does not cover GET
        async with s.head(f"{guard.url}/head/x") as r:
            assert r.status == 403
