"""The waiting room on the request path: passes, places, the queue page and the poll.

For a request whose rule has a room (``enter``): a valid pass goes to admission as usual,
under a per-pass cap on requests in flight (its lease is released in ``Exchange.finish``,
with the ticket). Without a pass, an admitted place turns into a pass and goes on; an idle
room lets the shopper straight through with a pass; anyone else gets a place and the
queue page (or JSON). ``poll`` answers ``GET /__guard/queue?room=NAME``. A rejected token
is counted by reason and its holder gets a fresh place at the back: never a 500.

Rooms (``Room``, room_state.py) outlive generations; a generation holds a ``RoomTable``.
Nothing here reads a config model: the runtime hands over plain objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from guard.core.admission import Refusal, Ticket
from guard.core.room_control import ADMITTED, QUEUED
from guard.core.room_params import PlaceView
from guard.core.room_schedule import ENDED, NOT_STARTED
from guard.core.room_token import Pass, Place
from guard.proxy.headers import Header
from guard.proxy.room_pages import (
    NONE,
    Returns,
    page_values,
    poll_error,
    queue_answer,
    short_retry,
    view_json,
)
from guard.proxy.room_presented import Presented, presented
from guard.proxy.room_state import Passage, Room, RoomTable

if TYPE_CHECKING:
    from guard.core.rules import CompiledRule
    from guard.proxy.forward import Exchange

__all__ = ["QUEUE_PATH", "Passage", "Room", "RoomTable", "enter", "poll"]

QUEUE_PATH: Final = "/__guard/queue"
_PAGE_METHODS: Final = (b"GET", b"HEAD")


def enter(
    room: Room, ex: Exchange, rule: CompiledRule, route: str | None = None
) -> Ticket | Refusal | None:
    """A Ticket (forward it; ``ex.passage`` is set), a Refusal (answer it as usual), or
    None once the gate has answered by itself (queue page, short retry)."""
    req = ex.req
    adm = ex.gen.admission
    now, wall = ex.gen.clock(), room.wall()
    found = presented(room, req.headers, req.meta)
    if room.dry_run or req.method == b"OPTIONS":
        return _plain(room, ex, rule, now, wall, route)
    if found.pass_token:
        got = room.tokens.read_pass(found.pass_token, wall, room.pass_idle)
        if isinstance(got, Pass):
            return _with_pass(room, ex, rule, got, False, found, route, wall)
        room.reject("pass", got)
    place: Place | None = None
    if found.place_token:
        read = room.tokens.read_place(found.place_token, wall, room.place_hold)
        if isinstance(read, Place):
            place = read
        else:
            room.reject("place", read)
    control = room.controller
    state = control.state(wall)  # once per request: what every step below is told
    if place is not None:
        converted = control.convert(place, wall)
        if converted is None:
            renewed = control.renewed_place(place, wall)
            _queue(room, ex, rule, place, renewed, found, wall, state)
            return None
        room.count("replayed" if converted[1] else "converted")
        return _with_pass(room, ex, rule, converted[0], True, found, route, wall)
    if control.can_enter_directly(now, wall, state):
        decision = adm.admit(rule, req.meta.client, route)
        if isinstance(decision, Ticket):
            minted = control.enter_directly(now, wall)
            if minted is not None:
                room.count("direct")
                lease = room.passes.acquire(minted.pass_id)  # a new id: always granted
                ex.passage = Passage(
                    room, lease, room.pass_headers(minted, wall, found.header_mode)
                )
                return decision
            decision.release()  # someone queued meanwhile: behind them
        elif decision is None or decision.outcome != "over_capacity":
            return decision
    new = control.take_place(wall, state)
    if new is None:  # the room takes no places now
        if state in (NOT_STARTED, ENDED):
            return _plain(room, ex, rule, now, wall, route)
        _queue(room, ex, rule, None, None, found, wall, state)
        return None
    room.count("issued")
    _queue(room, ex, rule, new, new, found, wall, state)
    return None


def _plain(
    room: Room, ex: Exchange, rule: CompiledRule, now: float, wall: float, route: str | None
) -> Ticket | Refusal | None:
    """The rule without its line: a dry run (counting what the room would have queued),
    OPTIONS, or a room outside its scheduled event."""
    decision = ex.gen.admission.admit(rule, ex.req.meta.client, route)
    if room.dry_run and room.controller.state(wall) not in (NOT_STARTED, ENDED):
        refused = isinstance(decision, Refusal) and decision.outcome == "over_capacity"
        if refused or not room.controller.would_enter_directly(now, wall):
            room.count("would_queue")
            if isinstance(decision, Ticket) and decision.outcome == "admitted":
                decision.outcome = "would_queue"  # forwarded all the same
    if isinstance(decision, Ticket):
        ex.passage = Passage(room, None, [])  # still strips the sold-out header
    return decision


def _with_pass(
    room: Room,
    ex: Exchange,
    rule: CompiledRule,
    p: Pass,
    fresh: bool,
    found: Presented,
    route: str | None,
    wall: float,
) -> Ticket | Refusal | None:
    """A pass holder: the per-pass cap, then every ceiling as usual."""
    req, gen = ex.req, ex.gen
    renewed = room.renewed_pass(p, wall) if not fresh else p
    extra = room.pass_headers(renewed, wall, found.header_mode) if renewed is not None else []
    if fresh:
        extra.append(room.clear_place())
    html_ok = req.meta.accept_html and req.method in _PAGE_METHODS
    lease = room.passes.acquire(p.pass_id)
    if lease is None:
        room.count("pass_busy")
        ex.outcome = "pass_busy"
        gen.admission.record(rule, "pass_busy")
        data = short_retry(b"", False, "pass_busy", rule.name, extra, _closes(ex), _head(ex))
        ex.answer(data, 429)
        return None
    decision = gen.admission.admit(rule, req.meta.client, route)
    if isinstance(decision, Ticket):
        ex.passage = Passage(room, lease, extra)
        return decision
    lease.release()
    if decision is None or decision.outcome != "over_capacity":
        return decision
    room.controller.note_pass_refused(gen.clock())
    room.count("pass_refused")
    ex.outcome = decision.outcome
    gen.admission.record(rule, "over_capacity")
    page = gen.pages.waiting.render(rule.name, req.meta.request_id) if html_ok else b""
    data = short_retry(page, html_ok, decision.outcome, rule.name, extra, _closes(ex), _head(ex))
    ex.answer(data, 503)
    return None


def _queue(
    room: Room,
    ex: Exchange,
    rule: CompiledRule,
    place: Place | None,
    to_sign: Place | None,
    found: Presented,
    wall: float,
    state: str,
) -> None:
    """The queue page or JSON for ``place`` (None: the room is closed to new places)."""
    req = ex.req
    view = room.view(place, wall, state)
    extra = room.place_headers(to_sign, wall, found.header_mode) if to_sign is not None else []
    doc = view_json(room.name, state, view, _returns(room, place, view, wall))
    html_ok = req.meta.accept_html and req.method in _PAGE_METHODS and not found.header_mode
    body = None
    if html_ok:
        rid = (req.meta.request_id or b"").decode("latin-1")
        body = room.page.render(page_values(room.name, view, rid))
    ex.outcome = "queued"
    ex.gen.admission.record(rule, "queued")
    status = 200 if html_ok else room.api_status
    ex.answer(queue_answer(status, doc, body, extra, _closes(ex), _head(ex)), status)


def poll(ex: Exchange, target: str) -> None:
    """``GET /__guard/queue?room=NAME``: where a place stands. Renews a queued place's
    ``seen``; an admitted place turns into its pass here (never renewed after that)."""
    adm = ex.gen.admission
    room, back = _polled_room(ex.gen.rooms, target)
    if room is None or ex.req.method not in _PAGE_METHODS:
        adm.record(adm.default_rule, "bad_request")
        if room is None:
            return ex.answer(poll_error(404, "unknown_room", _closes(ex)), 404)
        return ex.answer(poll_error(405, "method_not_allowed", _closes(ex)), 405)
    ex.outcome = "queue_poll"
    adm.record(adm.default_rule, "queue_poll")
    wall = room.wall()
    state = room.controller.state(wall)
    found = presented(room, ex.req.headers, ex.req.meta)
    extra: list[Header] = []
    view: PlaceView | None = None
    place: Place | None = None
    if found.pass_token:
        got = room.tokens.read_pass(found.pass_token, wall, room.pass_idle)
        if isinstance(got, Pass):
            view = PlaceView(ADMITTED, 0, 0.0, True, wall, 0.0)
            found.place_token = b""
        else:
            room.reject("pass", got)
    if found.place_token:
        read = room.tokens.read_place(found.place_token, wall, room.place_hold)
        if isinstance(read, Place):
            place = read
        else:
            room.reject("place", read)
            place = room.controller.take_place(wall, state)  # a fresh place, at the back
            if place is not None:
                room.count("issued")
                extra = room.place_headers(place, wall, found.header_mode)
        if place is not None:
            view, extra = _poll_place(room, place, wall, state, found, extra)
            if view.status == QUEUED and back:
                place, extra = _return(room, place, view, wall, found, extra)
    if view is None:
        view = PlaceView(NONE, refresh_seconds=room.controller.params.refresh_max)
    doc = view_json(room.name, state, view, _returns(room, place, view, wall))
    ex.answer(queue_answer(200, doc, None, extra, _closes(ex), _head(ex)), 200)


def _polled_room(rooms: RoomTable | None, target: str) -> tuple[Room | None, bool]:
    """The room a poll names and whether it asks for a return time (``return=1``)."""
    if rooms is None:
        return None, False
    query = target.partition("?")[2]
    room = rooms.by_query.get(query)  # the usual "room=NAME" alone
    if room is not None:
        return room, False
    return rooms.by_name.get(_query(query, "room")), _query(query, "return") == "1"


def _poll_place(
    room: Room, place: Place, wall: float, state: str, found: Presented, extra: list[Header]
) -> tuple[PlaceView, list[Header]]:
    converted = room.controller.convert(place, wall)
    if converted is not None:
        room.count("replayed" if converted[1] else "converted")
        headers = room.pass_headers(converted[0], wall, found.header_mode)
        headers.append(room.clear_place())
        return PlaceView(ADMITTED, 0, 0.0, True, wall, 0.0), headers
    if not extra:
        renewed = room.controller.renewed_place(place, wall)
        if renewed is not None:
            extra = room.place_headers(renewed, wall, found.header_mode)
    return room.view(place, wall, state), extra


def _return(
    room: Room, place: Place, view: PlaceView, wall: float, found: Presented, extra: list[Header]
) -> tuple[Place, list[Header]]:
    """``&return=1``: the place re-signed to be held until after its ETA (the shopper may
    close the tab); nothing changes for a short wait."""
    held = room.controller.return_offer(place, view, wall, room.return_after, room.place_hold)
    if held is None:
        return place, extra
    room.count("returns")
    return held, room.place_headers(held, wall, found.header_mode)


def _returns(room: Room, place: Place | None, view: PlaceView, wall: float) -> Returns:
    """What the page and the JSON say about coming back later."""
    if place is None or view.status != QUEUED:
        return Returns(False, 0.0)
    offered = view.eta_known and view.eta_seconds > room.return_after
    return Returns(offered, float(place.return_at))


def _query(query: str, name: str) -> str:
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return ""


def _closes(ex: Exchange) -> bool:
    req = ex.req
    return not req.keep_alive or not req.discardable


def _head(ex: Exchange) -> bool:
    return ex.req.method == b"HEAD"
