"""`workers: N`: the fleet's live frames from its workers' (the browser never sees workers).

Each worker ticks on the same wall-clock grid, so the supervisor groups the workers' tick
frames by tick slot (``round(t / tick)``) and merges each group: counts, age bands, hitmap
cells, outcomes, errors and ceilings (each worker's share) are summed; ``up`` is true when
any worker sees the backend up; the slowest and oldest lists are the union, truncated;
percentiles come from the merged cells. ``refused_clients`` is summed, an upper bound: one
shopper whose connections reach two workers counts twice. Rooms need one process today
(``guard check`` refuses rooms with ``workers`` > 1), so at most one worker has them; the
merge still sums a room's counts by name (a shared line would have one watermark, so the
first worker's state and the longest ETA are kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from guard.core.live import BUCKETS, SLOWEST
from guard.live_frame import OLDEST, percentile

__all__ = ["merge_hello", "merge_ticks", "slot_of"]


def slot_of(frame: dict[str, Any], tick: float) -> int:
    return round(float(frame["t"]) / tick)


def merge_hello(hellos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first worker's hello with the fleet's ceilings (every worker runs one config)."""
    out = dict(hellos[0])
    out["workers"] = len(hellos)
    out["site"] = {"max": _sum_max(h["site"]["max"] for h in hellos)}
    for key in ("backends", "rules"):
        out[key] = [
            {**doc, "max": _sum_max(d["max"] for d in docs)}
            for doc, docs in _by_name([h[key] for h in hellos])
        ]
    return out


def merge_ticks(frames: Sequence[dict[str, Any]], seq: int) -> dict[str, Any]:
    """One fleet frame numbered ``seq`` from the workers' frames of one tick slot."""
    first = frames[0]
    slow = sorted((s for f in frames for s in f["slow"]), key=lambda s: -s[0])[:SLOWEST]
    oldest = sorted((o for f in frames for o in f["oldest"]), key=lambda o: -o[0])[:OLDEST]
    events: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in frames:
        for e in f.get("events", []):
            events.setdefault((e["kind"], e["subject"], e["detail"]), e)
    refused = [f.get("refused_clients", {}) for f in frames]
    return {
        "v": first["v"],
        "type": "tick",
        "seq": seq,
        "t": max(f["t"] for f in frames),
        "dt": max(f["dt"] for f in frames),
        "site": _merge_scope([f["site"] for f in frames]),
        "backends": [_merge_scope(docs) for _, docs in _by_name([f["backends"] for f in frames])],
        "rules": [_merge_scope(docs) for _, docs in _by_name([f["rules"] for f in frames])],
        "slow": slow,
        "oldest": oldest,
        "refused_clients": {k: sum(r.get(k, 0) for r in refused) for k in ("tick", "1m")},
        "rooms": [_merge_room(docs) for _, docs in _by_name([f.get("rooms", []) for f in frames])],
        "waiting_shoppers": sum(f.get("waiting_shoppers", 0) for f in frames),
        "events": list(events.values()),
        "reloads": {k: max(f["reloads"].get(k, 0) for f in frames) for k in ("success", "failure")},
        "sha": first.get("sha"),
        "workers": len(frames),
    }


def _by_name(
    lists: Iterable[list[dict[str, Any]]],
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Docs with the same name across workers, in the first worker's order."""
    order: list[str] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for docs in lists:
        for doc in docs:
            if doc["name"] not in groups:
                order.append(doc["name"])
                groups[doc["name"]] = []
            groups[doc["name"]].append(doc)
    return [(groups[name][0], groups[name]) for name in order]


def _sum_max(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _merge_scope(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    hits = [0] * BUCKETS
    errors = [0] * BUCKETS
    for doc in docs:
        for bucket, h, e in doc["hit"]:
            hits[bucket] += h
            errors[bucket] += e
    out: dict[str, Any] = {
        **({"name": docs[0]["name"]} if "name" in docs[0] else {}),
        "active": sum(d["active"] for d in docs),
        "max": _sum_max(d["max"] for d in docs),
        "ages": [sum(d["ages"][i] for d in docs) for i in range(3)],
        "done": sum(d["done"] for d in docs),
        "p50": percentile(hits, 0.5),
        "p99": percentile(hits, 0.99),
        "hit": [[i, h, errors[i]] for i, h in enumerate(hits) if h],
    }
    if "out" in docs[0]:
        out["out"] = _sum_maps(d["out"] for d in docs)
    if "up" in docs[0]:
        out["up"] = any(d["up"] for d in docs)
        out["draining"] = any(d["draining"] for d in docs)
        out["err"] = _sum_maps(d["err"] for d in docs)
    return out


def _sum_maps(maps: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0) + v
    return out


_ROOM_SUMS = ("waiting", "waiting_estimated", "admit_rate", "admitted", "passes_in_flight")


def _merge_room(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = dict(docs[0])
    for key in _ROOM_SUMS:
        out[key] = sum(d.get(key, 0) for d in docs)
    etas = [d["eta_seconds"] for d in docs if d.get("eta_seconds") is not None]
    out["eta_seconds"] = max(etas) if etas else None
    return out
