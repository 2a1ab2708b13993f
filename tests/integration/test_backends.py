"""Backend state as ops see it: active health checks and draining through a reload."""

from __future__ import annotations

import aiohttp

from guard.tools.was import run_was
from tests.support.polling import poll
from tests.support.servers import StartGuard, StartWas, backends_yaml, free_port


async def test_active_health_check_marks_down_and_up_without_traffic(
    start_guard: StartGuard,
) -> None:
    port = free_port()
    runner = await run_was("127.0.0.1", port, 5, 0.0, "was-1")
    guard = await start_guard(
        "backends:\n"
        f"  - {{name: was-1, url: 'http://127.0.0.1:{port}', max_active: 5,"
        " health: {path: /__was/stats, interval: 50ms, timeout: 500ms}}\n"
    )
    health = guard.runtime.state.health("was-1")
    await poll(lambda: health.up, 5, lambda: "never seen up")
    await runner.cleanup()  # the WAS dies; no client sends anything
    await poll(lambda: not health.up, 5, lambda: "health check never noticed")
    assert 'guard_backend_up{backend="was-1"} 0.0' in await guard.metrics()
    async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/x") as r:
        assert r.status == 503  # no usable backend: a capacity refusal, not a hang
    runner = await run_was("127.0.0.1", port, 5, 0.0, "was-1")  # back on the same port
    try:
        await poll(lambda: health.up, 5, lambda: "health check never saw it come back")
        async with aiohttp.ClientSession() as s, s.get(f"{guard.url}/x") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()


async def test_drain_by_reload_sends_new_requests_elsewhere(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was1, was2 = await start_was("was-1"), await start_was("was-2")
    guard = await start_guard(backends_yaml(was1, was2))
    text = guard.config_path.read_text()
    guard.config_path.write_text(
        text.replace(
            f"url: '{was1.url}', max_active: 100",
            f"url: '{was1.url}', max_active: 100, drain: true",
        )
    )
    result = await guard.runtime.reload()
    assert result.ok, result.problems
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            async with s.get(f"{guard.url}/x") as r:
                assert (await r.json())["name"] == "was-2"
    status = await guard.status()
    assert {b["name"]: b["draining"] for b in status["backends"]} == {"was-1": True, "was-2": False}
