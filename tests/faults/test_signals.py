"""SIGTERM and SIGHUP on a real `guard run` subprocess, in front of a simulated WAS that runs
in the test process (so the test can hold and release requests inside the backend)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.support.polling import poll_async as until
from tests.support.processes import SpawnGuard
from tests.support.rawhttp import read_response
from tests.support.servers import StartWas, Was

HOLD = b"GET /__was/hold HTTP/1.1\r\nHost: shop\r\n\r\n"


async def refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.transport.abort()
    return False


def backend(was: Was, max_active: int = 20) -> str:
    return f"backends:\n  - {{name: {was.name}, url: '{was.url}', max_active: {max_active}}}\n"


async def test_sigterm_finishes_in_flight_refuses_new_and_exits_0(
    start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    was = await start_was(workers=50)
    g = await spawn_guard(backend(was) + "timeouts: {shutdown: 5s}\n")
    loop = asyncio.get_running_loop()

    # An idle keep-alive connection, and five requests held inside the WAS.
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", g.port)
    idle_w.write(b"GET /ping HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert (await read_response(idle_r)).status == 200
    clients = [await asyncio.open_connection("127.0.0.1", g.port) for _ in range(5)]
    for _, w in clients:
        w.write(HOLD)
    await was.wait_active(5)

    sent = loop.time()
    g.signal(signal.SIGTERM)
    await until(lambda: refuses_connections(g.port), 2.0, lambda: "still accepting after SIGTERM")
    assert g.running(), "exited without waiting for in-flight requests"
    assert (await read_response(idle_r, timeout=2.0)).status == 0  # idle ones are closed
    assert (await was.stats())["active"] == 5

    await was.release()
    for r, w in clients:
        res = await read_response(r, timeout=5.0)
        assert res.status == 200 and res.complete, res
        assert (res.header("Connection") or "").lower() == "close"
        w.close()
    assert await g.exit_code(timeout=5.0) == 0, g.stderr()
    assert loop.time() - sent < 5.0  # within timeouts.shutdown
    idle_w.close()


async def test_sigterm_with_request_that_never_finishes_exits_after_shutdown_timeout(
    start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    was = await start_was(workers=50)
    g = await spawn_guard(backend(was) + "timeouts: {shutdown: 1s, read: 60s}\n")
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
    writer.write(HOLD)
    await was.wait_active(1)
    sent = loop.time()
    g.signal(signal.SIGTERM)
    code = await g.exit_code(timeout=5.0)
    elapsed = loop.time() - sent
    assert code == 0, g.stderr()
    assert 0.95 <= elapsed < 3.0, elapsed
    res = await read_response(reader, timeout=2.0)
    # Past timeouts.shutdown guard answers what no backend answered: its own 503.
    assert res.status == 503 and res.complete
    writer.close()
    await was.release()


BROKEN = "rules:\n  - {name: event, path: /event/**, rate: fast}\n"


async def test_sighup_with_broken_file_mid_load_keeps_serving(
    start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    was = await start_was(workers=50)
    g = await spawn_guard(backend(was) + "timeouts: {shutdown: 2s}\n")
    original = g.config_path.read_text()
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load(s: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with s.get(f"{g.url}/item/{len(statuses)}") as r:
                await r.read()
                statuses.append(r.status)

    async def served(n: int) -> bool:
        return len(statuses) >= n

    async with aiohttp.ClientSession() as s:
        workers = [asyncio.ensure_future(load(s)) for _ in range(4)]
        try:
            await until(lambda: served(50), 10.0, lambda: f"no load: {statuses[-5:]}")
            before = await g.status()

            g.config_path.write_text(original + BROKEN)
            g.signal(signal.SIGHUP)

            async def failed() -> bool:
                return bool((await g.status())["reloads"]["failure"] == 1)

            await until(failed, 5.0, lambda: f"reload failure not counted: {g.stderr()}")
            after = await g.status()
            assert after["config"]["sha256"] == before["config"]["sha256"]
            assert after["reloads"]["success"] == 0
            assert "reload failed" in g.stderr() and "rules[0].rate" in g.stderr()
            mark = len(statuses)
            await until(lambda: served(mark + 200), 10.0, lambda: "stopped serving")

            # Fixing the file and sending SIGHUP again swaps the new config in.
            g.config_path.write_text(original.replace("max_active: 20", "max_active: 30"))
            g.signal(signal.SIGHUP)

            async def succeeded() -> bool:
                return bool((await g.status())["reloads"]["success"] == 1)

            await until(succeeded, 5.0, lambda: f"reload not applied: {g.stderr()}")
            fixed = await g.status()
            assert fixed["config"]["sha256"] != before["config"]["sha256"]
            assert fixed["backends"][0]["max_active"] == 30
            mark = len(statuses)
            await until(lambda: served(mark + 200), 10.0, lambda: "stopped serving")
        finally:
            stop.set()
            errors = await asyncio.gather(*workers, return_exceptions=True)
    assert errors == [None] * 4, errors
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    final = await g.status()
    assert final["site"]["active"] == 0
    g.signal(signal.SIGTERM)
    assert await g.exit_code(timeout=5.0) == 0, g.stderr()


async def test_an_open_live_stream_does_not_hold_up_sigterm(
    start_was: StartWas, spawn_guard: SpawnGuard
) -> None:
    """An operator watching /live at shutdown: the stream ends with guard, which exits
    within its shutdown deadline (aiohttp would otherwise wait 60 s for the handler)."""
    was = await start_was()
    g = await spawn_guard(backend(was) + "timeouts: {shutdown: 1s}\nlive: {tick: 100ms}\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", g.admin_port)
    writer.write(b"GET /live/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % g.admin_port)
    assert b"200" in await asyncio.wait_for(reader.readline(), 5.0)
    await asyncio.wait_for(reader.readuntil(b"event: tick"), 5.0)  # streaming now
    g.signal(signal.SIGTERM)
    assert await g.exit_code(timeout=5.0) == 0
    writer.close()
