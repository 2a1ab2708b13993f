"""Cluster mode: three guard instances on one Redis in front of one slow simulated WAS.

The WAS has CEILING workers and holds each request SERVICE seconds, so it serves at most
CEILING / SERVICE requests per second; the guards share `max_active: CEILING` (cluster
mode). Three `guard surge` processes (open loop, Poisson, no retries) load the instances
unevenly (70 / 20 / 10) at 0.9x and 1.5x that capacity. Reported: utilisation of the
ceiling (the WAS's own concurrency, sampled), its peak, refusals, Redis calls per
admission (guard_cluster_lease_calls_total), and the latency of admitted requests against
one guard without cluster mode under the same total load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import HOST, ROOT, bench_rules, free_port, http_get, http_json, write_guard_config
from harness import Bench
from report import fmt, md_table

from guard.tools.launch import guard_command, was_command

CEILING, SERVICE = 48, 0.2  # WAS workers = the ceiling; capacity 240 req/s
CAPACITY = CEILING / SERVICE
SPLIT = (0.7, 0.2, 0.1)
DURATION = 8.0
PATH = "/event/item/1"


def run(b: Bench) -> str:
    redis_url = start_redis(b)
    if redis_url is None:
        return "## Cluster\n\nn/a: redis-server not installed\n"
    was_url = start_was(b)
    cluster = [start(b, f"guard-cl{i}", was_url, redis_url) for i in range(3)]
    single = start(b, "guard-single", was_url, None)
    rows, data = [], {}
    for load in (0.9, 1.5):
        got = measure(b, cluster, was_url, load)
        base = measure(b, [single], was_url, load)
        data[f"{load}x"] = {"cluster": got, "single": base}
        rows.append(row(f"{load}x, 3 instances", got, base))
        rows.append(row(f"{load}x, 1 instance (no cluster)", base, None))
    b.data["cluster"] = data
    headers = [
        "load",
        "utilisation",
        "WAS peak",
        "refused",
        "shares admitted (70/20/10)",
        "lease calls / admission (/s per instance)",
        "p50 / p99 ms (admitted)",
        "added p50 / p99 ms",
    ]
    return (
        "## Cluster\n\n"
        f"Three guard instances on one Redis share `max_active: {CEILING}` in front of a "
        f"simulated WAS ({CEILING} workers, {SERVICE * 1000:.0f} ms per request: "
        f"{CAPACITY:.0f} req/s). Three `guard surge` processes, Poisson arrivals, no retries, "
        f"{DURATION:.0f} s, split 70/20/10; compared with one guard (no cluster) taking the "
        f"whole load.\n\n{md_table(headers, rows)}\n"
    )


def start_redis(b: Bench) -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    b.procs.start_listening("redis", [*cmd, "--dir", str(b.procs.workdir)], (port,))
    return f"redis://{HOST}:{port}/0"


def start_was(b: Bench) -> str:
    port = free_port()
    cmd = was_command(port, workers=CEILING, service_time=SERVICE, name="was-cluster")
    was = b.procs.start("was-cluster", cmd, None, env={"PYTHONPATH": str(ROOT)})
    was.wait_port(port)
    return f"http://{HOST}:{port}"


def start(b: Bench, name: str, was_url: str, redis_url: str | None) -> dict[str, Any]:
    port, admin = free_port(), free_port()
    cfg = write_guard_config(
        b.procs.workdir / f"{name}.yaml",
        port=port,
        admin_port=admin,
        backends=[{"name": "was", "url": was_url, "max_active": 10000}],
        rules=bench_rules(5),
        access_log=None,
    )
    text = cfg.read_text() + f"max_active: {CEILING}\n"
    if redis_url is not None:
        text += f"cluster: {{name: bench, redis: '{redis_url}'}}\n"
    cfg.write_text(text)
    b.procs.start_listening(name, guard_command(cfg), (port, admin))
    return {"url": f"http://{HOST}:{port}", "admin": f"http://{HOST}:{admin}"}


def measure(b: Bench, guards: list[dict[str, Any]], was_url: str, load: float) -> dict[str, Any]:
    http_json(was_url + "/__was/reset", method="POST")
    calls_before = sum(lease_calls(g) for g in guards)
    shares = SPLIT if len(guards) == 3 else (1.0,)
    sampler = Sampler(was_url)
    sampler.start()
    procs = [surge(g["url"], load * CAPACITY * s) for g, s in zip(guards, shares, strict=True)]
    results = [json.loads(p.communicate()[0]) for p in procs]
    sampler.stop()
    calls = sum(lease_calls(g) for g in guards) - calls_before
    admitted = sum(r["admitted"] for r in results)
    requests = sum(r["requests"] for r in results)
    was_peak = http_json(was_url + "/__was/stats")["max_seen_active"]
    got = {
        "utilisation": sampler.mean() / CEILING,
        "was_peak": was_peak,
        "refused": 1 - admitted / requests if requests else 0.0,
        "shares": [r["admitted"] / r["requests"] if r["requests"] else 0.0 for r in results],
        "calls_per_admission": calls / admitted if admitted and len(guards) == 3 else None,
        "calls_per_s": calls / DURATION / len(guards) if len(guards) == 3 else None,
        "p50": max(r["latency_ms"]["p50"] for r in results),
        "p99": max(r["latency_ms"]["p99"] for r in results),
        "surge": results,
    }
    b.log(f"  [cluster {load}x, {len(guards)} guards] {json.dumps(got)[:300]}")
    return got


def surge(url: str, rate: float) -> subprocess.Popen[str]:
    guard = str(Path(sys.executable).parent / "guard")
    cmd = [guard, "surge", url + PATH, "--rate", f"{rate:.1f}", "--duration", f"{DURATION}s"]
    cmd += ["--arrivals", "poisson", "--max-retries", "0", "--browsers", "0", "--json"]
    return subprocess.Popen([*cmd, "--quiet"], stdout=subprocess.PIPE, text=True)


def lease_calls(g: dict[str, Any]) -> float:
    _, body = http_get(g["admin"] + "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("guard_cluster_lease_calls_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Sampler(threading.Thread):
    """The WAS's own concurrency every 20 ms (its /__was/stats), in a thread."""

    def __init__(self, was_url: str) -> None:
        super().__init__(daemon=True)
        self.url = was_url + "/__was/stats"
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        time.sleep(1.0)  # the first second is the leases growing: not the steady state
        while not self.done.wait(0.02):
            self.samples.append(http_json(self.url)["active"])

    def stop(self) -> None:
        self.done.set()
        self.join()

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


def row(label: str, got: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    calls = got["calls_per_admission"]
    added = "-"
    if base is not None:
        added = f"{got['p50'] - base['p50']:+.1f} / {got['p99'] - base['p99']:+.1f}"
    return [
        label,
        fmt(got["utilisation"], ".3f"),
        f"{got['was_peak']} (ceiling {CEILING})",
        f"{got['refused'] * 100:.1f} %",
        " / ".join(f"{s:.2f}" for s in got["shares"]),
        "-" if calls is None else f"{calls:.3f} ({got['calls_per_s']:.1f})",
        f"{got['p50']:.1f} / {got['p99']:.1f}",
        added,
    ]
