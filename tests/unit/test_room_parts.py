"""The room's small parts: the store and its snapshots, schedules, the shuffle, the claim
window and the per-pass in-flight cap."""

from __future__ import annotations

import random

import pytest

from guard.core.room_claims import AGAIN, FIRST, UNTRACKED, ClaimWindow
from guard.core.room_passes import PassInFlight
from guard.core.room_schedule import (
    ENDED,
    NOT_STARTED,
    PREQUEUE,
    QUEUEING,
    RUNNING,
    Schedule,
    room_state_at,
)
from guard.core.room_shuffle import Shuffle
from guard.core.room_store import CLOSED, OPEN, PAUSED, MemoryRoomStore, RoomCounters


def test_store_issues_in_order_and_never_moves_the_watermark_back() -> None:
    store = MemoryRoomStore()
    assert [store.issue() for _ in range(3)] == [1, 2, 3]
    assert store.advance(2.5) == 2.5
    assert store.advance(1.0) == 2.5
    assert store.advance(99.0) == 3.0  # never past issued
    assert store.enter_directly() == 4
    assert store.watermark() == 4.0


def test_no_number_is_issued_twice_across_restarts() -> None:
    store = MemoryRoomStore()
    seen: set[int] = set()
    rng = random.Random(1)
    saved = store.snapshot()
    for _ in range(20):
        for _ in range(rng.randrange(500)):
            number = store.issue()
            assert number not in seen
            seen.add(number)
            if rng.random() < 0.01:
                saved = store.snapshot()  # the state file, written now and then
        # A crash: whatever was issued after the last save is covered by the skip.
        store = MemoryRoomStore.restored(RoomCounters.from_dict(saved.as_dict()), skip=1000)
        saved = store.snapshot()  # a restarted guard writes its state at once
    assert len(seen) > 1000


def test_snapshot_round_trips_and_bad_state_files_are_refused() -> None:
    store = MemoryRoomStore()
    for _ in range(10):
        store.issue()
    store.advance(4.5)
    store.set_state(PAUSED)
    store.freeze_prequeue()
    data = store.snapshot().as_dict()
    restored = MemoryRoomStore.restored(RoomCounters.from_dict(data), skip=0)
    assert restored.snapshot().as_dict() == data
    for bad in (
        {**data, "issued": "10"},
        {**data, "watermark": 11},
        {**data, "state": "exploded"},
        {**data, "prequeue_size": -2},
        {k: v for k, v in data.items() if k != "epoch"},
    ):
        with pytest.raises(ValueError):
            RoomCounters.from_dict(bad)
    with pytest.raises(ValueError):
        store.set_state("exploded")


def test_prequeue_freezes_once_and_new_epoch_resets() -> None:
    store = MemoryRoomStore()
    assert store.prequeue_size() == -1
    store.issue()
    assert store.freeze_prequeue() == 1
    store.issue()
    assert store.freeze_prequeue() == 1
    store.set_state(CLOSED)
    assert store.new_epoch() == 1
    assert (store.issued(), store.watermark(), store.prequeue_size()) == (0, 0.0, -1)
    assert store.state() == CLOSED  # a reset does not reopen a sold-out room


def test_schedule_phases() -> None:
    s = Schedule(start_at=100.0, end_at=200.0, prequeue_at=50.0)
    assert [s.phase_at(t) for t in (0, 50, 99.9, 100, 199.9, 200)] == [
        NOT_STARTED,
        PREQUEUE,
        PREQUEUE,
        RUNNING,
        RUNNING,
        ENDED,
    ]
    assert Schedule().phase_at(0) == RUNNING
    assert Schedule(start_at=100.0).phase_at(99) == NOT_STARTED
    assert s.seconds_until_start(70.0) == 30.0 and s.seconds_until_start(150.0) == 0.0
    assert room_state_at(s, OPEN, 150) == QUEUEING
    assert room_state_at(s, PAUSED, 150) == PAUSED
    assert room_state_at(s, PAUSED, 60) == PREQUEUE
    assert room_state_at(s, CLOSED, 60) == CLOSED
    assert room_state_at(s, OPEN, 250) == ENDED


def test_schedule_validation() -> None:
    with pytest.raises(ValueError):
        Schedule(start_at=100.0, end_at=100.0)
    with pytest.raises(ValueError):
        Schedule(prequeue_at=50.0)
    with pytest.raises(ValueError):
        Schedule(start_at=100.0, prequeue_at=150.0)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 20_000])
def test_shuffle_is_a_permutation(size: int) -> None:
    shuffle = Shuffle(b"key", size)
    orders = [shuffle.order(n) for n in range(1, size + 1)]
    assert sorted(orders) == list(range(1, size + 1))
    assert shuffle.order(size + 1) == size + 1 and shuffle.order(0) == 0
    if size >= 64:
        assert orders != sorted(orders)
        assert orders != [Shuffle(b"other", size).order(n) for n in range(1, size + 1)]


def test_claim_window() -> None:
    window = ClaimWindow(size=64, lag=10.0)
    window.slide(100, now=0.0)
    assert window.claim(100) == FIRST
    assert window.claim(100) == AGAIN
    assert window.claim(30) == UNTRACKED  # below the window: cannot tell, not counted
    with pytest.raises(ValueError):
        window.claim(101)
    window.slide(120, now=1.0)
    assert window.claim(100) == AGAIN  # still in the window
    assert window.claim(110) == FIRST
    window.slide(174, now=2.0)  # the window is now (110, 174]: 110's slot is 174's
    assert window.claim(100) == UNTRACKED
    assert window.claim(174) == FIRST  # 110's bit was cleared, not taken for 174's


def test_claim_window_measures_the_alive_share() -> None:
    window = ClaimWindow(size=4096, lag=5.0)
    high = 0
    for second in range(200):
        high += 10
        window.slide(high, now=float(second))
        for order in range(high - 9, high + 1, 2):  # every other admitted order claims
            window.claim(order)
    assert window.alive == pytest.approx(0.5, abs=0.05)


def test_pass_in_flight_cap() -> None:
    cap = PassInFlight(limit=8)
    leases = [cap.acquire(7) for _ in range(8)]
    assert all(lease is not None for lease in leases)
    assert cap.acquire(7) is None  # the ninth concurrent request on one pass
    other = cap.acquire(8)
    assert other is not None
    first = leases[0]
    assert first is not None
    first.release()
    first.release()  # idempotent: the second release frees nothing
    assert cap.in_flight(7) == 7
    assert cap.acquire(7) is not None
    assert cap.acquire(7) is None
    for lease in [*leases[1:], other]:
        assert lease is not None
        lease.release()
    assert cap.in_flight(7) == 1  # the one re-acquired above
    with pytest.raises(ValueError):
        PassInFlight(limit=0)
