"""What every benchmark case shares: the backend, the proxies under test, one wrk sample,
and interleaved rounds (the order rotates each round so that drift hits every setup)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common import BENCH, HOST, Guard, bench_rules, free_port, http_get, start_guard
from nginx import nginx_backend_conf, nginx_proxy_conf
from procstats import pin
from report import fmt
from wrk import measure, run_wrk

from guard.tools.launch import Launched, Launcher, StartFailed, nginx_command

PATH = "/event/item/1"
SETUPS = ("direct", "nginx", "guard", "aiohttp")


@dataclass
class Target:
    name: str
    url: str  # base URL, no path
    proc: Launched  # whose CPU is measured
    guard: Guard | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Launcher
    load_cpu: str
    proxy_cpu: str
    backend: Launched | None = None
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
        self.backend = self.procs.start("backend", nginx_command(conf), self.load_cpu)
        self.backend.wait_port(self.backend_port)

    def backend_target(self) -> dict[str, Any]:
        return {"name": "nginx-1", "url": self.backend_url, "max_active": 10000}

    def place_backend(self, direct: bool) -> None:
        assert self.backend is not None
        pin(self.backend, self.proxy_cpu if direct else self.load_cpu)

    # ---- proxies under test -------------------------------------------------------------

    def start_nginx_proxy(self, tag: str = "nginx", cpus: str | None = None) -> Target:
        port = free_port()
        conf = nginx_proxy_conf(self.procs.workdir, port, self.backend_port, tag)
        proc = self.procs.start(tag, nginx_command(conf), cpus or self.proxy_cpu)
        proc.wait_port(port)
        return Target(tag, f"http://{HOST}:{port}", proc)

    def start_aiohttp_proxy(self, tag: str = "aiohttp") -> Target:
        port = free_port()
        cmd = [sys.executable, str(BENCH / "aiohttp_proxy.py"), "--port", str(port)]
        proc = self.procs.start(tag, [*cmd, "--upstream", self.backend_url], self.proxy_cpu)
        proc.wait_port(port)
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
