"""The pure arithmetic of leased allocations (cluster mode); no I/O, time passed in.

Each instance admits synchronously against local limits; a background task (the lease
manager, guard.cluster.manager) leases those limits from Redis. This module decides what
to ask for, what to apply locally, and what to do when the lease can no longer be renewed.
Units: ceilings in slots; rates in milli-tokens per second (integers for Redis); bursts in
tokens.

Safety (no overshoot): a limit only ever rises after Redis granted it (``granted``) and is
lowered *before* a smaller allocation is asked for (``before_call``), so while the lease is
valid every instance's limit is at most what Redis records for it, and Redis never records
more than the cap in total (growth only from what nobody holds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

FailMode = Literal["keep", "closed", "open"]
HMIN: Final = 8  # the smallest headroom on ceilings large enough for it (else 1)
RATE_SLACK: Final = 1.25  # a rate share asks a quarter above the measured arrivals


def headroom(cap: int, members: int, arrivals_per_s: float, headroom_s: float) -> int:
    """H: about one round trip of arrivals, at least HMIN (1 for tiny ceilings), at most
    the cap split evenly over the members."""
    members = max(1, members)
    hmin = HMIN if cap >= members * HMIN else 1
    return max(hmin, min(cap // members, math.ceil(arrivals_per_s * headroom_s)))


def want(used: int, h: int, fair: int, overloaded: bool, cap: int) -> int:
    """What to hold: in use plus headroom; under overload no more than the fair share
    (but never less than in use: those slots are really held)."""
    w = used + h
    if overloaded:
        w = min(w, max(fair, used))
    return max(used, min(w, cap))


def give_back(wanted: int, used: int, alloc: int, total: int, cap: int) -> int:
    """The sum of allocations is over the cap (a reload lowered it, or claims re-asserted
    more): ask for this member's part of the excess back, down to what is in use. Rounded-up
    fair shares alone would keep the sum over the cap. The member lowers its own limit
    before sending (Redis never takes back a slot the member may still be filling)."""
    excess = total - cap
    if excess <= 0:
        return wanted
    return max(used, min(wanted, alloc - excess))


def rate_want(arrivals_milli: int, h: int, fair: int, overloaded: bool, cap: int) -> int:
    """A rate share: the measured arrival rate with slack, at least h; under overload at
    most the fair share."""
    w = max(h, math.ceil(arrivals_milli * RATE_SLACK))
    if overloaded:
        w = min(w, fair)
    return max(0, min(w, cap))


def burst_share(burst: int, rate_share: int, rate_cap: int, members: int) -> int:
    """The burst that goes with a rate share: the same fraction of the burst, rounded up,
    and at least 2 tokens when the burst allows it for every member (1 otherwise).

    Why not less: a bucket admits only whole tokens, so a bucket of 1 refills to full
    between two arrivals and throws the rest away (at 1.5x its share it admits 3/4 of it);
    2 tokens absorb that. The sum may ask more than the burst: Redis grants only from what
    is free (the burst scope's demand is this ask), so the total never exceeds it."""
    if rate_cap <= 0 or rate_share <= 0:
        return 0
    floor = 2 if burst >= 2 * max(1, members) else 1
    return min(burst, max(floor, -(-burst * rate_share // rate_cap)))


def local_limit(alloc: int, fair: int, overloaded: bool) -> int:
    """The limit admission applies: the allocation, but under overload no more than the
    fair share (slots above it are not reused, they drain back to the others)."""
    return min(alloc, fair) if overloaded else alloc


def needs_call(limit: int, used: int, alloc: int, wanted: int, h: int) -> bool:
    """Call Redis now (before the heartbeat): running low and wanting more, or holding
    two headrooms more than wanted."""
    low = limit - used <= h // 2 and wanted > alloc
    return low or alloc - wanted >= 2 * h


def fail_limit(mode: FailMode, kept: int, cap: int) -> int:
    """The limit once the lease could not be renewed in time: keep the last one, admit
    nothing (closed), or no cluster limit (open: the whole ceiling, like a lone instance)."""
    if mode == "keep":
        return kept
    return 0 if mode == "closed" else cap


@dataclass
class LeaseClock:
    """Local validity of the lease: send time of the last successful call + TTL - margin,
    on the monotonic clock, so it always ends before Redis's own expiry (which counts from
    when the script ran, later than the send)."""

    ttl: float
    margin: float
    valid_until: float = -math.inf
    renewed: int = 0

    def renewed_at(self, sent: float) -> None:
        self.valid_until = sent + self.ttl - self.margin
        self.renewed += 1

    def valid(self, now: float) -> bool:
        return now < self.valid_until


@dataclass
class DegradedCounter:
    """Decisions taken while the lease was not valid (kept, closed or open), counted off
    the request path as the growth of the decision total between two looks."""

    total: int = 0
    _last: int | None = None

    def look(self, decisions: int, degraded: bool) -> None:
        if degraded and self._last is not None and decisions > self._last:
            self.total += decisions - self._last
        self._last = decisions


class Ewma:
    """An exponentially weighted rate over about ``span`` seconds, from a running total."""

    __slots__ = ("_last_at", "_last_total", "rate", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self.rate = 0.0
        self._last_total: float | None = None
        self._last_at = 0.0

    def update(self, total: float, now: float) -> float:
        if self._last_total is not None and now > self._last_at:
            dt = now - self._last_at
            sample = (total - self._last_total) / dt
            alpha = min(1.0, dt / self.span)
            self.rate += alpha * (sample - self.rate)
        self._last_total, self._last_at = total, now
        return self.rate
