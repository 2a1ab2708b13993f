"""guard's benchmark: guard side by side with nginx and a minimal aiohttp proxy, on loopback.

One command (from the repository root):

    make bench                 # = .venv/bin/python bench/run.py  (every case, ~8 minutes)

Options:

    --case NAME        throughput | shedding | rules | idle | workers | all (default all);
                       repeat the flag or give a comma list
    --rounds N         repeated interleaved rounds, medians reported (default 3)
    --duration S       seconds per wrk run (default 10)
    --setups LIST      throughput setups (default direct,nginx,guard,aiohttp)
    --rate R / --steady-duration S   steady-rate latency probe (default 1000 req/s for 5 s)
    --idle-conns N     idle keep-alive connections for the idle case (default 10000)
    --keep             keep the temp dir (configs, logs) and print its path

Quick check of the harness: `.venv/bin/python bench/run.py --case throughput --rounds 1
--duration 3 --setups direct,nginx`.

What it does. Installs nginx and wrk with apt-get if missing (sudo when not root). Starts a
backend: nginx, 1 worker, answering every path with a 1 KiB body. Then, for each round and
each setup in turn (the order rotates every round), runs wrk (1 thread, 64 keep-alive
connections, pinned with `taskset -c 0`) against the setup with the proxy pinned to core 1,
reads the proxy's CPU time (its whole process tree, psutil) before and after, and probes
latency at a steady 1,000 req/s with bench/steady.py (also on core 0). The backend sits on
core 0 beside the load generator while a proxy is measured, and on core 1 (the proxy's seat)
for "direct". Setups:

- direct:  wrk -> backend
- nginx:   nginx reverse proxy, 1 worker, upstream keep-alive 64, buffered access log
- guard:   `guard run -c <generated yaml>`: full policy (5 rules, the matched one with a
           ceiling and a rate far above the load; backend max_active 10000; JSON access log)
- aiohttp: bench/aiohttp_proxy.py, aiohttp server + ClientSession on uvloop (Python's floor)

Cases: `shedding` (backend max_active 8 in front of a slow simulated WAS: refusals per
second, JSON and waiting page, against guard's own proxied rate; the backend's concurrency is
checked both from guard's /status and from the WAS's own max_seen_active), `rules` (5 vs 500
rules), `idle` (RSS per idle keep-alive connection at 10,000 connections, guard, nginx and the
aiohttp proxy), `workers` (guard `workers: 2` vs 1 on all cores; "n/a" if unsupported).

Results: a markdown table of medians on stdout and in bench/results/latest.md (raw samples in
bench/results/latest.json). A benchmark, not a test: nothing here fails CI. Loopback only.
Noise on a 2 vCPU VM is +-10-15%: compare ratios from the same run, not runs across days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import (  # bench/ is sys.path[0] when run as a script
    BENCH,
    HOST,
    ROOT,
    Guard,
    Proc,
    Procs,
    StartFailed,
    StatusPoller,
    bench_rules,
    cpu_layout,
    ensure_tools,
    fmt,
    free_port,
    http_get,
    http_json,
    machine_info,
    md_table,
    measure,
    median,
    nginx_backend_conf,
    nginx_cmd,
    nginx_proxy_conf,
    raise_nofile,
    run_steady,
    run_wrk,
    start_guard,
    wait_port,
)

PATH = "/event/item/1"
CASES = ("throughput", "shedding", "rules", "idle", "workers")
SETUPS = ("direct", "nginx", "guard", "aiohttp")


@dataclass
class Target:
    name: str
    url: str  # base URL, no path
    proc: Proc  # whose CPU is measured
    guard: Guard | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Procs
    load_cpu: str
    proxy_cpu: str
    backend: Proc | None = None
    backend_port: int = 0
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def backend_url(self) -> str:
        return f"http://{HOST}:{self.backend_port}"

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def start_backend(self) -> None:
        self.backend_port = free_port()
        conf = nginx_backend_conf(self.procs.workdir, self.backend_port)
        self.backend = self.procs.start("backend", nginx_cmd(conf), self.load_cpu)
        wait_port(self.backend_port, self.backend)

    def backend_target(self) -> dict[str, Any]:
        return {"name": "nginx-1", "url": self.backend_url, "max_active": 10000}

    def place_backend(self, direct: bool) -> None:
        assert self.backend is not None
        self.backend.pin(self.proxy_cpu if direct else self.load_cpu)

    # ---- proxies under test -------------------------------------------------------------

    def start_nginx_proxy(self, tag: str = "nginx", cpus: str | None = None) -> Target:
        port = free_port()
        conf = nginx_proxy_conf(self.procs.workdir, port, self.backend_port, tag)
        proc = self.procs.start(tag, nginx_cmd(conf), cpus or self.proxy_cpu)
        wait_port(port, proc)
        return Target(tag, f"http://{HOST}:{port}", proc)

    def start_aiohttp_proxy(self, tag: str = "aiohttp") -> Target:
        port = free_port()
        cmd = [sys.executable, str(BENCH / "aiohttp_proxy.py"), "--port", str(port)]
        proc = self.procs.start(tag, [*cmd, "--upstream", self.backend_url], self.proxy_cpu)
        wait_port(port, proc)
        return Target(tag, f"http://{HOST}:{port}", proc)

    def start_guard(
        self,
        tag: str = "guard",
        *,
        rules: int = 5,
        backends: list[dict[str, Any]] | None = None,
        workers: int = 1,
        cpus: str | None = None,
        limits: dict[str, Any] | None = None,
    ) -> Target:
        guard = start_guard(
            self.procs,
            tag,
            cpus or self.proxy_cpu,
            backends=backends or [self.backend_target()],
            rules=bench_rules(rules),
            workers=workers,
            limits=limits,
        )
        status, body = http_get(guard.url + PATH)
        if status != 200:
            self.notes.append(f"{tag}: probe {PATH} answered {status}: {body[:200]!r}")
        return Target(tag, guard.url, guard.proc, guard)

    def start_setup(self, name: str) -> Target:
        if name == "direct":
            assert self.backend is not None
            return Target("direct", self.backend_url, self.backend)
        starters: dict[str, Callable[[], Target]] = {
            "nginx": self.start_nginx_proxy,
            "guard": self.start_guard,
            "aiohttp": self.start_aiohttp_proxy,
        }
        return starters[name]()

    # ---- one measurement ----------------------------------------------------------------

    def wrk_sample(
        self, target: Target, headers: tuple[str, ...] = (), refusals_expected: bool = False
    ) -> dict[str, Any]:
        url = target.url + PATH
        if self.args.warmup > 0:
            run_wrk(url, self.args.warmup, cpus=self.load_cpu, headers=headers)
        m = measure(url, self.args.duration, target.proc, cpus=self.load_cpu, headers=headers)
        if target.guard is not None:
            target.guard.truncate_log()
        if m.wrk.socket_errors or (m.wrk.non2xx and not refusals_expected):
            self.notes.append(
                f"{target.name}: {m.wrk.non2xx} non-2xx, {m.wrk.socket_errors} socket errors "
                f"in {m.wrk.requests} requests"
            )
        return {
            "rps": m.wrk.rps,
            "requests": m.wrk.requests,
            "seconds": m.wrk.seconds,
            "non2xx": m.wrk.non2xx,
            "socket_errors": m.wrk.socket_errors,
            "cpu_us": m.cpu_us_per_req,
            "wrk_p50_ms": m.wrk.p50_ms,
            "wrk_p99_ms": m.wrk.p99_ms,
        }


def rotated(names: list[str], r: int) -> list[str]:
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def try_start(b: Bench, name: str, start: Callable[[], Target]) -> Target | str:
    b.log(f"  starting {name} ...")
    try:
        return start()
    except (StartFailed, OSError) as e:
        b.log(f"  {name} did not start: {e}")
        return f"did not start: {str(e)[:300]}"


def interleave(
    b: Bench, targets: dict[str, Target | str], label: str
) -> dict[str, list[dict[str, Any]]]:
    """Rounds x targets of wrk samples; failures are recorded, not raised."""
    samples: dict[str, list[dict[str, Any]]] = {n: [] for n in targets}
    names = [n for n, t in targets.items() if isinstance(t, Target)]
    for r in range(b.args.rounds):
        for name in rotated(names, r):
            target = targets[name]
            assert isinstance(target, Target)
            try:
                s = b.wrk_sample(target)
            except Exception as e:
                b.notes.append(f"{label}/{name} round {r + 1}: {e}")
                continue
            samples[name].append(s)
            b.log(
                f"  [{label} {r + 1}/{b.args.rounds}] {name:<16} {s['rps']:>10,.0f} req/s "
                f"{fmt(s['cpu_us'], '.1f')} µs/req"
            )
    return samples


# ==================================================================== cases


def case_throughput(b: Bench) -> str:
    names = [s for s in b.args.setups if s in SETUPS]
    targets: dict[str, Target | str] = {}
    for name in names:
        targets[name] = try_start(b, name, lambda name=name: b.start_setup(name))
    samples: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    live = [n for n in names if isinstance(targets[n], Target)]
    for r in range(b.args.rounds):
        for name in rotated(live, r):
            target = targets[name]
            assert isinstance(target, Target)
            b.place_backend(direct=name == "direct")
            try:
                s = b.wrk_sample(target)
                steady = run_steady(
                    target.url + PATH, b.args.rate, b.args.steady_duration, cpus=b.load_cpu
                )
                s.update(p50_ms=steady["p50_ms"], p99_ms=steady["p99_ms"], steady=steady)
                if steady["errors"] or steady["non2xx"] or steady["stalls"]:
                    b.notes.append(f"throughput/{name} round {r + 1}: steady probe {steady}")
            except Exception as e:
                b.notes.append(f"throughput/{name} round {r + 1}: {e}")
                continue
            finally:
                b.place_backend(direct=False)
            samples[name].append(s)
            b.log(
                f"  [throughput {r + 1}/{b.args.rounds}] {name:<8} {s['rps']:>10,.0f} req/s "
                f"{fmt(s['cpu_us'], '.1f')} µs/req  p50 {s['p50_ms']:.3f} p99 {s['p99_ms']:.3f} ms"
            )
    b.data["throughput"] = {
        "samples": samples,
        "failed": {n: t for n, t in targets.items() if isinstance(t, str)},
    }

    med = {
        n: {k: median(s[k] for s in samples[n]) for k in ("rps", "cpu_us", "p50_ms", "p99_ms")}
        for n in names
    }
    b.data["throughput"]["medians"] = med
    ref = med.get("nginx", {}).get("rps")
    direct = med.get("direct", {})
    labels = {
        "direct": "direct to backend (nginx, 1 KiB)",
        "nginx": "nginx reverse proxy, 1 worker, keep-alive",
        "guard": "guard, full policy (5 rules, access log)",
        "aiohttp": "minimal aiohttp proxy (uvloop)",
    }

    def lat(n: str, key: str) -> str:
        v = med[n][key]
        if v is None:
            return "n/a"
        base = direct.get(key)
        if n == "direct" or base is None:
            return f"{v:.2f} ms"
        return f"{v:.2f} ms (+{v - base:.2f})"

    rows = []
    for n in names:
        if isinstance(targets[n], str) or med[n]["rps"] is None:
            why = targets[n] if isinstance(targets[n], str) else "no successful run"
            rows.append([labels[n], "n/a", "n/a", "n/a", "n/a", "n/a"])
            b.notes.append(f"throughput/{n}: {why}")
            continue
        rps = med[n]["rps"]
        share = fmt(100 * rps / ref, ".0f", "%") if ref and rps is not None else "n/a"
        rows.append(
            [
                labels[n],
                fmt(rps),
                share,
                fmt(med[n]["cpu_us"], ".1f"),
                lat(n, "p50_ms"),
                lat(n, "p99_ms"),
            ]
        )
    table = md_table(
        ["setup", "req/s", "share of nginx", "CPU µs/req", "p50 at 1k req/s", "p99 at 1k req/s"],
        rows,
    )
    per_round = "\n".join(
        f"- {n}: " + ", ".join(f"{s['rps']:,.0f}" for s in samples[n]) + " req/s"
        for n in names
        if samples[n]
    )
    return (
        "## Throughput and latency (medians)\n\n"
        f"{table}\n\n"
        "CPU µs/req is the proxy's process tree (for direct: the backend's). "
        "Latency: bench/steady.py at a constant rate, "
        "added latency in parentheses is over direct.\n\n"
        f"Per-round req/s:\n{per_round}\n"
    )


def case_shedding(b: Bench) -> str:
    ceiling = 8
    was_port = free_port()
    was = b.procs.start(
        "was-slow",
        [
            sys.executable,
            "-m",
            "guard.tools.was",
            "--port",
            str(was_port),
            "--workers",
            "64",
            "--service-time",
            "0.2",
            "--name",
            "was-slow",
        ],
        b.load_cpu,
        env={"PYTHONPATH": str(ROOT)},
    )
    wait_port(was_port, was)
    was_url = f"http://{HOST}:{was_port}"
    fast = try_start(b, "guard-fast", lambda: b.start_guard("guard-fast"))
    shed = try_start(
        b,
        "guard-shed",
        lambda: b.start_guard(
            "guard-shed", backends=[{"name": "was-slow", "url": was_url, "max_active": ceiling}]
        ),
    )
    if isinstance(fast, str) or isinstance(shed, str):
        msg = fast if isinstance(fast, str) else shed
        return f"## Shedding\n\nn/a: guard {msg}\n"
    modes = {
        "proxied (fast backend)": ("fast", ()),
        "refusing, JSON": ("shed", ()),
        "refusing, waiting page": ("shed", ("Accept: text/html,application/xhtml+xml",)),
    }
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for r in range(b.args.rounds):
        for mode in rotated(list(modes), r):
            which, headers = modes[mode]
            target = fast if which == "fast" else shed
            try:
                if which == "shed":
                    http_json(was_url + "/__was/reset", method="POST")
                    with StatusPoller(shed.guard) as poll:
                        s = b.wrk_sample(target, headers, refusals_expected=True)
                    s["status_max_backend"] = max(poll.max_backend.values(), default=None)
                    s["status_polls"] = poll.polls
                    s["was_max_seen"] = http_json(was_url + "/__was/stats")["max_seen_active"]
                else:
                    s = b.wrk_sample(target, headers)
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
    b.data["shedding"] = samples
    proxied = median(s["rps"] for s in samples["proxied (fast backend)"])
    rows = []
    for mode in modes:
        ss = samples[mode]
        if not ss:
            rows.append([mode] + ["n/a"] * 6)
            continue
        refused = median(s["refused_rps"] for s in ss)
        shed_mode = modes[mode][0] == "shed"
        ratio = fmt(refused / proxied, ".2f", "x") if refused and proxied else "n/a"
        was_max = max(s.get("was_max_seen", 0) for s in ss) if shed_mode else None
        st_max = max((s.get("status_max_backend") or 0) for s in ss) if shed_mode else None
        rows.append(
            [
                mode,
                fmt(median(s["rps"] for s in ss)),
                fmt(refused),
                fmt(median(s["admitted_rps"] for s in ss)),
                ratio if shed_mode else "-",
                fmt(median(s["cpu_us"] for s in ss), ".1f"),
                "-" if was_max is None else f"{was_max} (WAS) / {st_max} (/status)",
            ]
        )
        if was_max is not None and (was_max > ceiling or (st_max or 0) > ceiling):
            b.notes.append(
                f"shedding/{mode}: backend active reached {was_max} (WAS) / {st_max} (/status), "
                f"above max_active {ceiling}!"
            )
        elif was_max is not None and was_max < ceiling:
            b.notes.append(f"shedding/{mode}: backend peaked at {was_max}, below its ceiling")
    table = md_table(
        [
            "mode",
            "req/s",
            "refusals/s",
            "admitted/s",
            "refusals ÷ guard proxied req/s",
            "CPU µs/req",
            f"backend max active (ceiling {ceiling})",
        ],
        rows,
    )
    return (
        "## Shedding\n\n"
        f"guard with backend max_active {ceiling} in front of a simulated WAS (64 workers, "
        "200 ms per request), 64 wrk connections: all but 8 are refused at once. "
        "The proxied row is guard in front of the fast nginx backend, same run.\n\n"
        f"{table}\n"
    )


def case_rules(b: Bench) -> str:
    targets: dict[str, Target | str] = {
        "5 rules": try_start(b, "guard-5-rules", lambda: b.start_guard("guard-5-rules", rules=5)),
        "500 rules": try_start(
            b, "guard-500-rules", lambda: b.start_guard("guard-500-rules", rules=500)
        ),
    }
    if any(isinstance(t, str) for t in targets.values()):
        failed = next(t for t in targets.values() if isinstance(t, str))
        return f"## Rule scaling\n\nn/a: guard {failed}\n"
    samples = interleave(b, targets, "rules")
    b.data["rules"] = samples
    rps = {n: median(s["rps"] for s in samples[n]) for n in targets}
    cpu = {n: median(s["cpu_us"] for s in samples[n]) for n in targets}
    ratio = rps["500 rules"] / rps["5 rules"] if rps["500 rules"] and rps["5 rules"] else None
    table = md_table(
        ["rules", "req/s", "CPU µs/req"],
        [[n, fmt(rps[n]), fmt(cpu[n], ".1f")] for n in targets],
    )
    return (
        "## Rule scaling\n\n"
        f"{table}\n\n500 rules ÷ 5 rules throughput: **{fmt(ratio, '.2f')}** "
        "(target ≥ 0.90; the matched rule is the last one).\n"
    )


async def _idle_probe(proc: Proc, port: int, n: int) -> tuple[int, int, int, int]:
    """Open n keep-alive connections, one request each, keep them; RSS before/after."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    for _ in range(50):  # warm the server's code paths and upstream pool
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request)
        await _read_response(reader)
        writer.close()
    rss0 = proc.rss()
    sem = asyncio.Semaphore(200)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection(HOST, port)
            writers.append(writer)
            writer.write(request)
            await asyncio.wait_for(_read_response(reader), 30)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, BaseException))
    rss1 = proc.rss()
    for w in writers:
        w.close()
    return rss0, rss1, n - failed, failed


async def _read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


def case_idle(b: Bench) -> str:
    n = b.args.idle_conns
    limits = {"max_connections": n + 1000, "keepalive_timeout": "600s"}
    starters: dict[str, Callable[[], Target]] = {
        "guard": lambda: b.start_guard("guard-idle", limits=limits),
        "nginx": lambda: b.start_nginx_proxy("nginx-idle"),
        "aiohttp": lambda: b.start_aiohttp_proxy("aiohttp-idle"),
    }
    rows = []
    b.data["idle"] = {}
    for name, start in starters.items():
        target = try_start(b, name, start)
        if isinstance(target, str):
            rows.append([name, "n/a", "n/a", "n/a"])
            b.notes.append(f"idle/{name}: {target}")
            continue
        try:
            port = int(target.url.rsplit(":", 1)[1])
            rss0, rss1, opened, failed = asyncio.run(_idle_probe(target.proc, port, n))
            per = (rss1 - rss0) / max(1, opened) / 1024
            b.data["idle"][name] = {"rss0": rss0, "rss1": rss1, "opened": opened, "failed": failed}
            rows.append([name, f"{opened:,}", f"{(rss1 - rss0) / 2**20:.1f} MiB", f"{per:.2f} KB"])
            if failed:
                b.notes.append(f"idle/{name}: {failed} of {n} connections failed")
            b.log(f"  [idle] {name:<8} {opened} conns, {per:.2f} KB/conn")
        except Exception as e:
            rows.append([name, "n/a", "n/a", "n/a"])
            b.notes.append(f"idle/{name}: {e}")
        finally:
            b.procs.stop(target.proc)
    table = md_table(["server", "idle connections", "RSS delta", "RSS per connection"], rows)
    return (
        "## Idle keep-alive connections\n\n"
        f"Each connection sent one request and then stayed open, idle. RSS of the whole "
        f"process tree before and after (target for guard: ≤ 3 KB).\n\n{table}\n"
    )


def case_workers(b: Bench) -> str:
    all_cpus = f"0-{(os.cpu_count() or 1) - 1}"
    targets: dict[str, Target | str] = {}
    for w in (1, 2):
        targets[f"workers: {w}"] = try_start(
            b,
            f"guard-w{w}",
            lambda w=w: b.start_guard(f"guard-w{w}", workers=w, cpus=all_cpus),
        )
    samples = interleave(b, targets, "workers")
    b.data["workers"] = samples
    rows = []
    for name, t in targets.items():
        ss = samples.get(name, [])
        if isinstance(t, str) or not ss:
            rows.append([name, "n/a", "n/a", "n/a"])
            b.notes.append(f"workers/{name}: {t if isinstance(t, str) else 'no successful run'}")
            continue
        rows.append(
            [
                name,
                str(len(t.proc.tree())),
                fmt(median(s["rps"] for s in ss)),
                fmt(median(s["cpu_us"] for s in ss), ".1f"),
            ]
        )
    table = md_table(["config", "processes", "req/s", "CPU µs/req"], rows)
    r1 = median(s["rps"] for s in samples.get("workers: 1", []))
    r2 = median(s["rps"] for s in samples.get("workers: 2", []))
    ratio = fmt(r2 / r1, ".2f", "x") if r1 and r2 else "n/a"
    return (
        "## Multi-worker\n\n"
        f"guard allowed on cores {all_cpus}; wrk and the backend stay on core {b.load_cpu}, so on "
        f"a 2-core machine the second worker competes with the load generator.\n\n{table}\n\n"
        f"workers: 2 ÷ workers: 1 throughput: **{ratio}**\n"
    )


CASE_FUNCS: dict[str, Callable[[Bench], str]] = {
    "throughput": case_throughput,
    "shedding": case_shedding,
    "rules": case_rules,
    "idle": case_idle,
    "workers": case_workers,
}


# ==================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="guard benchmark (see the module docstring)")
    p.add_argument("--case", action="append", default=None, help="case name(s) or all")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured wrk seconds first")
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--steady-duration", type=float, default=5.0)
    p.add_argument("--idle-conns", type=int, default=10000)
    p.add_argument("--no-install", action="store_true", help="do not apt-get install")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "latest.md")
    args = p.parse_args(argv)
    cases: list[str] = []
    for item in args.case or ["all"]:
        for c in item.split(","):
            cases.extend(CASES if c == "all" else [c])
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}, all")
    args.cases = list(dict.fromkeys(cases))
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    bad = [s for s in args.setups if s not in SETUPS]
    if bad:
        p.error(f"unknown setup(s) {bad}; choose from {', '.join(SETUPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile(max(65536, args.idle_conns * 2 + 1000))
    if not args.no_install:
        ensure_tools()
    load_cpu, proxy_cpu = cpu_layout()
    busy_before = psutil.cpu_percent(interval=1.0)  # other work on the machine skews everything
    workdir = Path(tempfile.mkdtemp(prefix="guard-bench-"))
    workdir.chmod(0o755)  # nginx workers drop to an unprivileged user when run as root
    b = Bench(args, Procs(workdir), load_cpu, proxy_cpu)
    sections: list[str] = []
    try:
        b.start_backend()
        for case in args.cases:
            b.log(f"== {case}")
            try:
                sections.append(CASE_FUNCS[case](b))
            except Exception as e:
                traceback.print_exc()
                sections.append(f"## {case}\n\nfailed: {e}\n")
            finally:
                for proc in [p for p in b.procs.items if p is not b.backend]:
                    b.procs.stop(proc)
    finally:
        b.procs.stop_all()
        if args.keep:
            b.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    info = machine_info()
    if busy_before > 10:
        b.notes.insert(
            0,
            f"the machine was {busy_before:.0f}% busy just before the run; other processes "
            "skew every figure: rerun on an idle machine",
        )
    cmdline = " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    header = (
        "# guard benchmark — latest run\n\n"
        f"Machine: {info['cpu']}, {info['memory']}, Linux {info['kernel']}; "
        f"Python {info['python']}, nginx {info['nginx']}, wrk {info['wrk']}; {info['date']}.\n\n"
        f"Loopback; backend nginx (1 worker) returning 1 KiB; wrk 1 thread, 64 keep-alive "
        f"connections, {args.duration:g} s per run after {args.warmup:g} s warm-up, pinned to core "
        f"{load_cpu}; proxy pinned to core {proxy_cpu}; median of {args.rounds} interleaved "
        f"round(s); RLIMIT_NOFILE {nofile}; CPU {busy_before:.0f}% busy before the run. "
        f"This run: `.venv/bin/python {cmdline}`; "
        "the full default run: `make bench`.\n"
    )
    notes = "\n".join(f"- {n}" for n in dict.fromkeys(b.notes))
    report = header + "\n" + "\n".join(sections) + (f"\n## Notes\n\n{notes}\n" if notes else "")
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "machine": info,
                "data": b.data,
                "notes": b.notes,
            },
            indent=1,
            default=str,
        )
    )
    b.log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
