"""`guard surge`: a flash-sale load generator for demos and rehearsals.

An open model: shoppers arrive on a schedule (surge_schedule) whatever the target does, each
walks a short journey of pages, keeps its cookies, and when refused with Retry-After (guard's
waiting page, 503 or 429) comes back after the advertised delay, until its patience runs out.

Speed: one scheduler loop (a coroutine that wakes at the next due time) and raw asyncio
Protocols with httptools (surge_client) over a bounded pool of keep-alive connections;
everything else runs in their callbacks. No task and no future per request.

Honesty: a request's latency runs from when it was *due* (its arrival, its retry time, the
end of the previous page), not from when a connection was free to send it, so a slow target
cannot hide behind surge's own backlog (coordinated omission); surge reports its lag (send
time minus due time) and says when its numbers cannot be trusted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import TextIO

from guard.tools.surge_args import SurgeOptions, Target, TargetError, options_from, resolve_target
from guard.tools.surge_engine import Engine, Record
from guard.tools.surge_report import Stats, to_json, to_text

__all__ = ["Record", "run_surge", "surge"]


async def surge(
    options: SurgeOptions, target: Target, progress: TextIO | None = None
) -> tuple[Stats, list[Record]]:
    """Run one surge to the end; the records are empty unless options.keep_records."""
    engine = Engine(options, target)
    engine.progress = progress
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
        loop.add_signal_handler(signal.SIGINT, engine.stop)
    try:
        stats = await engine.run()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return stats, engine.records or []


async def run_surge(args: argparse.Namespace) -> int:
    """`guard surge ...`: 0 when done, 2 for a refused or bad target."""
    try:
        target = resolve_target(args.url, args.allow_remote)
        options = options_from(args, target)
    except TargetError as err:
        print(f"guard surge: {err}", file=sys.stderr)
        return 2
    live = sys.stderr.isatty() and not args.quiet
    stats, records = await surge(options, target, sys.stderr if live else None)
    print(to_json(stats) if args.json else to_text(stats))
    if args.records:
        await asyncio.to_thread(write_records, args.records, records)
    return 0


def write_records(path: str, records: list[Record]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
