"""The `guard rehearse` report: one JSON-able document, rendered as text (HTML: rehearse_html).

Building the document is separate from drawing it, so `--json` and the text say the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from guard.tools.rehearse_knee import Knee
from guard.tools.rehearse_replay import REFUSALS, Replay, Scope
from guard.tools.rehearse_rooms import Line, percentile

__all__ = ["ASSUMPTIONS", "WAIT_SHARES", "KneeRow", "SweepRow", "build", "to_json", "to_text"]

ASSUMPTIONS = (
    "Dry run: every request was matched and admitted by guard's own admission code on a fake "
    "clock, with the candidate config; nothing was sent anywhere.",
    "Admitted requests keep their logged durations. This is conservative: with fewer requests "
    "inside, the backend would have answered faster.",
    "A request refused in the log but admitted here gets its rule's median logged duration.",
    "Refusals on a `wait` rule are counted as the waiting page (API clients get the same "
    "refusal as JSON; a log does not say which client was a browser).",
)
NO_ROOMS = "No waiting rooms in this config: a refused request is counted once, not queued."
ROOMS = (
    "Waiting rooms are simulated by their real controller, ticked every 0.2 s of fake time "
    "with the utilisation of the room's ceilings. A shopper is a client address (a request "
    "with none is a shopper of its own): one with a pass goes to admission, else straight "
    "through while the room lets shoppers in directly, else a place in line. A place is let "
    "in at the first tick that passes it (a real shopper comes at the next poll, up to "
    "refresh_max later); its requests then run for their logged durations. Projected wait "
    "= admission - arrival. pass_max_in_flight is not modelled."
)
WAIT_SHARES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))


@dataclass(frozen=True)
class KneeRow:
    kind: str  # "site", "backend" or "rule"
    name: str
    configured: int | None
    knee: Knee


@dataclass(frozen=True)
class SweepRow:
    value: int
    replay: Replay
    scope: Scope  # the swept scope in that replay


def _scope(scope: Scope) -> dict[str, Any]:
    return {
        "name": scope.name,
        "max_active": scope.ceiling,
        "admitted": scope.admitted,
        "refused": dict(scope.refused),
        "refused_total": scope.refused_total,
        "queued": scope.queued,
        "left_waiting": scope.unserved,
        "peak_active": scope.peak,
        "time_at_ceiling_s": round(scope.at_ceiling, 3),
        "time_near_ceiling_s": round(scope.near_ceiling, 3),
        "timeline": scope.timeline,
    }


def _room(line: Line) -> dict[str, Any]:
    return {
        "name": line.name,
        "rules": line.rules,
        "admit_rate": line.admit_rate,
        "shoppers_direct": line.direct,
        "shoppers_queued": line.queued,
        "shoppers_admitted": line.admitted,
        "requests_queued": line.requests_queued,
        "requests_left_waiting": line.left_waiting,
        "pass_refused": line.pass_refused,
        "longest_line": line.longest,
        "wait_s": {k: round(percentile(line.waits, q), 3) for k, q in WAIT_SHARES},
    }


def _knee(row: KneeRow, headroom: float) -> dict[str, Any]:
    knee = row.knee
    return {
        "kind": row.kind,
        "name": row.name,
        "max_active": row.configured,
        "knee_n": None if knee.n is None else round(knee.n, 2),
        "throughput_per_s": round(knee.x, 2),
        "mean_duration_s": round(knee.r, 4),
        "saturated": knee.saturated,
        "suggested_max_active": knee.suggested,
        "headroom": headroom,
        "max_steady_n": round(knee.max_n, 2),
        "line": knee.line(),
        "little": None if knee.little is None else knee.little.line(),
        "curve": [[round(n, 3), round(x, 3)] for n, x in knee.curve],
    }


def build(
    source: dict[str, Any],
    base: Replay,
    knees: list[KneeRow],
    headroom: float,
    sweep: tuple[str, list[SweepRow]] | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "input": {**source, "span_s": round(base.span, 3), "substituted": base.substituted},
        "assumptions": [*ASSUMPTIONS, ROOMS if base.rooms else NO_ROOMS],
        "admitted": base.admitted,
        "refused": base.refused,
        "rooms": [_room(line) for line in base.rooms],
        "site": _scope(base.site),
        "rules": [_scope(r) for r in base.rules if r.admitted or r.refused_total or r.queued],
        "backends": [_scope(b) for b in base.backends],
        "knees": [_knee(row, headroom) for row in knees],
    }
    if sweep is not None:
        target, rows = sweep
        doc["sweep"] = {
            "target": target,
            "rows": [
                {
                    "max_active": row.value,
                    "admitted": row.replay.admitted,
                    "refused": row.replay.refused,
                    "projected_peak": row.scope.peak,
                    "time_at_ceiling_s": round(row.scope.at_ceiling, 3),
                }
                for row in rows
            ],
        }
    return doc


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2)


def _share(seconds: float, span: float) -> str:
    return f"{seconds:,.1f} s ({seconds / span:.0%})" if span > 0 else f"{seconds:,.1f} s"


def _ceiling(value: int | None) -> str:
    return "-" if value is None else str(value)


def to_text(doc: dict[str, Any]) -> str:
    src, span = doc["input"], doc["input"]["span_s"]
    out = [
        f"guard rehearse: {src['events']:,} requests from {src['source']} over {span:,.1f} s"
        f" — would admit {doc['admitted']:,}, refuse {doc['refused']:,}",
        *(f"  * {line}" for line in doc["assumptions"]),
        "",
        f"{'rule':<16}{'max':>6}{'admitted':>10}"
        + "".join(f"{k.replace('_', ' '):>13}" for k in REFUSALS)
        + f"{'queued':>8}{'peak':>7}  time at ceiling",
    ]
    for rule in doc["rules"]:
        out.append(
            f"{rule['name']:<16}{_ceiling(rule['max_active']):>6}{rule['admitted']:>10,}"
            + "".join(f"{rule['refused'][k]:>13,}" for k in REFUSALS)
            + f"{rule['queued']:>8,}{rule['peak_active']:>7}  "
            + (_share(rule["time_at_ceiling_s"], span) if rule["max_active"] else "-")
        )
    out += _rooms_text(doc["rooms"])
    out += ["", f"{'backend':<16}{'max':>6}{'peak':>7}  time >= 90 % of max"]
    for scope in [*doc["backends"], {**doc["site"], "name": "(site)"}]:
        near = _share(scope["time_near_ceiling_s"], span) if scope["max_active"] else "-"
        ceiling = _ceiling(scope["max_active"])
        out.append(f"{scope['name']:<16}{ceiling:>6}{scope['peak_active']:>7}  {near}")
    out += ["", "knee, from the log's own concurrency (steady windows only):"]
    for knee in doc["knees"]:
        scope = "site" if knee["kind"] == "site" else f"{knee['kind']} {knee['name']}"
        out.append(f"  {scope}: {knee['line']}")
    if doc["knees"] and doc["knees"][0]["little"]:
        out.append(f"  Little's law: {doc['knees'][0]['little']}")
    if "sweep" in doc:
        out += ["", f"sweep {doc['sweep']['target']}.max_active:"]
        out.append(f"{'max_active':>12}{'admitted':>10}{'refused':>10}{'peak':>7}  time at ceiling")
        for row in doc["sweep"]["rows"]:
            out.append(
                f"{row['max_active']:>12}{row['admitted']:>10,}{row['refused']:>10,}"
                f"{row['projected_peak']:>7}  {_share(row['time_at_ceiling_s'], span)}"
            )
    return "\n".join(out)


def _rooms_text(rooms: list[dict[str, Any]]) -> list[str]:
    if not rooms:
        return []
    out = [
        "",
        f"{'room':<16}{'rate/s':>8}{'direct':>8}{'queued':>8}{'admitted':>10}{'longest':>9}"
        + "".join(f"{k + ' wait':>10}" for k, _ in WAIT_SHARES)
        + f"{'left':>7}",
    ]
    for room in rooms:
        out.append(
            f"{room['name']:<16}{room['admit_rate']:>8g}{room['shoppers_direct']:>8,}"
            f"{room['shoppers_queued']:>8,}{room['shoppers_admitted']:>10,}"
            f"{room['longest_line']:>9,}"
            + "".join(f"{room['wait_s'][k]:>9.1f}s" for k, _ in WAIT_SHARES)
            + f"{room['requests_left_waiting']:>7,}"
        )
    out.append(
        "  (shoppers; waits of requests admitted after waiting; left: requests still in line)"
    )
    return out
