"""`guard rehearse` on a log guard really wrote: a surge ramped past a simulated WAS's capacity.

The WAS has 8 workers at 50 ms (160 req/s at most); guard lets up to 32 requests through to
it, so past 8 the extra ones queue inside the WAS: throughput stops rising while concurrency
keeps growing. That knee is the worker count, and rehearse must find it from the log alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from guard.tools.surge import surge
from guard.tools.surge_args import SurgeOptions, resolve_target
from guard.tools.surge_schedule import Shape
from tests.support.servers import StartGuard, StartWas, backends_yaml, read_access_log

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 8


async def rehearse_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "rehearse", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_suggested_ceiling_is_the_was_worker_count(
    start_was: StartWas, start_guard: StartGuard, tmp_path: Path
) -> None:
    was = await start_was(workers=WORKERS, service_time=0.05)
    guard = await start_guard(backends_yaml(was, max_active=4 * WORKERS))
    target = resolve_target(f"{guard.url}/event")
    shape = Shape(rate=320, duration=4, ramp=3)  # passes 160/s, the WAS's limit, at 1.5 s
    options = SurgeOptions(shape=shape, paths=("/event",), patience=0.0, max_retries=0)
    stats, _ = await surge(options, target)
    assert stats.admitted > 300 and stats.waiting > 0  # the ceiling of 32 was reached too
    log = guard.config_path.parent / "access.log"
    assert len(read_access_log(guard)) == stats.requests  # flushed: every request logged

    report = tmp_path / "report.html"
    config = str(guard.config_path)
    flags = ("--window", "0.25", "--headroom", "0", "--json", "--html", str(report))
    code, out, err = await rehearse_cli("-c", config, "--log", str(log), *flags)
    assert code == 0, err
    doc = json.loads(out)
    knee = next(k for k in doc["knees"] if k["kind"] == "backend" and k["name"] == was.name)
    assert knee["saturated"], knee
    # guard's own view of N includes its hop to the WAS, so the knee sits at or a bit above 8
    assert 0.8 * WORKERS <= knee["suggested_max_active"] <= 1.2 * WORKERS, knee
    assert doc["admitted"] + doc["refused"] == stats.requests
    page = report.read_text()
    assert page.count("<svg") >= 2 and "<script" not in page and "http://www.w3.org" in page

    code, out, err = await rehearse_cli("-c", config, "--log", str(log), "--window", "0.25")
    assert code == 0, err
    assert f"backend {was.name}: knee N≈" in out and "Little's law" in out
    assert "conservative" in out
