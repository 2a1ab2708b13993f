"""Hot reload (POST /reload) while requests are in flight: a good file swaps in and carries
the counts over; a bad file is refused with the problems as JSON and the old config serves on."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from tests.support.faults import metric, series
from tests.support.polling import poll
from tests.support.rawhttp import read_response
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

RELOADS = "guard_config_reloads_total"
HOLD_RULE = "rules:\n  - {name: hold, path: /__was/hold, max_active: 10}\n"


async def reload(guard: Guard) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.post(f"{guard.admin_url}/reload") as r:
        return r.status, dict(await r.json())


def hold(s: aiohttp.ClientSession, guard: Guard, n: int) -> list[asyncio.Task[int]]:
    async def one() -> int:
        async with s.get(f"{guard.url}/__was/hold") as r:
            await r.read()
            return r.status

    return [asyncio.ensure_future(one()) for _ in range(n)]


async def get_status(s: aiohttp.ClientSession, guard: Guard, path: str = "/x") -> int:
    async with s.get(f"{guard.url}{path}", headers={"Accept": "application/json"}) as r:
        await r.read()
        return r.status


def active_series_all_zero(text: str) -> bool:
    values = [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith("guard_active_transactions{")
    ]
    return bool(values) and all(float(v) == 0 for v in values)


async def test_good_reload_with_requests_in_flight_carries_counts(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was(workers=50)
    guard = await start_guard(
        backends_yaml(was, max_active=3) + HOLD_RULE + "timeouts: {shutdown: 1s}\n"
    )
    original = guard.config_path.read_text()
    first_gen = guard.runtime.gen
    async with aiohttp.ClientSession() as s:
        held = hold(s, guard, 3)
        await was.wait_active(3)
        assert await get_status(s, guard) == 503  # the backend is full

        # 1. Raise the backend ceiling to 4: the 3 in flight count against it at once.
        guard.config_path.write_text(original.replace("max_active: 3", "max_active: 4"))
        status, doc = await reload(guard)
        assert status == 200 and doc["result"] == "success", doc
        assert guard.runtime.gen is not first_gen
        assert guard.active() == {"site": 3, "backend:was-1": 3, "rule:hold": 3, "rule:default": 0}
        held += hold(s, guard, 1)  # admitted under the new config: 4 of 4
        await was.wait_active(4)
        assert await get_status(s, guard) == 503

        # 2. Drop the rule the in-flight requests were admitted under.
        guard.config_path.write_text(original.replace(HOLD_RULE, "rules: []\n"))
        status, doc = await reload(guard)
        assert status == 200, doc
        assert [r["name"] for r in (await guard.status())["rules"]] == ["default"]

        await was.release()
        assert await asyncio.gather(*held) == [200] * 4
    await guard.wait_idle()
    assert active_series_all_zero(await guard.metrics())

    # 3. Bring the rule back: its count was released while it was away, so it is 0.
    guard.config_path.write_text(original)
    status, _ = await reload(guard)
    assert status == 200
    assert guard.active()["rule:hold"] == 0
    await guard.wait_idle()
    text = await guard.metrics()
    assert metric(text, RELOADS, result="success") == 3
    assert metric(text, RELOADS, result="failure") == 0
    assert active_series_all_zero(text)


BAD = {
    "invalid": "rules:\n  - {name: hold, path: /__was/hold, rate: fast, colour: red}\n",
    "missing": None,
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_reload_with_requests_in_flight_keeps_old_config(
    start_was: StartWas, start_guard: StartGuard, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    was = await start_was(workers=50)
    guard = await start_guard(
        backends_yaml(was, max_active=3) + HOLD_RULE + "timeouts: {shutdown: 1s}\n"
    )
    original = guard.config_path.read_text()
    before = await guard.status()
    series_before = series(await guard.metrics())
    gen = guard.runtime.gen
    async with aiohttp.ClientSession() as s:
        held = hold(s, guard, 2)
        await was.wait_active(2)
        bad = BAD[case]
        if bad is None:
            guard.config_path.unlink()
        else:
            guard.config_path.write_text(original.replace(HOLD_RULE, bad))
        with caplog.at_level(logging.ERROR, logger="guard"):
            status, doc = await reload(guard)
        assert status == 400, doc
        assert doc["error"] == "invalid_config"
        problems = doc["problems"]
        assert isinstance(problems, list) and problems
        for p in problems:
            assert set(p) >= {"file", "line", "key", "message"}, p
            assert p["file"].endswith("guard.yaml")
        if case == "invalid":
            keys = {p["key"] for p in problems}
            assert any("rate" in k for k in keys) and any("colour" in k for k in keys), keys
            assert all(p["line"] > 0 for p in problems)
        assert "reload failed" in caplog.text

        # The old config keeps serving: same generation, same file hash, same ceilings.
        assert guard.runtime.gen is gen
        after = await guard.status()
        assert after["config"]["sha256"] == before["config"]["sha256"]
        assert after["reloads"] == {"success": 0, "failure": 1}
        assert [r["name"] for r in after["rules"]] == ["hold", "default"]
        assert await get_status(s, guard) == 200
        held += hold(s, guard, 1)
        await was.wait_active(3)
        assert await get_status(s, guard) == 503  # max_active 3 still binds
        await was.release()
        assert await asyncio.gather(*held) == [200] * 3
    await guard.wait_idle()
    text = await guard.metrics()
    assert metric(text, RELOADS, result="failure") == 1
    assert metric(text, RELOADS, result="success") == 0
    assert series(text) == series_before
    assert active_series_all_zero(text)
    await poll(guard.all_zero)


async def test_reloaded_limits_reach_connections_already_open(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """Ops tighten limits before an event: keep-alive clients connected earlier get them too."""
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    request = b"GET /x HTTP/1.1\r\nHost: shop\r\nX-Filler: " + b"f" * 3000 + b"\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    try:
        writer.write(request)
        assert (await read_response(reader)).status == 200  # within the default 16 KiB
        guard.config_path.write_text(
            guard.config_path.read_text() + "limits: {max_header_size: 1k}\n"
        )
        status, doc = await reload(guard)
        assert status == 200, doc
        writer.write(request)  # the same connection, opened under the old limits
        assert (await read_response(reader)).status == 431
    finally:
        writer.close()
    await guard.wait_idle()
