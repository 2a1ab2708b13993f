"""Renaming a backend or a rule on reload while requests are in flight.

The identity rule (README, "Reload"): a backend with the same URL is the same backend — it
keeps its active count and its health under the new name. A rule with the same path
pattern and methods is the same rule — it keeps its active count. Any other new rule
starts at 0 while the old rule's requests drain on the old count; the site and backend
ceilings, which protect the WAS, never lose a request.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.faults.test_reload_inflight import get_status, hold, reload
from tests.support.servers import Guard, StartGuard, StartWas, Was


def yaml(was: Was, backend: str, rule: str, path: str = "/__was/hold", ceiling: int = 4) -> str:
    return (
        f"backends:\n  - {{name: {backend}, url: '{was.url}', max_active: {ceiling}, "
        "cooldown: 1m}\n"
        f"rules:\n  - {{name: {rule}, path: {path}, max_active: 10}}\n"
    )


async def rewrite(guard: Guard, text: str) -> None:
    header = guard.config_path.read_text().split("backends:")[0]
    guard.config_path.write_text(header + text)
    status, doc = await reload(guard)
    assert status == 200 and doc["result"] == "success", doc


async def test_renamed_backend_keeps_its_count_under_load(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was(workers=50)
    guard = await start_guard(yaml(was, "was-1", "hold"))
    async with aiohttp.ClientSession() as s:
        held = hold(s, guard, 4)
        await was.wait_active(4)
        await rewrite(guard, yaml(was, "was-a", "hold"))
        assert guard.active()["backend:was-a"] == 4  # same URL: same backend
        # Under load: more requests than the ceiling, after the rename.
        extra = await asyncio.gather(*[get_status(s, guard, "/__was/hold") for _ in range(6)])
        assert extra == [503] * 6
        assert (await was.stats())["max_seen_active"] == 4
        await was.release()
        assert await asyncio.gather(*held) == [200] * 4
    await guard.wait_idle()
    assert (await was.stats())["max_seen_active"] == 4


async def test_renamed_backend_keeps_its_health(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, connect is refused
    guard = await start_guard(
        f"backends:\n  - {{name: was-1, url: '{was.url}', max_active: 5}}\n"
        f"  - {{name: gone, url: '{dead}', max_active: 5, cooldown: 1m}}\n"
    )
    async with aiohttp.ClientSession() as s:
        await poll_down(s, guard, "gone")
        text = guard.config_path.read_text().replace("name: gone", "name: gone-2")
        guard.config_path.write_text(text)
        status, doc = await reload(guard)
        assert status == 200, doc
    backends = {b["name"]: b for b in (await guard.status())["backends"]}
    assert backends["gone-2"]["up"] is False  # same URL: still in its cool-down


async def poll_down(s: aiohttp.ClientSession, guard: Guard, name: str) -> None:
    """Send requests until guard has found backend `name` down (a connect failure)."""
    for _ in range(10):
        await get_status(s, guard)
        if not {b["name"]: b["up"] for b in (await guard.status())["backends"]}[name]:
            return
    raise AssertionError(f"{name} never marked down")


async def test_renamed_rule_with_same_pattern_keeps_its_count(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was(workers=50)
    body = yaml(was, "was-1", "hold", ceiling=50).replace("max_active: 10", "max_active: 3")
    guard = await start_guard(body)
    async with aiohttp.ClientSession() as s:
        held = hold(s, guard, 3)
        await was.wait_active(3)
        await rewrite(guard, body.replace("name: hold", "name: holding"))
        assert guard.active()["rule:holding"] == 3  # same pattern and methods: same rule
        assert await get_status(s, guard, "/__was/hold") == 503  # its ceiling still binds
        await was.release()
        assert await asyncio.gather(*held) == [200] * 3
    await guard.wait_idle()
    assert (await was.stats())["max_seen_active"] == 3


async def test_rule_renamed_with_a_new_pattern_starts_at_zero_but_backend_ceiling_holds(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was(workers=50)
    guard = await start_guard(yaml(was, "was-1", "hold"))
    async with aiohttp.ClientSession() as s:
        held = hold(s, guard, 4)
        await was.wait_active(4)
        await rewrite(guard, yaml(was, "was-a", "waits", path="/__was/**"))
        active = guard.active()
        assert active["rule:waits"] == 0  # a different rule: starts at 0
        assert active["backend:was-a"] == 4 and active["site"] == 4  # these never lose count
        assert await get_status(s, guard, "/__was/hold") == 503
        await was.release()
        assert await asyncio.gather(*held) == [200] * 4
    await guard.wait_idle()
    assert (await was.stats())["max_seen_active"] == 4
