"""Building the live view's frames (version 1), once a tick, off the request path.

A frame is plain JSON: seconds as floats, bulky parts as positional arrays, hitmap cells
as sparse ``[bucket, hits, errors]`` triples over ``hello.buckets``. docs/LIVE.md is the
contract; ``FRAME_VERSION`` changes when a field changes meaning.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from guard.core.live import BUCKET_UPPER_US, BUCKETS, Cells, TickCounts
from guard.core.snapshot import Snapshot

__all__ = [
    "FRAME_VERSION",
    "OLDEST",
    "InFlight",
    "Scan",
    "cells_json",
    "hello_frame",
    "percentile",
    "rooms_doc",
    "scan_in_flight",
    "tick_frame",
]

FRAME_VERSION = 1
OLDEST = 10  # in-flight requests listed, oldest first


class InFlight(Protocol):
    """What the ticker reads of an in-flight ``guard.proxy.forward.Exchange``."""

    started: float
    rule: str
    backend: str | None
    path: str

    @property
    def req(self) -> Any: ...


class Scan:
    """In-flight requests by age band, per backend and per rule, and the oldest few."""

    __slots__ = ("backends", "oldest", "rules", "site")

    def __init__(self) -> None:
        self.site = [0, 0, 0]
        self.backends: dict[str, list[int]] = {}
        self.rules: dict[str, list[int]] = {}
        self.oldest: list[list[Any]] = []


def scan_in_flight(
    exchanges: Iterable[InFlight], now: float, bands: tuple[float, float], show_paths: bool
) -> Scan:
    """One pass over the proxy's in-flight exchanges: O(in flight), which the backends'
    ceilings bound (except for bypass rules)."""
    low, high = bands
    scan = Scan()
    aged: list[tuple[float, InFlight]] = []
    for ex in exchanges:
        age = now - ex.started
        band = 0 if age < low else 1 if age < high else 2
        scan.site[band] += 1
        scan.rules.setdefault(ex.rule, [0, 0, 0])[band] += 1
        if ex.backend is not None:
            scan.backends.setdefault(ex.backend, [0, 0, 0])[band] += 1
        aged.append((age, ex))
    for age, ex in heapq.nlargest(OLDEST, aged, key=lambda pair: pair[0]):
        meta = ex.req.meta
        rid = meta.request_id.decode("latin-1") if meta.request_id else None
        path = ex.path if show_paths else ""
        method = ex.req.method.decode("latin-1")
        scan.oldest.append([round(age, 3), ex.rule, ex.backend, method, path, meta.client, rid])
    return scan


def percentile(hits: Sequence[int], q: float) -> float | None:
    """The upper edge (seconds) of the bucket holding the q-quantile; None without hits."""
    total = sum(hits)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hits):
        seen += n
        if seen >= rank and n:
            bound = BUCKET_UPPER_US[i]
            return round(bound / 1e6, 4) if bound != float("inf") else None
    return None


def cells_json(cells: Cells | None) -> list[list[int]]:
    if cells is None:
        return []
    return [[i, h, cells.errors[i]] for i, h in enumerate(cells.hits) if h]


def _sum_cells(many: Iterable[Cells]) -> Cells:
    total = Cells()
    for c in many:
        for i in range(BUCKETS):
            total.hits[i] += c.hits[i]
            total.errors[i] += c.errors[i]
    return total


def hello_frame(
    seq: int, wall: float, settings: Any, snap: Snapshot, config: Mapping[str, Any], workers: int
) -> dict[str, Any]:
    """What a viewer needs once: the buckets, bands, names and ceilings, the config."""
    bounds = [b / 1e6 if b != float("inf") else None for b in BUCKET_UPPER_US]
    return {
        "v": FRAME_VERSION,
        "type": "hello",
        "seq": seq,
        "t": round(wall, 3),
        "tick": settings.tick,
        "bands": list(settings.age_bands),
        "buckets": bounds,
        "history": settings.history,
        "show_paths": settings.show_paths,
        "workers": workers,
        "config": dict(config),
        "site": {"max": snap.site.max_active},
        "backends": [{"name": b.name, "url": b.url, "max": b.max_active} for b in snap.backends],
        "rules": [{"name": r.name, "max": r.max_active, "rate": r.rate} for r in snap.rules],
    }


def tick_frame(
    seq: int,
    wall: float,
    dt: float,
    snap: Snapshot,
    prev: Snapshot | None,
    counts: TickCounts,
    scan: Scan,
    show_paths: bool,
) -> dict[str, Any]:
    """One tick: active counts now, what completed and was refused during the tick."""
    by_rule, by_backend = counts.by_rule(), counts.by_backend()
    site_cells = _sum_cells(by_rule.values())
    prev_out = {r.name: r.outcomes for r in prev.rules} if prev else {}
    prev_err = {(e.backend, e.kind): e.count for e in prev.upstream_errors} if prev else {}
    errors: dict[str, dict[str, int]] = {}
    for e in snap.upstream_errors:
        diff = e.count - prev_err.get((e.backend, e.kind), 0)
        if diff > 0:
            errors.setdefault(e.backend, {})[e.kind] = diff
    rules = []
    for r in snap.rules:
        cells = by_rule.get(r.name)
        before = prev_out.get(r.name, {})
        out = {k: v - before.get(k, 0) for k, v in r.outcomes.items() if v - before.get(k, 0)}
        rules.append(_scope(r.name, r.active, r.max_active, scan.rules, cells) | {"out": out})
    backends = []
    for b in snap.backends:
        cells = by_backend.get(b.name)
        doc = _scope(b.name, b.active, b.max_active, scan.backends, cells)
        doc |= {"up": b.up, "draining": b.draining, "err": errors.get(b.name, {})}
        backends.append(doc)
    site = _scope("site", snap.site.active, snap.site.max_active, {"site": scan.site}, site_cells)
    del site["name"]
    return {
        "v": FRAME_VERSION,
        "type": "tick",
        "seq": seq,
        "t": round(wall, 3),
        "dt": round(dt, 3),
        "site": site,
        "backends": backends,
        "rules": rules,
        "slow": [
            [round(s, 4), rule, be, st, m.decode("latin-1"), p if show_paths else ""]
            for s, rule, be, st, m, p in counts.slow
        ],
        "oldest": scan.oldest,
    }


def _scope(
    name: str, active: int, ceiling: int | None, bands: Mapping[str, list[int]], cells: Cells | None
) -> dict[str, Any]:
    hits = cells.hits if cells is not None else [0] * BUCKETS
    return {
        "name": name,
        "active": active,
        "max": ceiling,
        "ages": bands.get(name, [0, 0, 0]),
        "done": sum(hits),
        "p50": percentile(hits, 0.5),
        "p99": percentile(hits, 0.99),
        "hit": cells_json(cells),
    }


ROOM_FIELDS = ("state", "waiting", "waiting_estimated", "admit_rate", "eta_seconds")


def rooms_doc(
    views: Sequence[Mapping[str, Any]], admitted_before: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The waiting-room panel: each room's numbers as /status has them (``waiting``: places
    between the watermark and the last issued; ``waiting_estimated``: those whose holders
    are still there, i.e. distinct shoppers), plus ``admitted``, counted during the tick."""
    rooms = []
    for view in views:
        name = str(view["name"])
        doc: dict[str, Any] = {"name": name}
        for key in ROOM_FIELDS:
            value = view[key]
            doc[key] = round(value, 3) if isinstance(value, float) else value
        doc["passes_in_flight"] = view["passes_in_flight"]
        doc["dry_run"] = view["dry_run"]
        total = int(view["admitted"])
        doc["admitted"] = max(0, total - admitted_before.get(name, total))
        rooms.append(doc)
    return rooms
