"""Queue: a surge of shoppers waiting in a room, against guard's proxied rate.

guard with a room (admit_rate 1/m: the line does not move during the run) in front of the
nginx backend. Two modes, each one wrk run of 64 connections:

- "polling": every request is a queued shopper's `GET /__guard/queue?room=sale` with its
  place (X-Guard-Place): verify the token, compute position and ETA, answer JSON (200);
- "arriving": every request is a new shopper without a token on the room's rule: a new
  place is issued and signed, the queue JSON answered with 429.

The proxied row is guard (same config, same core) forwarding /event/item/1 to the backend
on a rule without a room. Target (issue 11): refused + queued requests per second per core
at least 1.5x the proxied rate.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from common import HOST, free_port, write_guard_config
from harness import Bench, Target, rotated, try_start
from report import fmt, md_table, median
from wrk import measure

from guard.tools.launch import guard_command

ROOM = {
    "name": "sale",
    "admit_rate": "1/m",
    "place_hold": "10m",
    "refresh_min": "1s",
    "refresh_max": "30s",
}
MODES = ("proxied", "polling", "arriving")
TARGET_RATIO = 1.5
Samples = dict[str, list[dict[str, Any]]]


def run(b: Bench) -> str:
    started = try_start(b, "guard-queue", lambda: start_room_guard(b))
    if isinstance(started, str):
        return f"## Queue\n\nn/a: guard {started}\n"
    place = take_place(started.url)
    samples = measure_rounds(b, started, place)
    b.data["queue"] = samples
    return (
        "## Queue\n\n"
        "guard with a waiting room (admit_rate 1/m, so the line stands still), 64 wrk "
        "connections: queued shoppers polling `/__guard/queue` with their place, and new "
        "shoppers each issued a place (429 + queue JSON), against guard proxying "
        f"/event/item/1 in the same process. Target: at least {TARGET_RATIO}x the proxied rate "
        "per core (1e6 / guard's CPU µs per request).\n\n"
        f"{table(samples)}\n"
    )


def start_room_guard(b: Bench) -> Target:
    port, admin_port = free_port(), free_port()
    workdir: Path = b.procs.workdir
    rules = [
        {"name": "event", "path": "/event/**"},
        {"name": "sale", "path": "/sale/**", "room": "sale"},
    ]
    path = write_guard_config(
        workdir / "guard-queue.yaml",
        port=port,
        admin_port=admin_port,
        backends=[b.backend_target()],
        rules=rules,
        access_log=workdir / "guard-queue-access.log",
    )
    cfg = yaml.safe_load(path.read_text())
    cfg["rooms"] = [ROOM]
    cfg.pop("waiting_page", None)  # the shipped page (common.py still names ./static)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ports = (port, admin_port)
    proc = b.procs.start_listening("guard-queue", guard_command(path), ports, b.proxy_cpu)
    return Target("guard-queue", f"http://{HOST}:{port}", proc)


def take_place(base: str) -> str:
    """The room's first shopper goes straight in; the second gets the place we poll with."""
    for _ in range(2):
        req = urllib.request.Request(base + "/sale/item", headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            place = e.headers.get("X-Guard-Place")
            if e.code == 429 and place:
                return str(place)
    raise RuntimeError("the room issued no place")


def measure_rounds(b: Bench, target: Target, place: str) -> Samples:
    urls = {
        "proxied": (target.url + "/event/item/1", ()),
        "polling": (target.url + "/__guard/queue?room=sale", (f"X-Guard-Place: {place}",)),
        "arriving": (target.url + "/sale/item", ("Accept: application/json",)),
    }
    samples: Samples = {m: [] for m in MODES}
    for r in range(b.args.rounds):
        for mode in rotated(list(MODES), r):
            url, headers = urls[mode]
            try:
                m = measure(url, b.args.duration, target.proc, cpus=b.load_cpu, headers=headers)
            except Exception as e:
                b.notes.append(f"queue/{mode} round {r + 1}: {e}")
                continue
            s = {"rps": m.wrk.rps, "non2xx": m.wrk.non2xx, "cpu_us": m.cpu_us_per_req}
            s["requests"] = m.wrk.requests
            samples[mode].append(s)
            b.log(f"  [queue {r + 1}/{b.args.rounds}] {mode:<9} {m.wrk.rps:>10,.0f} req/s")
    return samples


def table(samples: Samples) -> str:
    """req/s is what wrk got (wrk and nginx share the load core, so it can be the limit);
    per core is 1e6 / guard's CPU µs per request: the issue's target, ``TARGET_RATIO``."""
    proxied = median(s["rps"] for s in samples["proxied"])
    proxied_cpu = median(s["cpu_us"] for s in samples["proxied"])
    rows = []
    for mode in MODES:
        ss = samples[mode]
        if not ss:
            rows.append([mode, "n/a", "n/a", "n/a", "n/a"])
            continue
        rps = median(s["rps"] for s in ss)
        cpu = median(s["cpu_us"] for s in ss)
        if mode == "proxied":
            rows.append([mode, fmt(rps), fmt(cpu, ".1f"), "-", "-"])
            continue
        ratio = fmt(rps / proxied, ".2f", "x") if proxied and rps else "n/a"
        per_core = fmt(proxied_cpu / cpu, ".2f", "x") if proxied_cpu and cpu else "n/a"
        rows.append([mode, fmt(rps), fmt(cpu, ".1f"), ratio, per_core])
    headers = ["mode", "req/s (one core)", "CPU µs/req", "÷ proxied req/s", "per core ÷ proxied"]
    return md_table(headers, rows)
