"""`guard demo --surge`: one flash-sale surge sent straight at a simulated WAS, then through
guard in front of an identical WAS, and the two outcomes side by side in the terminal.

The WAS is a thread pool (guard.tools.was): `workers` slots of `service_time` each, so it
serves workers / service_time requests per second (Little's law) and queues the rest. The
surge (guard.tools.surge, an open model) arrives at three times that. Without guard the queue
grows for the whole surge: pages take seconds, shoppers time out, and the WAS keeps working
on the requests they abandoned. With guard (a ceiling of `workers` active transactions) the
WAS never holds more than it can work on: served pages take the service time, and the excess
sees the waiting page at once and retries after Retry-After until its patience runs out.

Each phase gets a fresh WAS: the first one is left with a backlog of abandoned requests that
would take longer to drain than the surge lasted (that backlog is one of the numbers shown).
Everything runs in this process, on loopback.
"""

from __future__ import annotations

import math
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from guard.runtime import Runtime
from guard.serve import start
from guard.tools.surge import surge
from guard.tools.surge_args import SurgeOptions, resolve_target
from guard.tools.surge_report import LAG_TRUSTED, Stats, percentile
from guard.tools.surge_schedule import Shape
from guard.tools.was import STATE, make_was_app

TIMEOUT_KINDS = ("timeout", "no connection")  # surge's names for a shopper who stopped waiting
DEFAULT_PORTS = (8000, 9100)  # proxy, admin: as in the plain demo


@dataclass(frozen=True)
class SurgeDemo:
    """What the demo sends and at what. `rate` None: three times the WAS's capacity;
    `patience` None: min(5 s, max(1 s, duration / 2)), so a short demo stays short."""

    workers: int = 20
    service_time: float = 0.2
    duration: float = 10.0
    rate: float | None = None
    patience: float | None = None
    retry_after: int = 1  # guard's Retry-After: how soon a waiting shopper tries again
    path: str = "/event/sale"

    @property
    def capacity(self) -> float:
        """Requests per second the WAS can serve: workers / service time (Little's law)."""
        return self.workers / self.service_time

    @property
    def arrival_rate(self) -> float:
        return self.rate if self.rate is not None else 3 * self.capacity

    @property
    def wait_limit(self) -> float:
        """How long a shopper waits for a page, and keeps retrying from the waiting page."""
        if self.patience is not None:
            return self.patience
        return min(5.0, max(1.0, self.duration / 2))


@dataclass
class Phase:
    """One run of the surge: what the shoppers saw and what the WAS itself counted."""

    stats: Stats
    was: dict[str, Any]  # the WAS's own counters at the end (peak concurrency, backlog)
    ceiling: int | None = None  # guard's backend ceiling; None without guard
    guard_counted: int | None = None  # requests guard answered, by its own outcome counters

    @property
    def timeouts(self) -> int:
        return sum(self.stats.errors[kind] for kind in TIMEOUT_KINDS)

    @property
    def other_errors(self) -> int:
        return sum(self.stats.errors.values()) - self.timeouts


def surge_options(demo: SurgeDemo) -> SurgeOptions:
    """Every shopper a browser with its own connection, as on a sale day: enough connections
    for everyone who can be waiting at once, so surge never caps the WAS's queue itself."""
    wanted = math.ceil(demo.arrival_rate * (demo.wait_limit + demo.service_time)) + 64
    return SurgeOptions(
        shape=Shape(rate=demo.arrival_rate, duration=demo.duration),
        paths=(demo.path,),
        connections=min(wanted, 8192),
        timeout=demo.wait_limit,
        patience=demo.wait_limit,
        seed=0,
    )


async def start_was(demo: SurgeDemo) -> web.AppRunner:
    """A WAS on a kernel-chosen port. A short shutdown: its abandoned backlog is dropped."""
    app = make_was_app(demo.workers, demo.service_time, "was")
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    return runner


def was_url(runner: web.AppRunner) -> str:
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


def was_stats(runner: web.AppRunner) -> dict[str, Any]:
    return runner.app[STATE].stats()


async def without_guard(demo: SurgeDemo, progress: TextIO | None) -> Phase:
    runner = await start_was(demo)
    try:
        target = resolve_target(was_url(runner) + demo.path)
        stats, _ = await surge(surge_options(demo), target, progress)
        return Phase(stats, was_stats(runner))
    finally:
        await runner.cleanup()


def guard_yaml(demo: SurgeDemo, was: str, ports: tuple[int, int]) -> str:
    proxy, admin = ports
    return (
        f"listen: 127.0.0.1:{proxy}\n"
        f"admin_listen: 127.0.0.1:{admin}\n"
        f"retry_after: {demo.retry_after}s\n"
        "access_log: {format: off}\n"
        "timeouts: {shutdown: 2s}\n"
        "backends:\n"
        f"  - {{name: was, url: '{was}', max_active: {demo.workers}}}\n"
        "rules:\n"
        "  - {name: event, path: /event/**}\n"
    )


async def with_guard(
    demo: SurgeDemo,
    ports: tuple[int, int],
    progress: TextIO | None,
    announce: Callable[[str], None],
) -> Phase:
    runner = await start_was(demo)
    try:
        with tempfile.TemporaryDirectory(prefix="guard-demo-surge-") as folder:
            config = Path(folder) / "guard.yaml"
            config.write_text(guard_yaml(demo, was_url(runner), ports))
            runtime = Runtime(config)
            admin = await start(runtime, (0, 1), None)  # BindError when a port is taken
            try:
                announce(f"http://127.0.0.1:{admin.addresses[0][1]}/live")
                target = resolve_target(f"http://127.0.0.1:{runtime.bound_port}{demo.path}")
                stats, _ = await surge(surge_options(demo), target, progress)
                snapshot = runtime.admission.snapshot()
            finally:
                await runtime.stop()
                await admin.cleanup()
        counted = sum(sum(rule.outcomes.values()) for rule in snapshot.rules)
        ceiling = snapshot.backends[0].max_active
        return Phase(stats, was_stats(runner), ceiling, counted)
    finally:
        await runner.cleanup()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _cells(demo: SurgeDemo, phase: Phase) -> list[str]:
    s = phase.stats
    shoppers_left = s.gave_up + s.shoppers_failed + s.shoppers_refused
    return [
        f"{s.arrivals:,}",
        f"{s.requests:,}",
        f"{s.admitted:,}",
        f"{s.waiting:,} / {s.refused:,}",
        f"{phase.other_errors:,} / {phase.timeouts:,}",
        f"{_ms(percentile(s.latency, 50))} / {_ms(percentile(s.latency, 99))}",
        f"{s.done:,} / {shoppers_left:,}",
        f"{phase.was['max_seen_active']:,} (workers {demo.workers})",
        f"{phase.was['served']:,}",
        f"{phase.was['active']:,}",
        "none" if phase.ceiling is None else f"{phase.ceiling}",
        f"{percentile(s.lag, 99) * 1000:.1f} ms",
    ]


LABELS = (
    "shoppers arrived",
    "requests sent",
    "  admitted (served)",
    "  waiting page / refused",
    "  errors / timeouts",
    "served latency p50 / p99",
    "shoppers served / gave up",
    "WAS peak concurrency",
    "WAS requests completed",
    "WAS backlog at the end",
    "guard ceiling (max_active)",
    "surge lag p99",
)


def render(demo: SurgeDemo, bare: Phase, guarded: Phase) -> str:
    """The side-by-side table, then what it means in one sentence per column."""
    rows = [("", "without guard", "with guard")]
    rows += list(zip(LABELS, _cells(demo, bare), _cells(demo, guarded), strict=True))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}".rstrip() for a, b, c in rows]
    b, g = bare.stats, guarded.stats
    wasted = max(bare.was["served"] - b.admitted, 0)
    story = (
        f"Without guard the WAS held up to {bare.was['max_seen_active']:,} requests for its "
        f"{demo.workers} workers: served pages took {_ms(percentile(b.latency, 99))} at p99 "
        f"(service time {_ms(demo.service_time)}), {bare.timeouts:,} requests timed out, and "
        f"{wasted:,} of the pages it completed went to shoppers who had already left.",
        f"With guard it never held more than {guarded.was['max_seen_active']} (ceiling "
        f"{guarded.ceiling}): served pages took {_ms(percentile(g.latency, 99))} at p99, "
        f"{g.done:,} shoppers were served instead of {b.done:,}, and the excess saw the "
        "waiting page at once.",
    )
    for paragraph in story:
        lines += ["", *textwrap.wrap(paragraph, 96)]
    for name, phase in (("without guard", bare), ("with guard", guarded)):
        if percentile(phase.stats.lag, 99) > LAG_TRUSTED:
            lines.append(f"note: surge sent late {name} (lag p99 > 50 ms): a busy machine")
    return "\n".join(lines)


def headline(demo: SurgeDemo) -> str:
    return textwrap.fill(
        f"guard demo --surge: {demo.arrival_rate:g} shoppers/s for {demo.duration:g} s at "
        f"a WAS of {demo.workers} workers x {_ms(demo.service_time)} "
        f"(it serves {demo.capacity:g}/s). Shoppers wait up to {demo.wait_limit:g} s for a "
        f"page; on guard's waiting page they retry after {demo.retry_after} s.",
        96,
    )


async def compare(
    demo: SurgeDemo,
    ports: tuple[int, int] = (0, 0),
    out: TextIO = sys.stdout,
    progress: TextIO | None = None,
) -> tuple[Phase, Phase]:
    """Both phases, announced on `out` as they start; the table is render()'s job."""
    print(headline(demo), file=out, flush=True)
    print(f"\n1/2 the surge straight at the WAS ({demo.duration:g} s)...", file=out, flush=True)
    bare = await without_guard(demo, progress)

    def announce(live: str) -> None:
        print(
            f"2/2 the same surge through guard, in front of a fresh identical WAS "
            f"({demo.duration:g} s)...\n    live view: {live}",
            file=out,
            flush=True,
        )

    guarded = await with_guard(demo, ports, progress, announce)
    return bare, guarded


async def run_surge_demo(
    port_base: int | None = None, duration: float = 10.0, rate: float | None = None
) -> int:
    """`guard demo --surge`: 0 when both phases ran, 2 for a rate or duration out of range."""
    if duration <= 0 or (rate is not None and rate <= 0):
        print("guard demo: --duration and --rate must be above 0", file=sys.stderr)
        return 2
    ports = DEFAULT_PORTS if port_base is None else (port_base, port_base + 1)
    demo = SurgeDemo(duration=duration, rate=rate)
    progress = sys.stderr if sys.stderr.isatty() else None
    bare, guarded = await compare(demo, ports, sys.stdout, progress)
    print("\n" + render(demo, bare, guarded), flush=True)
    return 0
