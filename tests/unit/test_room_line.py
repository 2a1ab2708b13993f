"""The line on hand-moved clocks: FIFO under random polling, abandonment, monotone positions,
and a million places in constant memory."""

from __future__ import annotations

import heapq
import random
import tracemalloc

from guard.core import FakeClock
from guard.core.room_control import ADMITTED, QUEUED, RoomController
from guard.core.room_params import RoomParams
from guard.core.room_schedule import ALWAYS
from guard.core.room_store import MemoryRoomStore
from guard.core.room_token import KeyRing, Place, RoomTokens

WALL0 = 1_800_000_000.0
TICK = 0.2


class Room:
    """A controller with a monotonic and a wall clock moved together by hand."""

    def __init__(self, params: RoomParams) -> None:
        self.clock = FakeClock(1000.0)
        self.room = RoomController(params, MemoryRoomStore(), ALWAYS, b"seed", self.clock())

    @property
    def wall(self) -> float:
        return WALL0 + self.clock()

    def step(self, utilisation: float = 0.0) -> None:
        self.clock.advance(TICK)
        self.room.tick(self.clock(), self.wall, utilisation)

    def places(self, count: int) -> list[Place]:
        taken = [self.room.take_place(self.wall) for _ in range(count)]
        return [p for p in taken if p is not None]


def test_admission_order_is_issue_order_whatever_the_polling() -> None:
    room = Room(RoomParams(admit_rate=20.0))
    places = room.places(1000)
    rng = random.Random(11)
    admitted_at: dict[int, float] = {}
    hammer = places[600]  # polls every tick; everyone else about every 2 s
    while len(admitted_at) < len(places):
        room.step()
        polling = [p for p in places if p.number not in admitted_at and rng.random() < 0.1]
        for p in [*polling, hammer]:
            view = room.room.view(p, room.wall)
            if view.status == ADMITTED and p.number not in admitted_at:
                assert room.room.convert(p, room.wall) is not None
                admitted_at[p.number] = room.clock()
                # Whoever is admitted, everyone ahead of it is admitted at that moment.
                ahead = places[: p.number] if p is hammer else [places[rng.randrange(p.number)]]
                assert all(room.room.view(q, room.wall).status == ADMITTED for q in ahead)
            else:
                assert view.status in (ADMITTED, QUEUED)
    assert room.clock() - 1000.0 < 1000 / 20 * 1.2
    # Polling 20x more often bought the hammer nothing: it got in when its number came up.
    assert admitted_at[hammer.number] - 1000.0 >= 600 / 20


def test_position_never_rises_for_a_place() -> None:
    room = Room(RoomParams(admit_rate=5.0))
    places = room.places(600)
    rng = random.Random(3)
    last = {p.number: 10**9 for p in places}
    for tick in range(800):
        utilisation = rng.choice((0.0, 0.5, 0.9, 0.97))
        if tick % 50 == 0:
            room.room.note_pass_refused(room.clock())
        room.step(utilisation)
        for p in rng.sample(places, 30):
            view = room.room.view(p, room.wall)
            assert view.position <= last[p.number]
            last[p.number] = view.position
            if view.status == ADMITTED:
                room.room.convert(p, room.wall)


def run_half_abandoned(rate: float, live: int, seconds: float) -> dict[int, float]:
    """A line of 2 x ``live`` places, every odd one abandoned at once. The live ones poll
    every 2 s (the front's refresh) and claim their pass when admitted."""
    room = Room(RoomParams(admit_rate=rate, refresh_max=10.0))
    places = room.places(2 * live)
    polls = [(room.clock() + (p.number % 10) * 0.2, p.number) for p in places if p.number % 2 == 0]
    heapq.heapify(polls)
    by_number = {p.number: p for p in places}
    claimed: dict[int, float] = {}
    end = room.clock() + seconds
    while room.clock() < end:
        room.step()
        while polls and polls[0][0] <= room.clock():
            _, number = heapq.heappop(polls)
            if room.room.convert(by_number[number], room.wall) is not None:
                claimed[number] = room.clock() - 1000.0
            else:
                heapq.heappush(polls, (room.clock() + 2.0, number))
    return claimed


def test_half_the_line_abandoned_does_not_stall_it() -> None:
    rate, live = 10.0, 1500
    claimed = run_half_abandoned(rate, live, seconds=260.0)
    assert len(claimed) == live  # nobody left waiting behind a ghost
    times = sorted(claimed.values())
    # Once the alive share is measured, the live shoppers are admitted at the configured rate
    # (not at half of it, as a line that counts ghosts would).
    steady = [t for t in times if 80.0 <= t < 120.0]
    assert 0.8 * rate <= len(steady) / 40.0 <= 1.2 * rate
    assert times[-1] < live / rate * 1.35


def test_a_fully_abandoned_line_drains_at_the_ghost_boost() -> None:
    params = RoomParams(admit_rate=10.0, refresh_max=10.0, max_ghost_boost=4.0)
    room = Room(params)
    room.places(5000)
    for _ in range(int(100 / TICK)):
        room.step()
    # Nobody claims: the line speeds up to admit_rate x max_ghost_boost, and no further.
    assert room.room.claims.alive < 0.3
    assert 10.0 * 100 * 2 < room.room.store.watermark() <= 10.0 * 4.0 * 100
    for _ in range(int(100 / TICK)):
        room.step()
    assert room.room.waiting() == 0


def test_a_million_places_cost_what_ten_do() -> None:
    room = Room(RoomParams(admit_rate=1000.0))
    tokens = RoomTokens("sale", "e1", 0, KeyRing({1: bytes(32)}, 1), 30.0)
    rng = random.Random(5)
    tracemalloc.start()
    try:
        room.places(10)
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(1_000_000):
            room.room.take_place(room.wall)
        for _ in range(50):
            room.step()
        for _ in range(2000):
            number = rng.randrange(1, 1_000_011)
            signed = tokens.sign_place(Place(number, int(room.wall), int(room.wall)))
            got = tokens.read_place(signed, room.wall, 120.0)
            assert isinstance(got, Place)
            view = room.room.view(got, room.wall)
            assert view.position == number - int(room.room.store.watermark()) or (
                view.status == ADMITTED
            )
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert room.room.store.issued() == 1_000_010
    assert grown < 256 * 1024, grown
