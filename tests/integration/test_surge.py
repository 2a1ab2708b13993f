"""`guard surge` against real servers on loopback: its numbers must match what the servers saw."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from guard.tools.surge import Record, surge
from guard.tools.surge_args import SurgeOptions, TargetError, resolve_target
from guard.tools.surge_report import Stats, to_text
from guard.tools.surge_schedule import Shape
from tests.support.servers import StartGuard, StartWas, backends_yaml, read_access_log

ROOT = Path(__file__).resolve().parents[2]


async def run(url: str, shape: Shape, **options: object) -> tuple[Stats, list[Record]]:
    target = resolve_target(url)
    paths = options.pop("paths", (target.path,))
    chosen = SurgeOptions(shape=shape, paths=paths, keep_records=True, **options)  # type: ignore[arg-type]
    return await surge(chosen, target)


async def test_numbers_match_what_guard_and_the_was_saw(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """100/s for 1 s onto a ceiling of 4 with 50 ms of service: room for ~80/s, so some
    shoppers see the waiting page. Every request is accounted for exactly once."""
    was = await start_was(workers=50, service_time=0.05)
    guard = await start_guard("retry_after: 1s\n" + backends_yaml(was, max_active=4))
    stats, records = await run(f"{guard.url}/event", Shape(rate=100, duration=1), patience=0.5)

    assert stats.arrivals == pytest.approx(100, abs=1)
    logged = read_access_log(guard)
    assert len(records) == stats.requests == len(logged)
    statuses = Counter(line["status"] for line in logged)
    assert stats.admitted == statuses[200]
    assert stats.waiting == statuses[503] > 0  # the ceiling was reached
    assert stats.refused == 0 and not stats.errors
    assert stats.gave_up == stats.waiting  # Retry-After 1 s is beyond a patience of 0.5 s
    assert stats.done + stats.gave_up == stats.arrivals and stats.in_flight == 0
    was_stats = await was.stats()
    assert was_stats["served"] == stats.admitted  # every admitted request reached the WAS
    assert was_stats["max_seen_active"] <= 4  # and guard held its ceiling
    assert min(stats.latency) >= 0.049 and len(stats.latency) == stats.admitted
    assert "waiting page" in to_text(stats)


async def test_shoppers_keep_their_cookies_across_the_journey(start_guard: StartGuard) -> None:
    issued: set[str] = set()
    presented: list[str] = []

    async def event(request: web.Request) -> web.Response:
        sid = f"s{len(issued)}"
        issued.add(sid)
        response = web.Response(text="event")
        response.set_cookie("sid", sid)
        response.set_cookie("promo", "spring", path="/")
        return response

    async def cart(request: web.Request) -> web.Response:
        presented.append(request.cookies.get("sid", ""))
        ok = request.cookies.get("sid") in issued and request.cookies.get("promo") == "spring"
        return web.Response(status=200 if ok else 400, text="cart")

    app = web.Application()
    app.router.add_get("/event", event)
    app.router.add_get("/cart", cart)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        backend = f"backends:\n  - {{name: shop, url: 'http://127.0.0.1:{port}', max_active: 50}}\n"
        guard = await start_guard(backend)
        stats, _ = await run(
            f"{guard.url}/event", Shape(rate=40, duration=0.5), paths=("/event", "/cart")
        )
    finally:
        await runner.cleanup()
    assert stats.arrivals == 20
    assert stats.admitted == 40 and stats.done == 20 and not stats.errors
    assert sorted(presented) == sorted(issued)  # each shopper brought back its own cookie


async def test_retry_after_is_honoured_and_counted_as_queued(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    """Ceiling 2, 0.5 s per request, 4 shoppers in 0.5 s: two wait for Retry-After (1 s)."""
    was = await start_was(workers=50, service_time=0.5)
    guard = await start_guard("retry_after: 1s\n" + backends_yaml(was, max_active=2))
    stats, records = await run(
        f"{guard.url}/event", Shape(rate=8, duration=0.5), patience=5.0, max_retries=3
    )
    assert stats.arrivals == 4
    assert stats.waiting >= 1 and stats.queued >= 1
    assert stats.done == 4 and stats.gave_up == 0
    by_shopper: dict[int, list[Record]] = {}
    for record in records:
        by_shopper.setdefault(record[0], []).append(record)
    retries = 0
    for attempts in by_shopper.values():
        for before, after in itertools.pairwise(attempts):
            retry_after = before[7]
            assert before[6] == 503 and retry_after == 1.0
            # sent no earlier than the refusal's arrival plus the advertised delay
            assert after[4] >= before[5] + retry_after
            assert after[4] - before[5] < retry_after + 0.5  # and not much later
            retries += 1
    assert retries == stats.waiting
    assert min(stats.waits) >= 1.0  # a queued shopper waited at least one Retry-After


async def test_latency_runs_from_the_due_time_not_the_send_time(start_was: StartWas) -> None:
    """One connection, 10 arrivals in 0.5 s, 0.1 s each: the later ones wait for the
    connection. Measured from send time they would all look like 0.1 s."""
    was = await start_was(workers=10, service_time=0.1)
    stats, _ = await run(f"{was.url}/item", Shape(rate=20, duration=0.5), connections=1)
    assert stats.admitted == 10
    assert max(stats.latency) > 0.5  # the last one was due at 0.45 s and done after 1.0 s
    assert max(stats.lag) > 0.4  # and surge says it sent late


def test_non_loopback_targets_are_refused() -> None:
    for url in ("http://192.0.2.10:8000/", "http://[2001:db8::1]/event"):
        with pytest.raises(TargetError, match="not a loopback address"):
            resolve_target(url)
    assert resolve_target("http://localhost:9/x?y=1").path == "/x?y=1"
    with pytest.raises(TargetError, match="http://"):
        resolve_target("https://127.0.0.1/")


async def guard_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "surge", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_refuses_a_remote_target_and_reports_json(start_was: StartWas) -> None:
    code, out, err = await guard_cli("http://192.0.2.10/", "--duration", "1s")
    assert code == 2 and out == ""
    assert "not a loopback address" in err and "--allow-remote" in err

    was = await start_was(workers=20, service_time=0.0)
    code, out, err = await guard_cli(
        f"{was.url}/a", "--then", "/b", "--rate", "30/s", "--duration", "1s", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["arrivals"] == 30 and doc["admitted"] == 60 and doc["errors"] == 0
    assert doc["shoppers"]["done"] == 30 and doc["trustworthy"] is True
    assert (await was.stats())["served"] == 60
