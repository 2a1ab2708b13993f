"""How a `guard surge` shopper follows guard's waiting room, and what the line looked like.

guard marks every answer of a room's line with `X-Guard-Queue` (the queue page a browser
gets as `200 text/html`, an app's `api_status` JSON, a poll of `/__guard/queue`), so such
an answer is never counted as admitted. The shopper keeps its place (the cookie, and for
an app the `X-Guard-Place` header too) and asks again after the advertised refresh
(`Retry-After`): a browser reloads the page (as the page's `<noscript>` refresh does), an
app polls `/__guard/queue?room=NAME`. It leaves the line when let in (its pass then carries
it through its journey), when the room is closed or over (sold out), or when the next
refresh would come later than its patience allows (gave up).

Fairness, as a shopper can see it: a pair of shoppers in line is *out of order* when the
one who queued later was already let in while the earlier one was still told to wait
(its request sent after the other's admission came back). Pairs not proven out of order
count as in order; surge reports the share.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard.tools.surge_client import Outcome
    from guard.tools.surge_engine import Shopper
    from guard.tools.surge_report import Stats

WAIT_STATES = frozenset({"queued", "paused", "prequeue"})
OVER_STATES = frozenset({"closed", "ended"})
_DATA = re.compile(rb'data-(room|status|position|refresh)="([^"]*)"')


@dataclass(frozen=True)
class Said:
    """What one queue answer said."""

    status: str  # queued, paused, prequeue, admitted, closed, ended, none, or "" (unreadable)
    position: int | None
    room: str


def read_answer(body: bytes) -> Said:
    """The JSON of an app's answer or a poll, or the data-* attributes of the queue page's
    card (the shipped page has them; a custom page without them reads as "")."""
    text = body.lstrip()
    fields: dict[str, Any] = {}
    if text.startswith(b"{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            fields = doc
    else:
        fields = {k.decode(): v.decode("latin-1") for k, v in _DATA.findall(text[:65536])}
    position = fields.get("position")
    try:
        number = int(position) if position is not None else None
    except (TypeError, ValueError):
        number = None
    return Said(str(fields.get("status", "")), number, str(fields.get("room", "")))


class Line:
    """One shopper's time in line (sent/done times from the engine's clock)."""

    __slots__ = ("admitted", "first_position", "joined", "poll", "since", "told_wait")

    def __init__(self, joined: float, since: float, position: int | None) -> None:
        self.joined = joined  # when its first queued request was sent: the line's order
        self.since = since  # when that request was due: the wait starts there
        self.told_wait = joined  # when its last "wait" answer's request was sent
        self.admitted = math.inf  # when it learnt it was let in (answer received)
        self.first_position = position
        self.poll = ""  # an app's poll URL while it polls; "" for a browser (it reloads)


@dataclass
class LineStats:
    answers: int = 0  # requests answered by the line (pages, app JSON, polls)
    shoppers: int = 0  # shoppers who got into line
    admitted: int = 0  # ... let in and admitted afterwards
    sold_out: int = 0  # ... told the room is closed or over
    gave_up: int = 0  # ... whose patience ran out in line
    waits: array[float] = field(default_factory=lambda: array("d"))
    positions: array[float] = field(default_factory=lambda: array("d"))
    lines: list[Line] = field(default_factory=list)


class Follower:
    """The engine's side of the line: what a shopper does with a queue answer."""

    def __init__(self, stats: Stats, patience: float) -> None:
        self.all = stats
        self.stats = stats.line
        self.patience = patience

    def answer(self, shopper: Shopper, now: float, outcome: Outcome) -> float | None:
        """When the shopper asks next (the page or a poll, as ``shopper.line.poll`` says),
        or None when it leaves the line for good (sold out, or out of patience)."""
        stats = self.stats
        stats.answers += 1
        said = read_answer(b"".join(outcome.body))
        line = shopper.line
        if line is None:
            line = shopper.line = Line(shopper.sent, shopper.due, said.position)
            stats.shoppers += 1
            stats.lines.append(line)
            if said.position is not None:
                stats.positions.append(said.position)
        if said.status == "admitted":  # a poll: the pass came with it; the page at once
            line.admitted = min(line.admitted, now)
            line.poll = ""
            return now
        if said.status in OVER_STATES:
            stats.sold_out += 1
            return None
        line.told_wait = shopper.sent
        due = now + (outcome.retry_after if outcome.retry_after is not None else 1.0)
        if due - shopper.arrival > self.patience:
            stats.gave_up += 1
            self.all.gave_up += 1
            return None
        # An app polls the room it was told; a browser, or a place gone ("none"), asks the page.
        app = shopper.tokens is not None
        line.poll = poll_path(said.room) if app and said.room and said.status in WAIT_STATES else ""
        return due

    def admitted(self, shopper: Shopper, now: float) -> float | None:
        """The page was admitted: the wait in line, if the shopper was in one."""
        line = shopper.line
        if line is None:
            return None
        shopper.line = None  # a later page of the journey may queue again: a new line
        line.admitted = min(line.admitted, now)
        wait = shopper.due - line.since
        self.stats.admitted += 1
        self.stats.waits.append(wait)
        return wait


def apply_tokens(tokens: dict[str, str], sent: list[tuple[str, str]]) -> None:
    """An app's X-Guard-* tokens: a pass replaces the place."""
    for name, value in sent:
        tokens[name] = value
        if name == "X-Guard-Pass":
            tokens.pop("X-Guard-Place", None)


def poll_path(room: str) -> str:
    return "/__guard/queue?room=" + room


def out_of_order(lines: list[Line]) -> tuple[int, int]:
    """(pairs proven out of order, all pairs) among the shoppers who were in line:
    i joined before j, yet j was let in before i was last told to wait. O(n log n): walk
    from the last to join, counting earlier admissions among those who joined later."""
    ordered = sorted(lines, key=lambda line: line.joined)
    times = sorted({line.admitted for line in ordered if line.admitted != math.inf})
    tree = [0] * (len(times) + 1)  # a Fenwick tree over the ranks of admission times
    bad = 0
    for line in reversed(ordered):
        rank = bisect.bisect_left(times, line.told_wait)  # admissions strictly before it
        while rank > 0:
            bad += tree[rank]
            rank -= rank & -rank
        if line.admitted != math.inf:
            slot = bisect.bisect_left(times, line.admitted) + 1
            while slot <= len(times):
                tree[slot] += 1
                slot += slot & -slot
    n = len(ordered)
    return bad, n * (n - 1) // 2
