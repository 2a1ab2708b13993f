"""The live view's data over HTTP: /live/frames, the SSE stream, resume, limits, the gauge."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from guard.core.live import bucket_index
from tests.support.polling import poll_async
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml

LIVE = "live: {tick: 0.2s, age_bands: [0.3s, 0.8s], max_viewers: 2}\n"
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"


async def frames(guard: Guard, since: int = 0) -> dict[str, Any]:
    url = f"{guard.admin_url}/live/frames?since={since}"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Security-Policy"] == CSP
        return dict(await r.json())


def admitted(doc: dict[str, Any], rule: str) -> int:
    return sum(
        r["out"].get("admitted", 0) for f in doc["frames"] for r in f["rules"] if r["name"] == rule
    )


def hits(doc: dict[str, Any], rule: str) -> int:
    cells = [c for f in doc["frames"] for r in f["rules"] if r["name"] == rule for c in r["hit"]]
    return sum(c[1] for c in cells)


async def read_events(resp: aiohttp.ClientResponse, ticks: int) -> list[tuple[str, str | None]]:
    """(event, id) pairs until `ticks` tick events arrived."""
    out: list[tuple[str, str | None]] = []
    kind, ident = "message", None
    while sum(1 for k, _ in out if k == "tick") < ticks:
        line = (await resp.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
        elif line == "" and kind != "message":
            out.append((kind, ident))
            kind, ident = "message", None
    return out


async def test_frames_count_every_admitted_request_in_its_latency_bucket(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was) + LIVE + "rules:\n  - {name: event, path: /event/**, max_active: 5}\n"
    )
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            async with s.get(f"{guard.url}/event/a?ms=40") as r:
                assert r.status == 200

    async def counted() -> bool:
        doc = await frames(guard)
        return admitted(doc, "event") == 6 and hits(doc, "event") == 6

    await poll_async(counted, 5.0, "the frames never counted the 6 admitted requests")
    doc = await frames(guard)
    hello = doc["hello"]
    assert hello["v"] == 1 and hello["type"] == "hello"
    assert len(hello["buckets"]) == 66 and hello["bands"] == [0.3, 0.8]
    assert hello["config"]["sha256"] == (await guard.status())["config"]["sha256"]
    assert [r["name"] for r in hello["rules"]] == ["event", "default"]
    seqs = [f["seq"] for f in doc["frames"]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    cells = [c for f in doc["frames"] for r in f["rules"] if r["name"] == "event" for c in r["hit"]]
    assert sum(c[1] for c in cells) == 6 and sum(c[2] for c in cells) == 0
    # 40 ms of WAS time plus the proxy: within a bucket or two of 40 ms, never below
    low = bucket_index(40_000)
    assert all(low <= c[0] <= low + 2 for c in cells), cells
    later = await frames(guard, since=seqs[-1])
    assert all(f["seq"] > seqs[-1] for f in later["frames"])


async def test_stream_resumes_after_last_event_id_without_gap_or_duplicate(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + LIVE)
    url = f"{guard.admin_url}/live/stream"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream"
            assert r.headers["Content-Security-Policy"] == CSP
            assert (await r.content.readline()).startswith(b"retry: ")
            first = await read_events(r, 3)
        assert first[0] == ("hello", None)
        ids = [int(i) for k, i in first if k == "tick" and i is not None]
        seen = ids[-1]
        # Disconnected: ticks go on. Resuming after `seen` gets every later one, once.
        async with s.get(url, headers={"Last-Event-ID": str(seen)}) as r:
            await r.content.readline()
            again = await read_events(r, 5)
    resumed = [int(i) for k, i in again if k == "tick" and i is not None]
    assert resumed == list(range(seen + 1, seen + 1 + len(resumed)))


async def test_viewer_cap_answers_503(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + LIVE)
    url = f"{guard.admin_url}/live/stream"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as a, s.get(url) as b:
            assert (a.status, b.status) == (200, 200)
            await read_events(a, 1)
            await read_events(b, 1)
            async with s.get(url) as c:
                assert c.status == 503
        # Both left: the next viewer is served again.
        async with s.get(url) as d:
            assert d.status == 200


async def test_distinct_refused_clients_estimate(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(
        backends_yaml(was, max_active=1) + LIVE + "trusted_proxies: [127.0.0.0/8]\n"
    )
    async with aiohttp.ClientSession() as s:
        hold = asyncio.create_task(s.get(f"{guard.url}/__was/hold").__aenter__())
        await was.wait_active(1)
        for round_ in range(3):  # 40 shoppers, each refused three times
            for i in range(40):
                headers = {"X-Forwarded-For": f"198.51.100.{i}", "Accept": "application/json"}
                async with s.get(f"{guard.url}/x?r={round_}", headers=headers) as r:
                    assert r.status == 503
        await was.release()
        (await hold).release()

    async def estimated() -> bool:
        text = await guard.metrics()
        line = next(ln for ln in text.splitlines() if ln.startswith("guard_refused_clients_est"))
        return 'window="1m"' in text and abs(_gauge(text, "1m") - 40) <= 2 and bool(line)

    await poll_async(estimated, 5.0, "guard_refused_clients_estimate{window=1m} is not ~40")
    doc = await frames(guard)
    assert max(f["refused_clients"]["1m"] for f in doc["frames"]) in range(38, 43)
    assert sum(r["out"].get("over_capacity", 0) for f in doc["frames"] for r in f["rules"]) == 120


def _gauge(text: str, window: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'guard_refused_clients_estimate{{window="{window}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


async def test_disabled_live_view_answers_404(start_was: StartWas, start_guard: StartGuard) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + "live: {enabled: false}\n")
    async with aiohttp.ClientSession() as s:
        for path in ("/live", "/live/frames", "/live/stream", "/live/static/live.js"):
            async with s.get(f"{guard.admin_url}{path}") as r:
                assert r.status == 404, path


async def test_static_files_have_etag_and_max_age(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was) + LIVE)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{guard.admin_url}/live") as r:
            assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
            page = await r.text()
        assert "<script>" not in page and "<style" not in page and " style=" not in page
        url = f"{guard.admin_url}/live/static/uPlot.iife.min.js"
        async with s.get(url) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "max-age=3600"
            etag = r.headers["ETag"]
        async with s.get(url, headers={"If-None-Match": etag}) as r:
            assert r.status == 304
        for bad in ("../live.py", "nope.js", "index.html", "VENDORED.md"):
            async with s.get(f"{guard.admin_url}/live/static/{bad}") as r:
                assert r.status == 404, bad
        async with s.get(f"{guard.admin_url}/live/frames?since=x") as r:
            assert r.status == 400
    json.dumps({})  # keep the json import honest for readers: frames are plain JSON
