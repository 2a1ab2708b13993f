"""A waiting room's line shared by several guard instances through Redis, off the request path.

``ClusterRoomStore`` is a ``RoomStore`` whose every call stays synchronous and local: the
request path never awaits Redis. A background sync (guard/cluster/room_sync.py) runs one Lua
script per room about every 0.2 s (guard/cluster/lua/room.lua) that re-asserts what this
instance knows, advances the shared watermark at Redis ``TIME`` and hands out place numbers
in blocks; ``request()`` builds its arguments and ``apply()`` takes its reply.

- **Place numbers** come from blocks leased with one increment of the room's ``next``:
  about 50 ms of this instance's arrivals (at least 1), asked for again before the block in
  hand runs out. A block older than ``BLOCK_MAX_AGE`` is dropped, so no number is handed out
  more than that long after it was leased: FIFO across instances is exact for arrivals
  further apart than that. With no number at hand (before the first sync, in a recovery
  window, with Redis down) ``issue()`` returns 0 and the shopper gets the room's page
  without a place, to try again at its next poll.
- **The watermark** belongs to the script: ``served = min(issued, served + speed x dt)``
  with ``issued`` the highest number any instance handed out. ``advance()`` ignores the
  controller's proposal and applies the last ``served`` read, so admissions stay within the
  cluster's speed (the cache lags by at most one sync). The speed is the room's
  ``admit_rate`` x the lowest brake of the live instances / their summed alive shares.
- **Operator state, epoch and pre-queue size** are shared: a change made here holds
  locally at once and reaches the others at their next sync.
- **Redis restarted empty**: every call carries this instance's epoch, the highest ``next``
  it has seen and its ``issued``/``served``; the first call re-creates the room from them and
  opens a recovery window in which no block is granted, so no number is issued twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from guard.core.room_store import OPERATOR_STATES, RoomCounters

BLOCK_TIME: Final = 0.05
"""A block is about this many seconds of this instance's arrivals."""
BLOCK_MAX_AGE: Final = 0.5
"""A number is never handed out later than this after its block was leased (FIFO bound)."""
IDLE_RATE: Final = 0.2
"""Below this many arrivals per second no number is leased ahead: the next arrival asks."""
RATE_TAU: Final = 2.0
"""Arrival rate EWMA time constant (s), for the block size."""


class RoomKeys:
    """The room's keys under the cluster's hash tag: one Redis Cluster slot per cluster."""

    __slots__ = ("members", "room")

    def __init__(self, cluster: str, room: str) -> None:
        self.room = "{guard:%s}:room:%s" % (cluster, room)  # noqa: UP031 (braces)
        self.members = self.room + ":members"


class ClusterRoomStore:
    """See the module docstring. ``clock``: monotonic seconds (block ages, arrival rate)."""

    def __init__(
        self,
        keys: RoomKeys,
        member: str,
        clock: Callable[[], float],
        epoch: int,
        seed: RoomCounters | None = None,
    ) -> None:
        self.keys = keys
        self.member = member
        self._clock = clock
        c = seed if seed is not None else RoomCounters(epoch=epoch)
        self._asserted = seed is not None  # a state file's line is re-asserted, else adopted
        self._epoch, self._state, self._prequeue = c.epoch, c.state, c.prequeue_size
        self._next_seen = self._cluster_issued = c.issued
        self._my_issued = self._direct_high = 0
        self._served = self._applied = c.watermark
        self._blocks: list[list[float]] = []  # [first, last, leased_at]
        self._pending_state: str | None = None
        self._freeze = False
        self._reset_from = -1
        self._count, self._rate, self._rate_at = 0, 0.0, clock()
        self.proposal = (1.0, 1.0, 0.0, 1.0)  # brake, alive, admit_rate, ghost boost
        self.adopted = False  # the line changed under the controller: rebuild it
        self.recovering = False
        self.synced = False
        self._starved = False
        self.on_low: Callable[[], None] | None = None

    # -- RoomStore -----------------------------------------------------------------------
    def issued(self) -> int:
        return max(self._cluster_issued, self._my_issued)

    def watermark(self) -> float:
        return self._applied

    def state(self) -> str:
        return self._state

    def epoch(self) -> int:
        return self._epoch

    def prequeue_size(self) -> int:
        return self._prequeue

    def issue(self) -> int:
        """The next number of the block in hand; 0 when there is none (see module doc)."""
        number = self._take()
        if number:
            self._my_issued = max(self._my_issued, number)
        return number

    def advance(self, watermark: float) -> float:
        self._applied = max(self._applied, min(float(self.issued()), self._served))
        return self._applied

    def enter_directly(self) -> int:
        if math.floor(self._applied) != self.issued():
            return 0
        number = self._take()
        if number:
            self._my_issued = max(self._my_issued, number)
            self._direct_high = max(self._direct_high, number)
            self._applied = max(self._applied, float(number))
        return number

    def set_state(self, state: str) -> None:
        if state not in OPERATOR_STATES:
            raise ValueError(f"room state must be one of {', '.join(OPERATOR_STATES)}")
        self._state = self._pending_state = state

    def freeze_prequeue(self) -> int:
        if self._prequeue < 0:
            self._prequeue = self.issued()
            self._freeze = True
        return self._prequeue

    def new_epoch(self) -> int:
        self._reset_from = self._epoch
        self._start_epoch(self._epoch + 1, 0, 0, 0.0, -1)
        return self._epoch

    def snapshot(self) -> RoomCounters:
        issued = self.issued()
        return RoomCounters(
            issued, min(self._applied, float(issued)), self._state, self._epoch, self._prequeue
        )

    # -- blocks ------------------------------------------------------------------------
    def _take(self) -> int:
        now = self._clock()
        self._count += 1
        blocks = self._blocks
        while blocks and (blocks[0][0] > blocks[0][1] or now - blocks[0][2] > BLOCK_MAX_AGE):
            blocks.pop(0)
        number = 0
        if blocks:
            number = int(blocks[0][0])
            blocks[0][0] += 1
        if self.in_hand() < self.block_size() / 2:
            self._starved = True
            if self.on_low is not None:
                self.on_low()
        return number

    def in_hand(self) -> int:
        return sum(int(last - first + 1) for first, last, _ in self._blocks)

    def block_size(self) -> int:
        return max(1, math.ceil(self._rate * BLOCK_TIME))

    def _note_rate(self) -> None:
        now = self._clock()
        dt = now - self._rate_at
        if dt > 0:
            sample = self._count / dt
            self._rate += (1.0 - math.exp(-dt / RATE_TAU)) * (sample - self._rate)
            self._rate = max(self._rate, sample)  # a surge is met at once, decays slowly
        self._count, self._rate_at = 0, now

    # -- sync --------------------------------------------------------------------------
    def request(self, params: tuple[float, float, float], fresh: bool) -> list[str | int]:
        """The script's ARGV (guard/cluster/lua/room.lua). ``params``: recovery window,
        stale member, max gap, all in seconds. Clears what it sends once."""
        self._note_rate()
        now = self._clock()
        fresh_blocks = [b for b in self._blocks if now - b[2] <= BLOCK_MAX_AGE / 2]
        fresh_in_hand = sum(int(b[1] - b[0] + 1) for b in fresh_blocks)
        # An idle instance leases nothing (each unused number is a hole in the line).
        busy = self._starved or self._rate >= IDLE_RATE
        want = self.block_size() if busy and fresh_in_hand < self.block_size() else 0
        self._starved = False
        window, stale, gap = (max(1, round(s * 1000)) for s in params)
        brake, alive, rate, boost = self.proposal
        claim_next = max(self._next_seen, *(int(b[1]) for b in self._blocks), 0)
        return [
            self.member, int(self._asserted), self._epoch, claim_next, self.issued(),
            repr(self._applied), self._prequeue, self._state, self._pending_state or "", want,
            self._direct_high, int(self._freeze), self._reset_from, repr(brake), repr(alive),
            repr(rate), repr(boost), window, stale, gap, "", int(fresh), 24 * 3600 * 1000,
        ]  # fmt: skip

    def apply(self, sent: list[str | int], reply: list[Any]) -> None:
        """The script's reply to ``sent`` (what request() returned)."""
        epoch_i, nxt_i, issued_i = int(reply[0]), int(reply[1]), int(reply[2])
        served, state, preq = float(reply[3]), str(reply[4]), int(reply[5])
        if epoch_i != self._epoch or not self.synced:
            self._start_epoch(epoch_i, nxt_i, issued_i, served, preq)
            self.adopted = True
        self.synced = self._asserted = True
        if sent[12] == self._reset_from:
            self._reset_from = -1
        self._next_seen = max(self._next_seen, nxt_i)
        self._cluster_issued = max(self._cluster_issued, issued_i)
        self._served = max(self._served, served)
        if self._pending_state is not None and sent[8] == self._pending_state:
            self._pending_state = None
        if self._pending_state is None:
            self._state = state
        self._freeze = self._freeze and preq < 0
        if preq >= 0:
            self._prequeue = preq
        first, last = int(reply[6]), int(reply[7])
        if first > 0:
            self._blocks.append([float(first), float(last), self._clock()])
        self.recovering = bool(int(reply[8]))

    def _start_epoch(self, epoch: int, nxt: int, issued: int, served: float, preq: int) -> None:
        self._epoch, self._prequeue = epoch, preq
        self._next_seen, self._cluster_issued = nxt, issued
        self._my_issued = self._direct_high = 0
        self._served = self._applied = min(served, float(issued))
        self._blocks.clear()
        self._freeze = False
