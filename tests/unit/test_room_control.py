"""The admission controller on hand-moved clocks: rate, brake, direct entry, sold-out close,
scheduled events with a shuffled pre-queue, ETA and return-time places."""

from __future__ import annotations

import pytest

from guard.core import FakeClock
from guard.core.room_control import ADMITTED, QUEUED, RoomController
from guard.core.room_params import RoomParams, brake_for
from guard.core.room_schedule import (
    ALWAYS,
    ENDED,
    NOT_STARTED,
    PREQUEUE,
    QUEUEING,
    Schedule,
)
from guard.core.room_store import CLOSED, OPEN, PAUSED, MemoryRoomStore
from guard.core.room_token import FLAG_DIRECT, Place

WALL0 = 1_800_000_000.0
TICK = 0.2


class Room:
    def __init__(self, params: RoomParams, schedule: Schedule = ALWAYS, seed: bytes = b"s") -> None:
        self.clock = FakeClock(50.0)
        self.store = MemoryRoomStore()
        self.room = RoomController(params, self.store, schedule, seed, self.clock())

    @property
    def wall(self) -> float:
        return WALL0 + self.clock()

    def run(self, seconds: float, utilisation: float = 0.0) -> None:
        for _ in range(round(seconds / TICK)):
            self.clock.advance(TICK)
            self.room.tick(self.clock(), self.wall, utilisation)

    def places(self, count: int) -> list[Place]:
        taken = [self.room.take_place(self.wall) for _ in range(count)]
        return [p for p in taken if p is not None]


def test_brake_curve() -> None:
    assert brake_for(0.5, 0.8, 0.95) == 1.0
    assert brake_for(0.8, 0.8, 0.95) == 1.0
    assert brake_for(0.875, 0.8, 0.95) == pytest.approx(0.5)
    assert brake_for(0.95, 0.8, 0.95) == 0.0
    assert brake_for(1.5, 0.8, 0.95) == 0.0


def test_watermark_runs_at_the_admit_rate_at_full_brake() -> None:
    room = Room(RoomParams(admit_rate=20.0))
    room.places(5000)
    room.run(30.0)  # within the claim lag: nobody has been counted absent yet
    assert room.store.watermark() == pytest.approx(600.0, rel=0.01)
    assert room.room.speed == pytest.approx(20.0, rel=0.01)


def test_utilisation_slows_and_stops_the_line() -> None:
    room = Room(RoomParams(admit_rate=20.0))
    room.places(5000)
    room.run(10.0, utilisation=0.875)
    assert room.store.watermark() == pytest.approx(100.0, rel=0.01)
    before = room.store.watermark()
    room.run(10.0, utilisation=0.96)
    assert room.store.watermark() == before
    assert room.room.brake == 0.0


def test_a_refused_pass_holder_stops_the_line_until_it_clears() -> None:
    room = Room(RoomParams(admit_rate=20.0, refusal_hold=1.0))
    room.places(5000)
    room.run(1.0)
    room.room.note_pass_refused(room.clock())
    before = room.store.watermark()
    room.run(TICK)
    assert room.store.watermark() == before  # stopped within one tick
    room.run(0.6)
    assert room.store.watermark() == before
    room.run(1.0)
    assert room.store.watermark() > before


def test_straight_through_while_nobody_waits() -> None:
    room = Room(RoomParams(admit_rate=2.0, admit_burst=3))
    now, wall = room.clock(), room.wall
    passes = []
    while room.room.can_enter_directly(now, wall):
        got = room.room.enter_directly(now, wall)
        assert got is not None
        passes.append(got)
    assert [p.pass_id for p in passes] == [1, 2, 3]  # the burst, then the direct rate is spent
    assert all(p.flags == FLAG_DIRECT for p in passes)
    assert room.store.watermark() == room.store.issued() == 3
    waiting = room.places(3)
    assert [p.number for p in waiting] == [4, 5, 6]
    room.run(0.6)  # the direct rate refilled, but some still wait: no skipping the line
    assert not room.room.can_enter_directly(room.clock(), room.wall)
    assert room.room.view(waiting[0], room.wall).status == ADMITTED
    assert room.room.view(waiting[1], room.wall).status == QUEUED


def test_enter_directly_refuses_if_someone_queued_after_the_check() -> None:
    room = Room(RoomParams(admit_rate=2.0))
    assert room.room.can_enter_directly(room.clock(), room.wall)
    room.places(1)
    assert room.room.enter_directly(room.clock(), room.wall) is None


def test_no_straight_through_when_the_brake_is_shut() -> None:
    room = Room(RoomParams(admit_rate=2.0))
    room.run(TICK, utilisation=0.99)
    assert not room.room.can_enter_directly(room.clock(), room.wall)


def test_eta_and_admit_at_follow_the_measured_speed() -> None:
    room = Room(RoomParams(admit_rate=10.0))
    places = room.places(5000)
    room.run(10.0)
    view = room.room.view(places[499], room.wall)
    assert view.status == QUEUED
    assert view.position == 400
    assert view.eta_known
    assert view.eta_seconds == pytest.approx(40.0, rel=0.02)
    assert view.admit_at == pytest.approx(room.wall + 40.0, rel=1e-6)
    assert 0.9 * 5.0 <= view.refresh_seconds <= 1.1 * 5.0  # ETA/8
    back = room.room.view(places[-1], room.wall)
    assert back.refresh_seconds <= 30.0 * 1.1
    assert back.refresh_seconds >= 30.0 * 0.9


def test_a_replayed_place_yields_the_same_pass_and_no_second_one() -> None:
    room = Room(RoomParams(admit_rate=10.0))
    place = room.places(1)[0]
    assert room.room.convert(place, room.wall) is None  # not admitted yet
    room.run(1.0)
    first = room.room.convert(place, room.wall)
    again = room.room.convert(place, room.wall + 5)
    assert first is not None and again is not None
    assert (first[0].pass_id, first[1]) == (1, False)
    assert (again[0].pass_id, again[1]) == (1, True)


def test_sold_out_close() -> None:
    room = Room(RoomParams(admit_rate=10.0))
    places = room.places(100)
    room.run(2.0)
    admitted = places[5]
    room.room.set_operator_state(CLOSED)
    frozen = room.store.watermark()
    room.run(10.0)
    assert room.store.watermark() == frozen
    assert room.room.state(room.wall) == CLOSED
    assert room.room.view(places[50], room.wall).status == CLOSED
    assert room.room.take_place(room.wall) is None
    assert not room.room.can_enter_directly(room.clock(), room.wall)
    # Admitted before the close: its pass is still there to claim.
    assert room.room.view(admitted, room.wall).status == ADMITTED
    assert room.room.convert(admitted, room.wall) is not None
    room.room.set_operator_state(OPEN)  # reopened: the line resumes where it stood
    room.run(1.0)
    assert room.store.watermark() == pytest.approx(frozen + 10.0)


def test_pause_holds_the_line_and_keeps_taking_places() -> None:
    room = Room(RoomParams(admit_rate=10.0))
    places = room.places(100)
    room.room.set_operator_state(PAUSED)
    room.run(5.0)
    assert room.store.watermark() == 0
    assert room.room.view(places[0], room.wall).status == PAUSED
    assert room.room.take_place(room.wall) is not None


def test_scheduled_event_with_a_shuffled_prequeue() -> None:
    start = WALL0 + 50.0 + 100.0
    schedule = Schedule(start_at=start, end_at=start + 3600, prequeue_at=start - 60)
    room = Room(RoomParams(admit_rate=50.0), schedule)
    assert room.room.state(room.wall) == NOT_STARTED
    assert room.room.take_place(room.wall) is None
    room.run(40.0)
    assert room.room.state(room.wall) == PREQUEUE
    early = room.places(200)
    room.run(30.0)
    assert room.store.watermark() == 0  # nobody gets in before the start
    view = room.room.view(early[0], room.wall)
    assert view.status == PREQUEUE and not view.eta_known
    assert view.eta_seconds == pytest.approx(30.0)
    room.run(30.0)
    assert room.room.state(room.wall) == QUEUEING
    orders = [room.room.order_of(p.number) for p in early]
    assert sorted(orders) == list(range(1, 201)) and orders != sorted(orders)
    late = room.places(10)
    assert [room.room.order_of(p.number) for p in late] == list(range(201, 211))
    room.run(2.0)
    admitted = {p.number for p in early if room.room.view(p, room.wall).status == ADMITTED}
    assert len(admitted) == int(room.store.watermark()) >= 100
    assert admitted != set(range(1, len(admitted) + 1))  # shuffled, not by arrival
    room.clock.advance(3600.0)
    assert room.room.state(room.wall) == ENDED
    assert room.room.take_place(room.wall) is None


def test_shuffle_is_deterministic_for_a_seed_and_differs_between_seeds() -> None:
    def orders(seed: bytes) -> list[int]:
        start = WALL0 + 50.0 + 10.0
        room = Room(RoomParams(admit_rate=1.0), Schedule(start, None, start - 10), seed)
        places = room.places(50)
        room.run(20.0)
        return [room.room.order_of(p.number) for p in places]

    assert orders(b"a") == orders(b"a")
    assert orders(b"a") != orders(b"b")


def test_reset_starts_a_new_epoch_with_an_empty_line() -> None:
    room = Room(RoomParams(admit_rate=10.0))
    room.places(100)
    room.run(1.0)
    assert room.room.reset(room.clock()) == 1
    assert room.store.issued() == 0 and room.store.watermark() == 0
    assert room.places(1)[0].number == 1


def test_return_place_holds_until_after_the_eta_within_the_cap() -> None:
    room = Room(RoomParams(admit_rate=1.0))
    places = room.places(1000)
    room.run(10.0)
    place = places[-1]
    view = room.room.view(place, room.wall)
    held = room.room.return_place(place, view, room.wall, late=120.0, max_hold=7200.0)
    assert held.return_at == int(room.wall + view.eta_seconds + 120.0)
    capped = room.room.return_place(place, view, room.wall, late=120.0, max_hold=600.0)
    assert capped.return_at == place.issued_at + 600


def test_renewed_place_only_when_the_token_is_old() -> None:
    room = Room(RoomParams(admit_rate=1.0, place_hold=120.0))
    place = room.places(1)[0]
    assert room.room.renewed_place(place, room.wall + 29) is None
    renewed = room.room.renewed_place(place, room.wall + 30)
    assert renewed is not None and renewed.seen == int(room.wall + 30)
    assert renewed.number == place.number and renewed.issued_at == place.issued_at


def test_params_validation() -> None:
    with pytest.raises(ValueError):
        RoomParams(admit_rate=0.0)
    with pytest.raises(ValueError):
        RoomParams(admit_rate=1.0, low=0.95, high=0.8)
    with pytest.raises(ValueError):
        RoomParams(admit_rate=1.0, refresh_min=10.0, refresh_max=5.0)
