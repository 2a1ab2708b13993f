"""A waiting room's live objects on the proxy side, and what one exchange holds of it.

``Room`` outlives config generations: the same name keeps its controller, store, per-pass
leases and counters across reloads, so no number is issued twice and nobody loses their
place. Each generation ``configure``s it (keys, page, cookie and status settings) and holds
a ``RoomTable`` from rule names to rooms. ``Passage`` is one forwarded exchange's part: the
per-pass lease (released with the ticket, in ``Exchange.finish``) and the response headers
the backend's answer must carry (Set-Cookie; the sold-out header taken off).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from guard.core.admission import Admission
from guard.core.clock import Clock
from guard.core.room_control import MIN_KNOWN_SPEED, RoomController
from guard.core.room_params import PlaceView
from guard.core.room_passes import PassInFlight, PassLease
from guard.core.room_schedule import QUEUEING
from guard.core.room_store import CLOSED
from guard.core.room_token import KeyRing, Pass, Place, RoomTokens
from guard.core.rules import CompiledRule
from guard.proxy.headers import Header
from guard.proxy.room_pages import PRIVATE, QueuePage, cookie

MAX_SKEW: Final = 30.0
PASS_RENEW: Final = 60.0
"""A pass's ``seen`` is re-signed at most this often (Set-Cookie is rare on the way back)."""


class Room:
    """One named line, with everything the request path needs to serve it."""

    __slots__ = (
        "api_status", "controller", "cookie_secure", "counts", "dry_run", "epoch", "event",
        "keys", "name", "page", "pass_cookie", "pass_idle", "passes", "place_cookie",
        "place_hold", "rejected", "return_after", "sold_out_header", "tokens", "wall",
    )  # fmt: skip

    def __init__(self, name: str, controller: RoomController, keys: KeyRing, wall: Clock) -> None:
        self.name = name
        self.controller = controller
        self.wall = wall
        self.keys = keys
        self.event = "default"
        self.epoch = controller.store.epoch()
        self.tokens = RoomTokens(name, self.event, self.epoch, keys, MAX_SKEW)
        self.passes = PassInFlight(8)
        self.page = QueuePage(b"{{position}}")
        self.place_cookie = b"guard_place_" + name.encode()
        self.pass_cookie = b"guard_pass_" + name.encode()
        self.place_hold = controller.params.place_hold
        self.pass_idle = 300.0
        self.api_status = 429
        self.cookie_secure = False
        self.sold_out_header = False
        self.dry_run = False
        self.return_after = 600.0
        self.counts: dict[str, int] = {}
        self.rejected: dict[str, int] = {}  # "place:bad_mac" -> count

    def configure(
        self, *, event: str, keys: KeyRing, page: QueuePage, pass_idle: float,
        pass_max_in_flight: int, api_status: int, cookie_secure: bool,
        sold_out_header: bool, dry_run: bool, return_after: float = 600.0,
    ) -> None:  # fmt: skip
        """A generation's settings (the controller's own are retuned by the runtime)."""
        self.event, self.keys, self.page = event, keys, page
        self.place_hold = self.controller.params.place_hold
        self.pass_idle = pass_idle
        self.passes.limit = pass_max_in_flight
        self.api_status = api_status
        self.cookie_secure = cookie_secure
        self.sold_out_header = sold_out_header
        self.dry_run = dry_run
        self.return_after = return_after
        self._new_tokens()

    def _new_tokens(self) -> None:
        self.epoch = self.controller.store.epoch()
        self.tokens = RoomTokens(self.name, self.event, self.epoch, self.keys, MAX_SKEW)

    def tick(self, now: float, wall: float, utilisation: float) -> None:
        self.controller.tick(now, wall, utilisation)
        if self.controller.store.epoch() != self.epoch:  # the line was reset
            self._new_tokens()

    # -- counters ---------------------------------------------------------------------
    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def reject(self, kind: str, reason: str) -> None:
        key = kind + ":" + reason
        self.rejected[key] = self.rejected.get(key, 0) + 1

    # -- tokens and views ---------------------------------------------------------------
    def view(self, place: Place | None, wall: float, state: str = "") -> PlaceView:
        """What a poll shows; ``state``: the room's state at ``wall`` if already known."""
        if not state:
            state = self.controller.state(wall)
        if place is None:
            return PlaceView(state, refresh_seconds=self.controller.params.refresh_max)
        return self.controller.view(place, wall, state)

    def renewed_pass(self, p: Pass, wall: float) -> Pass | None:
        if wall - p.seen < min(PASS_RENEW, self.pass_idle / 4):
            return None
        return Pass(p.pass_id, p.issued_at, int(wall), p.expires_at, p.flags)

    def pass_headers(self, p: Pass, wall: float, header_mode: bool) -> list[Header]:
        token = self.tokens.pass_token(p)
        age = int(min(self.pass_idle, p.expires_at - wall))
        cookie_header = cookie(self.pass_cookie, token, age, self.cookie_secure)
        return [cookie_header, (b"X-Guard-Pass", token)] if header_mode else [cookie_header]

    def place_headers(self, place: Place, wall: float, header_mode: bool) -> list[Header]:
        token = self.tokens.place_token(place)
        age = int(max(self.place_hold, place.return_at - wall))
        cookie_header = cookie(self.place_cookie, token, age, self.cookie_secure)
        return [cookie_header, (b"X-Guard-Place", token)] if header_mode else [cookie_header]

    def clear_place(self) -> Header:
        return cookie(self.place_cookie, b"", 0, self.cookie_secure)

    def sold_out(self) -> None:
        """A backend said the sale is over (``X-Guard-Room: sold-out``)."""
        if self.sold_out_header:
            if self.controller.store.state() != CLOSED:
                self.controller.set_operator_state(CLOSED)
                self.count("sold_out")
        else:
            self.count("header_ignored")

    def as_view(self, wall: float) -> dict[str, object]:
        """For /status and the guard_room_* metrics: plain numbers, read at once."""
        c = self.controller
        store = c.store
        state = c.state(wall)
        waiting = c.waiting()
        known = state == QUEUEING and c.speed >= MIN_KNOWN_SPEED
        counts = self.counts
        return {
            "name": self.name, "state": state, "issued": store.issued(),
            "watermark": store.watermark(), "waiting": waiting,
            "waiting_estimated": c.waiting_estimated(), "admit_rate": c.speed,
            "eta_seconds": waiting / c.speed if known and waiting else (0.0 if known else None),
            "admitted": counts.get("direct", 0) + counts.get("converted", 0),
            "brake": c.brake, "alive": c.claims.alive, "epoch": store.epoch(),
            "passes_in_flight": len(self.passes), "dry_run": self.dry_run,
            "counts": dict(counts), "rejected": dict(self.rejected),
        }  # fmt: skip


class Passage:
    """A forwarded exchange's part of its room. ``release`` is idempotent (the lease's is)."""

    __slots__ = ("headers", "lease", "room")

    def __init__(self, room: Room, lease: PassLease | None, headers: list[Header]) -> None:
        self.room = room
        self.lease = lease
        self.headers = headers

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def response_block(self, block: bytes, sold_out: bool) -> bytes:
        """The backend's header lines (X-Guard-Room already taken off by the parser) and,
        if guard sets a cookie, Cache-Control replaced by private, no-store: a CDN must
        never hand one shopper's pass to everyone. A sold-out answer is acted on here."""
        if sold_out:
            self.room.sold_out()
        headers = self.headers
        if not headers:
            return block
        out: list[bytes] = []
        for line in block.split(b"\r\n"):
            if line and line.partition(b":")[0].strip().lower() != b"cache-control":
                out.append(line + b"\r\n")
        for name, value in (PRIVATE, *headers):
            out.append(name + b": " + value + b"\r\n")
        return b"".join(out)


class RoomTable:
    """A generation's rooms: by rule name (the request path) and by room name (the poll)."""

    __slots__ = ("by_name", "by_query", "by_rule", "rules_of")

    def __init__(
        self, rooms: Iterable[Room], rule_rooms: dict[str, str], admission: Admission
    ) -> None:
        self.by_name: dict[str, Room] = {room.name: room for room in rooms}
        # The poll's usual query string, "room=NAME", looked up whole (no parsing).
        self.by_query: dict[str, Room] = {"room=" + n: room for n, room in self.by_name.items()}
        self.by_rule: dict[str, Room] = {r: self.by_name[n] for r, n in rule_rooms.items()}
        self.rules_of: dict[str, list[CompiledRule]] = {name: [] for name in self.by_name}
        for rule in admission.rules:
            room = self.by_rule.get(rule.name)
            if room is not None:
                self.rules_of[room.name].append(rule)

    def tick(self, admission: Admission, now: float, wall: float) -> None:
        for name, room in self.by_name.items():
            room.tick(now, wall, utilisation(admission, self.rules_of[name]))


def utilisation(admission: Admission, rules: list[CompiledRule]) -> float:
    """The tightest ceiling a room's requests meet: its rules', the site's, the backends'
    (together: a request goes to whichever has room)."""
    used = 0.0
    for rule in rules:
        if rule.max_active:
            used = max(used, rule.counter.value / rule.max_active)
    if admission.site_max_active:
        used = max(used, admission.site.value / admission.site_max_active)
    total = active = 0
    for backend in admission.backends:
        if not backend.draining:
            total += backend.max_active
            active += backend.counter.value
    return max(used, active / total) if total else used
