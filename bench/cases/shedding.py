"""Shedding: guard refusing in front of a slow simulated WAS, against its proxied rate.

guard with backend max_active CEILING in front of a simulated WAS (64 workers, 200 ms per
request); the backend's concurrency is checked both from guard's /status and from the
WAS's own max_seen_active."""

from __future__ import annotations

from typing import Any

from common import HOST, ROOT, StatusPoller, free_port, http_json
from harness import Bench, Target, rotated, try_start
from report import fmt, md_table, median

from guard.tools.launch import was_command

CEILING = 8
MODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "proxied (fast backend)": ("fast", ()),
    "refusing, JSON": ("shed", ()),
    "refusing, waiting page": ("shed", ("Accept: text/html,application/xhtml+xml",)),
}
Samples = dict[str, list[dict[str, Any]]]


def run(b: Bench) -> str:
    was_url = start_slow_was(b)
    fast = try_start(b, "guard-fast", lambda: b.start_guard("guard-fast"))
    slow_backend = [{"name": "was-slow", "url": was_url, "max_active": CEILING}]
    shed = try_start(b, "guard-shed", lambda: b.start_guard("guard-shed", backends=slow_backend))
    if isinstance(fast, str) or isinstance(shed, str):
        msg = fast if isinstance(fast, str) else shed
        return f"## Shedding\n\nn/a: guard {msg}\n"
    samples = measure_rounds(b, fast, shed, was_url)
    b.data["shedding"] = samples
    return (
        "## Shedding\n\n"
        f"guard with backend max_active {CEILING} in front of a simulated WAS (64 workers, "
        "200 ms per request), 64 wrk connections: all but 8 are refused at once. "
        "The proxied row is guard in front of the fast nginx backend, same run.\n\n"
        f"{table(b, samples)}\n"
    )


def start_slow_was(b: Bench) -> str:
    port = free_port()
    cmd = was_command(port, workers=64, service_time=0.2, name="was-slow")
    was = b.procs.start("was-slow", cmd, b.load_cpu, env={"PYTHONPATH": str(ROOT)})
    was.wait_port(port)
    return f"http://{HOST}:{port}"


def measure_rounds(b: Bench, fast: Target, shed: Target, was_url: str) -> Samples:
    samples: Samples = {m: [] for m in MODES}
    for r in range(b.args.rounds):
        for mode in rotated(list(MODES), r):
            which, headers = MODES[mode]
            try:
                if which == "shed":
                    s = shed_sample(b, shed, headers, was_url)
                else:
                    s = b.wrk_sample(fast, headers)
            except Exception as e:
                b.notes.append(f"shedding/{mode} round {r + 1}: {e}")
                continue
            s["refused_rps"] = s["non2xx"] / s["seconds"]
            s["admitted_rps"] = (s["requests"] - s["non2xx"]) / s["seconds"]
            samples[mode].append(s)
            b.log(
                f"  [shedding {r + 1}/{b.args.rounds}] {mode:<24} {s['rps']:>10,.0f} req/s, "
                f"refused {s['refused_rps']:,.0f}/s, admitted {s['admitted_rps']:,.0f}/s"
            )
    return samples


def shed_sample(b: Bench, shed: Target, headers: tuple[str, ...], was_url: str) -> dict[str, Any]:
    """One wrk run against the refusing guard, watching the backend's concurrency from
    guard's /status (polled meanwhile) and from the WAS's own high-water mark."""
    assert shed.guard is not None
    http_json(was_url + "/__was/reset", method="POST")
    with StatusPoller(shed.guard) as poll:
        s = b.wrk_sample(shed, headers, refusals_expected=True)
    s["status_max_backend"] = max(poll.max_backend.values(), default=None)
    s["status_polls"] = poll.polls
    s["was_max_seen"] = http_json(was_url + "/__was/stats")["max_seen_active"]
    return s


def table(b: Bench, samples: Samples) -> str:
    proxied = median(s["rps"] for s in samples["proxied (fast backend)"])
    rows = [row(b, mode, samples[mode], proxied) for mode in MODES]
    headers = [
        "mode",
        "req/s",
        "refusals/s",
        "admitted/s",
        "refusals ÷ guard proxied req/s",
        "CPU µs/req",
        f"backend max active (ceiling {CEILING})",
    ]
    return md_table(headers, rows)


def row(b: Bench, mode: str, ss: list[dict[str, Any]], proxied: float | None) -> list[str]:
    if not ss:
        return [mode] + ["n/a"] * 6
    refused = median(s["refused_rps"] for s in ss)
    shed_mode = MODES[mode][0] == "shed"
    ratio = fmt(refused / proxied, ".2f", "x") if refused and proxied else "n/a"
    was_max = max(s.get("was_max_seen", 0) for s in ss) if shed_mode else None
    st_max = max((s.get("status_max_backend") or 0) for s in ss) if shed_mode else None
    if was_max is not None and (was_max > CEILING or (st_max or 0) > CEILING):
        b.notes.append(
            f"shedding/{mode}: backend active reached {was_max} (WAS) / {st_max} (/status), "
            f"above max_active {CEILING}!"
        )
    elif was_max is not None and was_max < CEILING:
        b.notes.append(f"shedding/{mode}: backend peaked at {was_max}, below its ceiling")
    return [
        mode,
        fmt(median(s["rps"] for s in ss)),
        fmt(refused),
        fmt(median(s["admitted_rps"] for s in ss)),
        ratio if shed_mode else "-",
        fmt(median(s["cpu_us"] for s in ss), ".1f"),
        "-" if was_max is None else f"{was_max} (WAS) / {st_max} (/status)",
    ]
