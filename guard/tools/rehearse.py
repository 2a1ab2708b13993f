"""`guard rehearse`: what a candidate config would have done to a recorded (or synthetic) surge.

Offline and in dry run: the access log is read into (start, end) events (rehearse_logs), the
events are admitted by guard's real Admission on a fake clock (rehearse_replay), the log's
own concurrency gives each backend's and rule's knee and a suggested max_active
(rehearse_knee), and the report is text, JSON or a self-contained HTML page
(rehearse_report, rehearse_html). ``--sweep`` replays once per ceiling, side by side.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard.config import ConfigError, load_config
from guard.tools.rehearse_html import to_html
from guard.tools.rehearse_inputs import (
    Sweep,
    parse_headroom,
    parse_sweep,
    parse_synthetic,
    synthetic_events,
    with_ceiling,
    within,
)
from guard.tools.rehearse_knee import analyse
from guard.tools.rehearse_logs import FORMATS, UNITS, Event, read_log
from guard.tools.rehearse_replay import Replay, Scope, replay
from guard.tools.rehearse_report import KneeRow, SweepRow, build, to_json, to_text

__all__ = ["add_arguments", "knees", "rehearse", "run_rehearse", "sweep"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-c", "--config", type=Path, default=Path("config/guard.yaml"), help="candidate config")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", type=Path, help="access log to replay (.gz accepted)")
    source.add_argument("--synthetic", type=parse_synthetic, metavar="rate=…,duration=…,service=…",
                        help="a surge shape instead of a log: rate, duration, service, ramp, "
                        "from, path, method, clients")  # fmt: skip
    add("--format", choices=FORMATS, help="log format (default: detected from the first line)")
    add("--duration-unit", choices=tuple(UNITS), default="ms",
        help="Tomcat: %%D is ms up to Tomcat 9, us from 10; s for %%T (ms)")  # fmt: skip
    add("--from", dest="start", metavar="TIME", help="replay from (10:30, or 2025-05-01T10:30)")
    add("--to", dest="end", metavar="TIME", help="replay until (exclusive)")
    add("--sweep", type=parse_sweep, metavar="NAME.max_active=LOW..HIGH",
        help="replay once per ceiling of a rule, a backend or the site")  # fmt: skip
    add("--headroom", type=parse_headroom, default=0.10, help="below the knee (10%%)")
    add("--window", type=float, default=1.0, help="Little's-law window in seconds (1)")
    add("--json", action="store_true", help="print the report as JSON")
    add("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report")


def knees(events: Sequence[Event], base: Replay, headroom: float, width: float) -> list[KneeRow]:
    """The knee of the site, of each logged backend and of each rule, from forwarded requests."""
    ceilings = {s.name: s.ceiling for s in (*base.rules, *base.backends)}
    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for event, rule in zip(events, base.rule_of, strict=True):
        if not event.forwarded:
            continue
        span = (event.start, event.end)
        groups.setdefault(("site", "site"), []).append(span)
        if event.backend is not None:
            groups.setdefault(("backend", event.backend), []).append(span)
        groups.setdefault(("rule", rule), []).append(span)
    order = {"site": 0, "backend": 1, "rule": 2}
    return [
        KneeRow(
            kind,
            name,
            base.site.ceiling if kind == "site" else ceilings.get(name),
            analyse(spans, width, headroom),
        )
        for (kind, name), spans in sorted(groups.items(), key=lambda g: (order[g[0][0]], g[0][1]))
    ]


def sweep(config: Any, events: Sequence[Event], chosen: Sweep) -> list[SweepRow]:
    rows = []
    for value in chosen.values:
        result = replay(with_ceiling(config, chosen.target, value), events)
        rows.append(SweepRow(value, result, _swept_scope(result, chosen.target)))
    return rows


def _swept_scope(result: Replay, target: str) -> Scope:
    kind, _, name = target.rpartition(":")
    if target == "site":
        return result.site
    scopes = {"rule": result.rules, "backend": result.backends}
    for scope_kind in (kind,) if kind else ("rule", "backend"):
        for scope in scopes[scope_kind]:
            if scope.name == name:
                return scope
    raise ValueError(f"no scope {target!r}")  # with_ceiling already refused unknown names


def rehearse(
    config: Any,
    events: Sequence[Event],
    source: dict[str, Any],
    headroom: float = 0.10,
    width: float = 1.0,
    swept: Sweep | None = None,
) -> dict[str, Any]:
    """The report document (see rehearse_report.build) for these events and this config."""
    base = replay(config, events)
    found = knees(events, base, headroom, width)
    rows = None if swept is None else (swept.target, sweep(config, events, swept))
    return build({**source, "events": len(events)}, base, found, headroom, rows)


def run_rehearse(args: argparse.Namespace) -> int:
    """`guard rehearse ...`: 0 with a report, 1 for a bad config, 2 for a bad log or flag."""
    try:
        config = load_config(args.config).config
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    try:
        events, source = _events(args)
        if not events:
            print("guard rehearse: no requests to replay in that log/window", file=sys.stderr)
            return 2
        doc = rehearse(config, events, source, args.headroom, args.window, args.sweep)
    except (OSError, ValueError) as err:
        print(f"guard rehearse: {err}", file=sys.stderr)
        return 2
    print(to_json(doc) if args.json else to_text(doc))
    if args.html:
        args.html.write_text(to_html(doc), encoding="utf-8")
    return 0


def _events(args: argparse.Namespace) -> tuple[list[Event], dict[str, Any]]:
    if args.synthetic is not None:
        spec = ",".join(f"{k}={v}" for k, v in args.synthetic.items())
        return synthetic_events(args.synthetic), {
            "source": f"synthetic {spec}",
            "format": "synthetic",
        }
    read = read_log(args.log, args.format, args.duration_unit)
    events = within(read.events, args.start, args.end, read.tz)
    source = {
        "source": str(args.log),
        "format": args.format or "detected",
        "bad_lines": read.bad_lines,
        "skipped": read.skipped,
    }
    return events, source
