"""Soak three guard instances in cluster mode (one Redis) above their shared ceilings, then
check that nothing leaked: per instance, in Redis, and at the WAS.

    .venv/bin/python bench/soak_cluster.py --duration 120      # appends to bench/results/soak.md

Setup (loopback, a temporary folder): redis-server (no persistence), one simulated WAS (40
workers, 20 ms), three `guard run` with the same config: site `max_active: 24`, backend
`max_active: 20`, a rule /event/** with `max_active: 8` and `rate: 100/s`, cluster section
(lease_ttl 2 s, heartbeat 250 ms). Load: three wrk processes with 32 / 12 / 4 connections
(uneven, like a balancer that is not), instance 0 and 2 on /shop/item/1, instance 1 on
/event/1.

Checks (exit status 1 when one fails): RSS flat per instance (median of the last 3 samples
within max(10 %, 8 MiB) of the first 3 after the warm-up); every gauge of every instance 0
after the load stops; the WAS never above the site ceiling; after SIGTERM (each instance
gives its leases back) every Redis total (the `tot` hash) and every allocation is 0; exit 0.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import http_json

from guard.cluster.scripts import Keys
from guard.tools.launch import Launched, Launcher, free_port, guard_command, was_command

SITE, BACKEND, RULE = 24, 20, 8
CONNECTIONS = (32, 12, 4)
PATHS = ("/shop/item/1", "/event/1", "/shop/item/2")
RESULTS = Path(__file__).resolve().parent / "results" / "soak.md"


def config(port: int, admin: int, was_port: int, redis_url: str) -> str:
    return f"""\
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
access_log: {{format: 'off'}}
max_active: {SITE}
timeouts: {{shutdown: 10s}}
backends:
  - {{name: was, url: 'http://127.0.0.1:{was_port}', max_active: {BACKEND}}}
rules:
  - {{name: event, path: /event/**, max_active: {RULE}, rate: 100/s, burst: 20}}
cluster: {{name: soak, redis: '{redis_url}', lease_ttl: 2s}}
"""


def rss(proc: Launched) -> int:
    return int(psutil.Process(proc.pid).memory_info().rss)


def gauges(admin: int) -> dict[str, int]:
    doc = http_json(f"http://127.0.0.1:{admin}/status")
    out = {"site": int(doc["site"]["active"])}
    out |= {f"backend {b['name']}": int(b["active"]) for b in doc["backends"]}
    out |= {f"rule {r['name']}": int(r["active"]) for r in doc["rules"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--sample", type=float, default=5.0)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args()
    wrk = shutil.which("wrk")
    server = shutil.which("redis-server")
    if wrk is None or server is None:
        sys.exit("needs wrk and redis-server (apt-get install wrk redis-server)")
    with tempfile.TemporaryDirectory(prefix="guard-soak-cluster-") as tmp:
        launcher = Launcher(Path(tmp))
        try:
            ok, lines = soak(args, launcher, wrk, server)
        finally:
            launcher.stop_all()
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with RESULTS.open("a") as f:
            f.write("\n" + text)
    sys.exit(0 if ok else 1)


def soak(
    args: argparse.Namespace, launcher: Launcher, wrk: str, server: str
) -> tuple[bool, list[str]]:
    redis_port, was_port = free_port(), free_port()
    redis_cmd = [server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    launcher.start_listening("redis", [*redis_cmd, "--appendonly", "no"], (redis_port,))
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    was_cmd = was_command(was_port, workers=40, service_time=0.02, name="was")
    launcher.start("was", was_cmd).wait_port(was_port)
    guards: list[tuple[Launched, int, int]] = []
    for i in range(3):
        port, admin = free_port(), free_port()
        cfg = Path(launcher.workdir) / f"guard-{i}.yaml"
        cfg.write_text(config(port, admin, was_port, redis_url))
        guards.append(
            (launcher.start_listening(f"guard-{i}", guard_command(cfg), (port, admin)), port, admin)
        )
    loads = [
        subprocess.Popen(
            [wrk, "-t1", f"-c{c}", f"-d{args.duration:.0f}s", f"http://127.0.0.1:{port}{path}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for (_, port, _), c, path in zip(guards, CONNECTIONS, PATHS, strict=True)
    ]
    warmup = min(30.0, 0.2 * args.duration)
    started = time.monotonic()
    samples: list[list[int]] = [[] for _ in guards]
    while any(w.poll() is None for w in loads):
        time.sleep(args.sample)  # a sampling interval, not a wait for a condition
        if time.monotonic() - started >= warmup and all(w.poll() is None for w in loads):
            for i, (proc, _, _) in enumerate(guards):
                samples[i].append(rss(proc))
    requests = [_requests(w.communicate()[0]) for w in loads]
    checks = [*_rss_checks(samples), _gauge_check(guards)]
    was = http_json(f"http://127.0.0.1:{was_port}/__was/stats")
    peak = was["max_seen_active"]
    detail = f"peak {peak} (ceiling {SITE}), served {was['served']}"
    checks.append(("WAS never above the site ceiling", peak <= SITE, detail))
    client = redis.Redis(port=redis_port, decode_responses=True)
    checks += _stop_and_check_redis(guards, client)
    return _report(args, checks, requests, client.info("memory")["used_memory_human"])


Check = tuple[str, bool, str]


def _rss_checks(samples: list[list[int]]) -> list[Check]:
    checks = []
    for i, ss in enumerate(samples):
        first, last = statistics.median(ss[:3]), statistics.median(ss[-3:])
        allowed = max(0.1 * first, 8 * 2**20)
        mib = f"{first / 2**20:.1f} -> {last / 2**20:.1f} MiB"
        detail = f"{mib} (allowed +{allowed / 2**20:.1f}), {len(ss)} samples"
        checks.append((f"RSS flat, instance {i}", last - first <= allowed, detail))
    return checks


def _gauge_check(guards: list[tuple[Launched, int, int]]) -> Check:
    deadline = time.monotonic() + 15
    while True:
        seen = [gauges(admin) for _, _, admin in guards]
        if all(v == 0 for g in seen for v in g.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling with a deadline
    nonzero = {f"{i}:{k}": v for i, g in enumerate(seen) for k, v in g.items() if v}
    return ("gauges 0 after the load", not nonzero, str(nonzero or "every instance, all 0"))


def _stop_and_check_redis(guards: list[tuple[Launched, int, int]], client: Any) -> list[Check]:
    """SIGTERM every instance (each gives its leases back), then read Redis's totals."""
    keys = Keys.of("soak")
    idle = {k: int(v) for k, v in client.hgetall(keys.tot).items()}
    for proc, _, _ in guards:
        proc.signal(signal.SIGTERM)
    codes = [proc.popen.wait(30) for proc, _, _ in guards]
    tot = {k: int(v) for k, v in client.hgetall(keys.tot).items()}
    held = client.hgetall(keys.held)
    allocs = {k: int(v) for k, v in held.items() if "|" in k and "|d|" not in k}
    zero = all(v == 0 for v in tot.values()) and all(v == 0 for v in allocs.values())
    detail = f"tot after stop {tot}; while idle, before stop {idle} (headroom)"
    return [
        ("Redis totals 0 after stop", zero, detail),
        ("exit 0 on SIGTERM", codes == [0, 0, 0], f"exit codes {codes}"),
    ]


def _requests(wrk_output: str) -> str:
    for line in wrk_output.splitlines():
        if "requests in" in line:
            return line.strip()
    return "?"


def _report(
    args: argparse.Namespace, checks: list[Check], requests: list[str], redis_mem: str
) -> tuple[bool, list[str]]:
    ok = all(c[1] for c in checks)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    conns, py = "/".join(map(str, CONNECTIONS)), sys.version.split()[0]
    lines = [
        f"### Cluster soak {now}: {'PASS' if ok else 'FAIL'}",
        "",
        f"- three instances, one Redis, {args.duration:.0f} s; wrk {conns} connections on"
        f" {', '.join(PATHS)}; CPython {py}, {psutil.cpu_count()} CPUs (shared with other work)",
        *(f"- instance {i}: {r}" for i, r in enumerate(requests)),
        f"- Redis used_memory at the end: {redis_mem}",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *(f"| {name} | {'ok' if good else 'FAIL'} | {detail} |" for name, good, detail in checks),
    ]
    return ok, lines


if __name__ == "__main__":
    main()
