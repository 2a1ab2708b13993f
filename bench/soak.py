"""Soak guard for a fixed time at a load above its ceilings, then check that nothing leaked.

The WAS and guard are started with guard/tools/launch.py (logs: <name>.log in the folder).

Run with ``make soak`` (5 minutes) or ``python bench/soak.py --duration 60``. Everything runs
on loopback, in a temporary folder (``--keep`` keeps it for a look at the logs).

What it sets up
  * two simulated WAS (``python -m guard.tools.was``), 10 worker slots and 20 ms service time each;
  * guard (``python -m guard.cli run -c soak.yaml``) with a generated config whose ceilings are
    far below the offered load: each backend ``max_active: 8``, site ``max_active: 14``, a rule
    ``/event/**`` with ``max_active: 6`` and ``rate: 100/s``, a ``per_client`` rule
    ``/coupon/**`` at ``6/m`` keyed on a random ``X-Forwarded-For`` out of 2000 addresses
    (``trusted_proxies: [127.0.0.0/8]``, ``max_tracked_clients: 5000``), JSON access log;
  * load: ``wrk`` (installed with ``apt-get install -y wrk`` when missing, if possible; else a
    Python load generator, also forced by ``--loader python``), ``--connections`` keep-alive
    connections (default 64), each pausing ``--delay-ms`` (default 20) between requests:
    about 2500 requests/s offered against roughly 700/s of admitted capacity. Paths: 60 %
    ``/shop/item/N`` (default rule), 25 % ``/event/N``, 15 % ``/coupon/N``; half of the
    requests ask for HTML (waiting page), half for JSON.

What it measures
  Every ``--sample`` seconds (default 2, less for short runs so that at least 10 samples
  follow the warm-up): guard's RSS and open file descriptors (psutil).
  The first ``--warmup`` seconds (default: 20 % of the duration, at most 30 s) are excluded.

What it asserts (exit status 1 when any check fails)
  * RSS flat: the median of the last 3 samples under load is within
    ``max(10 %, 8 MiB)`` of the median of the first 3 samples after the warm-up;
  * open fds flat: same comparison, tolerance ``max(10 %, 16)`` (idle upstream connections
    may still settle a little after the warm-up; a leak over minutes is thousands);
  * gauges exactly 0 once the load stops: the admin ``/status`` site, every backend and every
    rule report ``active == 0`` (polled for up to 15 s: held slots end with the WAS's work);
  * zero 5xx made by guard other than its deliberate refusals: in the access log, every line
    whose outcome is not ``over_capacity``/``over_rate`` and whose status is >= 500 (e.g. an
    admitted request answered 502/504) is a failure. The simulated WAS never answers 5xx;
  * guard exits 0 on SIGTERM at the end.

It prints a short markdown block and appends it to ``bench/results/soak.md``
(``--no-append`` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from guard.tools.launch import (
    START_TIMEOUT,
    Launched,
    Launcher,
    free_port,
    guard_command,
    was_command,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "soak.md"
MIB = 1024 * 1024
RSS_TOLERANCE = (0.10, 8 * MIB)  # fraction of the post-warm-up level, absolute floor
FD_TOLERANCE = (0.10, 16)
DELIBERATE = {"over_capacity", "over_rate"}
CLIENTS = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(2000)]

WRK_SCRIPT = """
local clients = {%(clients)s}
local accepts = {"text/html,application/xhtml+xml", "application/json"}
init = function(args) math.randomseed(os.time() + math.random(1000000)) end
request = function()
  local r = math.random(100)
  local path
  if r <= 55 then path = "/shop/item/" .. math.random(100000)
  elseif r <= 75 then path = "/event/" .. math.random(1000)
  elseif r <= 85 then path = "/sale/" .. math.random(1000)
  else path = "/coupon/" .. math.random(1000) end
  local headers = {}
  headers["X-Forwarded-For"] = clients[math.random(#clients)]
  headers["Accept"] = accepts[math.random(2)]
  return wrk.format("GET", path, headers)
end
delay = function() return %(delay)d end
"""


@dataclass
class Sample:
    t: float
    rss: int
    fds: int
    phase: str  # warmup | load | idle


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    samples: list[Sample] = field(default_factory=list)
    loader: str = ""
    load_summary: str = ""
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)  # the load generator
    launcher: Launcher = field(init=False)

    def __post_init__(self) -> None:
        self.launcher = Launcher(self.tmp)


def start_was(run: Run, name: str) -> int:
    port = free_port()
    cmd = was_command(port, workers=10, service_time=0.02, name=name)
    run.launcher.start(name, cmd).wait_port(port)
    return port


def write_config(run: Run, port: int, admin: int, was_ports: list[int]) -> Path:
    page = run.tmp / "waiting.html"
    page.write_text("<!doctype html><title>Please wait</title><p>Please wait a moment.</p>\n")
    cfg = run.tmp / "soak.yaml"
    cfg.write_text(
        f"""\
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
waiting_page: waiting.html
access_log: {{format: json, path: access.log}}
max_active: 14
retry_after: 2s
trusted_proxies: [127.0.0.0/8]
limits: {{max_tracked_clients: 5000}}
timeouts: {{connect: 1s, read: 10s, shutdown: 10s}}
backends:
  - {{name: was-1, url: 'http://127.0.0.1:{was_ports[0]}', max_active: 8}}
  - {{name: was-2, url: 'http://127.0.0.1:{was_ports[1]}', max_active: 8}}
rules:
  - {{name: event, path: /event/**, max_active: 6, rate: 100/s, burst: 20}}
  - {{name: coupon, path: /coupon/**, rate: 6/m, burst: 2, per_client: true}}
  - {{name: sale, path: /sale/**, max_active: 4, room: sale}}
rooms:
  - {{name: sale, admit_rate: 20/s, place_hold: 2m}}
"""
    )
    return cfg


async def start_guard(run: Run, cfg: Path, admin: int) -> Launched:
    proc = run.launcher.start("guard", guard_command(cfg))
    await proc.wait_port_async(admin)
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as s:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{admin}/healthz") as r:
                    if r.status == 200:
                        return proc
            if time.monotonic() > deadline:
                raise SystemExit(f"guard not healthy in {START_TIMEOUT} s: see {proc.log}")
            await asyncio.sleep(0.1)


def find_wrk() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        wrk = shutil.which("wrk")
    return wrk


async def load_wrk(run: Run, wrk: str, port: int) -> None:
    script = run.tmp / "soak.lua"
    clients = ", ".join(f'"{c}"' for c in CLIENTS)
    script.write_text(WRK_SCRIPT % {"clients": clients, "delay": run.args.delay_ms})
    proc = await asyncio.create_subprocess_exec(
        wrk,
        "-t",
        "2",
        "-c",
        str(run.args.connections),
        "-d",
        f"{run.args.duration}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    run.procs.append(proc)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    (run.tmp / "wrk.out").write_text(text)
    keep = [
        line.strip()
        for line in text.splitlines()
        if re.search(r"requests in|Requests/sec|Socket errors|Non-2xx", line)
    ]
    run.load_summary = "; ".join(keep)


async def load_python(run: Run, port: int) -> None:
    """The fallback: the same mix from aiohttp, one task per connection."""
    rng = random.Random(1)
    counts: Counter[int] = Counter()
    errors = 0
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + run.args.duration
    delay = run.args.delay_ms / 1000

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < end:
            r = rng.randrange(100)
            if r < 55:
                path = f"/shop/item/{rng.randrange(100000)}"
            elif r < 75:
                path = f"/event/{rng.randrange(1000)}"
            elif r < 85:  # a waiting room: every cookieless request is a new place
                path = f"/sale/{rng.randrange(1000)}"
            else:
                path = f"/coupon/{rng.randrange(1000)}"
            headers = {
                "X-Forwarded-For": rng.choice(CLIENTS),
                "Accept": rng.choice(["text/html", "application/json"]),
            }
            try:
                async with s.get(url + path, headers=headers) as resp:
                    await resp.read()
                    counts[resp.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            await asyncio.sleep(delay)

    conn = aiohttp.TCPConnector(limit=run.args.connections)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        await asyncio.gather(*(worker(s) for _ in range(run.args.connections)))
    total = sum(counts.values())
    run.load_summary = (
        f"{total} requests in {run.args.duration}s, {total / run.args.duration:.0f} req/s, "
        f"statuses {dict(sorted(counts.items()))}, client errors {errors}"
    )


async def sample_until(run: Run, guard: psutil.Process, load: asyncio.Task[None]) -> None:
    started = time.monotonic()
    while not load.done():
        t = time.monotonic() - started
        phase = "warmup" if t < run.args.warmup else "load"
        with guard.oneshot():
            run.samples.append(Sample(t, guard.memory_info().rss, guard.num_fds(), phase))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(load), run.args.sample)
    await load  # re-raise a loader failure


async def gauges_zero(admin: int, timeout: float = 15.0) -> tuple[bool, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.get(f"http://127.0.0.1:{admin}/status") as r:
                doc = await r.json()
            actives = [doc["site"]["active"]]
            actives += [b["active"] for b in doc["backends"]]
            actives += [r["active"] for r in doc["rules"]]
            if all(a == 0 for a in actives):
                return True, doc
            if time.monotonic() > deadline:
                return False, doc
            await asyncio.sleep(0.2)


def scan_access_log(path: Path) -> tuple[Counter[tuple[str, int]], list[dict[str, Any]]]:
    by_outcome: Counter[tuple[str, int]] = Counter()
    failures: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for raw in f:
            line = json.loads(raw)
            outcome, status = line["outcome"], int(line["status"])
            by_outcome[(outcome, status)] += 1
            if status >= 500 and outcome not in DELIBERATE:
                failures.append(line)
    return by_outcome, failures


def flat(
    samples: list[Sample], attr: str, tolerance: tuple[float, float]
) -> tuple[bool, float, float, float]:
    """(ok, baseline, end, allowed growth) over the samples under load."""
    under = [getattr(s, attr) for s in samples if s.phase == "load"]
    if len(under) < 6:
        return False, 0.0, 0.0, 0.0
    baseline = statistics.median(under[:3])
    end = statistics.median(under[-3:])
    allowed = max(baseline * tolerance[0], tolerance[1])
    return end - baseline <= allowed, baseline, end, allowed


def slope_per_minute(samples: list[Sample], attr: str) -> float:
    pts = [(s.t, getattr(s, attr)) for s in samples if s.phase == "load"]
    if len(pts) < 2:
        return 0.0
    mt = statistics.fmean(t for t, _ in pts)
    mv = statistics.fmean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts) or 1.0
    return sum((t - mt) * (v - mv) for t, v in pts) / den * 60


async def soak(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="guard-soak-"))
    run = Run(args, tmp)
    try:
        return await _soak(run)
    finally:
        for proc in run.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        run.launcher.stop_all()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def _soak(run: Run) -> int:
    args = run.args
    was_ports = [start_was(run, "was-1"), start_was(run, "was-2")]
    port, admin = free_port(), free_port()
    cfg = write_config(run, port, admin, was_ports)
    guard_proc = await start_guard(run, cfg, admin)
    guard = psutil.Process(guard_proc.pid)

    wrk = None if args.loader == "python" else find_wrk()
    run.loader = f"wrk ({wrk})" if wrk else "python (aiohttp)"
    print(
        f"soak: {args.duration}s with {run.loader}, {args.connections} connections, "
        f"{args.delay_ms} ms between requests; guard pid {guard.pid}, folder {run.tmp}",
        file=sys.stderr,
    )
    coro = load_wrk(run, wrk, port) if wrk else load_python(run, port)
    load = asyncio.ensure_future(coro)
    await sample_until(run, guard, load)

    zero, status = await gauges_zero(admin)
    with guard.oneshot():
        idle = Sample(time.monotonic(), guard.memory_info().rss, guard.num_fds(), "idle")
    run.samples.append(idle)
    guard_proc.signal(signal.SIGTERM)
    try:
        code = await guard_proc.exit_code(20)
    except TimeoutError:
        code = -1
    by_outcome, failures = scan_access_log(run.tmp / "access.log")

    rss_ok, rss_base, rss_end, rss_allowed = flat(run.samples, "rss", RSS_TOLERANCE)
    fds_ok, fds_base, fds_end, fds_allowed = flat(run.samples, "fds", FD_TOLERANCE)
    total = sum(by_outcome.values())
    outcomes: Counter[str] = Counter()
    for (outcome, _), n in by_outcome.items():
        outcomes[outcome] += n
    refusals = sum(n for (o, s), n in by_outcome.items() if o in DELIBERATE)
    checks = {
        "RSS flat": rss_ok,
        "open fds flat": fds_ok,
        "gauges 0 at the end": zero,
        "no 5xx from guard besides refusals": not failures and total > 0,
        "exit 0 on SIGTERM": code == 0,
    }
    ok = all(checks.values())
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [
        f"### Soak {when}: {'PASS' if ok else 'FAIL'}",
        "",
        f"- duration {args.duration}s (warm-up {args.warmup:.0f}s), loader {run.loader}, "
        f"{args.connections} connections, {args.delay_ms} ms pause; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        f"- load: {run.load_summary}",
        f"- guard access log: {total} requests, {total / args.duration:.0f}/s; outcomes "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        + f"; deliberate refusals {refusals} ({refusals * 100 / max(total, 1):.1f} %)",
        f"- statuses: {', '.join(f'{o}/{s} {n}' for (o, s), n in sorted(by_outcome.items()))}",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        f"| RSS flat | {_mark(rss_ok)} | {rss_base / MIB:.1f} MiB after warm-up -> "
        f"{rss_end / MIB:.1f} MiB at the end (allowed +{rss_allowed / MIB:.1f}); "
        f"slope {slope_per_minute(run.samples, 'rss') / MIB:+.2f} MiB/min; "
        f"idle {idle.rss / MIB:.1f} MiB |",
        f"| open fds flat | {_mark(fds_ok)} | {fds_base:.0f} -> {fds_end:.0f} "
        f"(allowed +{fds_allowed:.0f}); idle {idle.fds} |",
        f"| gauges 0 at the end | {_mark(zero)} | site {status.get('site', {}).get('active')}, "
        + ", ".join(f"{b['name']} {b['active']}" for b in status.get("backends", []))
        + ", "
        + ", ".join(f"rule {r['name']} {r['active']}" for r in status.get("rules", []))
        + " |",
        f"| no 5xx from guard besides refusals | {_mark(not failures and total > 0)} | "
        f"{len(failures)} failures"
        + (f", first: {json.dumps(failures[0])}" if failures else "")
        + " |",
        f"| exit 0 on SIGTERM | {_mark(code == 0)} | exit code {code} |",
        "",
    ]
    block = "\n".join(lines)
    print(block)
    if not args.no_append:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(block + "\n")
    return 0 if ok else 1


def _mark(ok: bool) -> str:
    return "ok" if ok else "**FAIL**"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=300, help="seconds of load (default 300)")
    p.add_argument("--warmup", type=float, default=None, help="seconds (default 20%%, <= 30)")
    p.add_argument("--sample", type=float, default=2.0, help="seconds between samples")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--delay-ms", type=int, default=20, help="pause per connection per request")
    p.add_argument("--loader", choices=["auto", "python"], default="auto")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--no-append", action="store_true", help="do not append to soak.md")
    args = p.parse_args(argv)
    if args.duration < 10:
        p.error("--duration must be at least 10 seconds")
    if args.warmup is None:
        args.warmup = min(30.0, args.duration * 0.2)
    # At least 10 samples after the warm-up, so that "flat" compares real medians.
    args.sample = min(args.sample, (args.duration - args.warmup) / 10)
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
