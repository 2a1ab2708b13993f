"""The line and its admission controller: how fast strangers become pass holders.

Every place has an ``order`` (its number, or its shuffled rank for pre-queue places) and is
admitted once order <= floor(watermark). The watermark moves by time, never by who shows up:

    brake = 0 while a pass holder was refused by a ceiling in the last ``refusal_hold`` s,
            else 1 below ``low`` utilisation of the room's tightest ceiling, linear to 0 at
            ``high``
    speed = admit_rate * brake / max(alive, 1 / max_ghost_boost)
    watermark = min(issued, watermark + speed * dt)

``alive`` (ClaimWindow) is the measured share of admitted places whose holders came for their
pass: with half the line abandoned the watermark runs twice as fast, so the shoppers still
there are admitted at ``admit_rate``, and nobody waits behind a ghost (AWS #154). The
position of a place, order - floor(watermark), never rises within an epoch. ETA = position
/ speed, where speed is an EWMA of the watermark's movement.

Pure: time arrives as arguments (``now`` monotonic, ``wall`` wall-clock seconds).
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

from guard.core.bucket import TokenBucket
from guard.core.room_claims import AGAIN, ClaimWindow
from guard.core.room_params import PlaceView, RoomParams, brake_for
from guard.core.room_schedule import ENDED, PREQUEUE, QUEUEING, Schedule, room_state
from guard.core.room_shuffle import Shuffle
from guard.core.room_store import CLOSED, PAUSED, RoomStore
from guard.core.room_token import FLAG_DIRECT, Pass, Place

QUEUED: Final = "queued"
ADMITTED: Final = "admitted"
"""Place statuses besides the room states (prequeue, paused, closed, ended, not_started)."""

SPEED_TAU: Final = 60.0
RETURN_MAX_HOLD: Final = 86_400.0
"""A return time is never more than a day after the place was issued."""
MIN_KNOWN_SPEED: Final = 0.05
"""Below one admission per 20 s the ETA is shown as unknown rather than as hours."""


class RoomController:
    """One room's line over a RoomStore. tick() about every 0.2 s moves the watermark."""

    __slots__ = (
        "_direct",
        "_last_refusal",
        "_last_tick",
        "_seed",
        "_shuffle",
        "brake",
        "claims",
        "params",
        "schedule",
        "speed",
        "store",
    )

    def __init__(
        self, params: RoomParams, store: RoomStore, schedule: Schedule, seed: bytes, now: float
    ) -> None:
        self.params = params
        self.store = store
        self.schedule = schedule
        self._seed = seed
        self._shuffle = Shuffle(self._epoch_seed(), max(0, store.prequeue_size()))
        high = math.floor(store.watermark())
        self.claims = ClaimWindow(params.claim_window(), params.claim_lag(), high)
        self._direct = TokenBucket(params.admit_rate, params.admit_burst, now)
        self._last_tick = now
        self._last_refusal = -math.inf
        self.brake = 1.0
        self.speed = params.admit_rate

    # -- the room ------------------------------------------------------------------------

    def state(self, wall: float) -> str:
        """One of ROOM_STATES. Entering the event freezes and shuffles the pre-queue at
        once (not at the next tick), so no poll in between sees an unshuffled position
        that would then go up."""
        state = room_state(self.schedule.phase_at(wall), self.store.state())
        if state == QUEUEING and self._shuffle.size == 0 and self.store.prequeue_size() < 0:
            self._start_event()
        return state

    def set_operator_state(self, state: str) -> None:
        """open / paused / closed (sold out): shared through the store, so it survives."""
        self.store.set_state(state)

    def reset(self, now: float) -> int:
        """A new epoch: an empty line; every token of the old one becomes ``other_event``."""
        epoch = self.store.new_epoch()
        self._shuffle = Shuffle(self._epoch_seed(), 0)
        self.claims = ClaimWindow(self.params.claim_window(), self.params.claim_lag(), 0)
        self.speed = self.params.admit_rate
        self._last_tick = now
        return epoch

    def retune(self, params: RoomParams, schedule: Schedule, now: float) -> None:
        """A reload changed the room's settings: the line (store, watermark, speed) stays;
        the claim window is rebuilt only if its size or lag changed (its bits are then
        lost: claims already made are counted again as first claims, harmlessly)."""
        old = self.params
        self.params = params
        self.schedule = schedule
        if (params.claim_window(), params.claim_lag()) != (old.claim_window(), old.claim_lag()):
            high = math.floor(self.store.watermark())
            self.claims = ClaimWindow(params.claim_window(), params.claim_lag(), high)
        if (params.admit_rate, params.admit_burst) != (old.admit_rate, old.admit_burst):
            self._direct = TokenBucket(params.admit_rate, params.admit_burst, now)

    def waiting(self) -> int:
        """Places issued and not yet passed by the watermark (abandoned ones included)."""
        return self.store.issued() - math.floor(self.store.watermark())

    def waiting_estimated(self) -> float:
        """``waiting`` scaled by the measured share of holders who are still there."""
        return self.waiting() * self.claims.alive

    def note_pass_refused(self, now: float) -> None:
        """A pass holder was refused by a ceiling: admit nobody new until it clears."""
        self._last_refusal = now

    def tick(self, now: float, wall: float, utilisation: float) -> None:
        """Move the watermark for the time since the last tick. ``utilisation`` is the
        highest active / max_active among the ceilings the room's requests meet."""
        dt = now - self._last_tick
        if dt <= 0:
            return
        self._last_tick = now
        state = self.state(wall)
        if state == QUEUEING:
            self._start_event()
        brake = brake_for(utilisation, self.params.low, self.params.high)
        if state != QUEUEING or now - self._last_refusal < self.params.refusal_hold:
            brake = 0.0
        self.brake = brake
        alive = max(self.claims.alive, 1.0 / self.params.max_ghost_boost)
        speed = self.params.admit_rate * brake / alive
        store = self.store
        before = store.watermark()
        after = store.advance(before + speed * dt)
        # With nobody waiting the watermark sits at ``issued``: the line could move at
        # ``speed``, and that is what the next arrival's ETA should use.
        sample = (after - before) / dt if after < store.issued() else speed
        self.speed += (1.0 - math.exp(-dt / SPEED_TAU)) * (sample - self.speed)
        self.claims.slide(math.floor(after), now)

    def _start_event(self) -> None:
        """At the start of a scheduled pre-queue event, freeze and shuffle the pre-queue."""
        store = self.store
        size = store.prequeue_size()
        if size < 0 and self.params.shuffle and self.schedule.prequeue_at is not None:
            size = store.freeze_prequeue()
        if max(0, size) != self._shuffle.size:
            self._shuffle = Shuffle(self._epoch_seed(), max(0, size))

    def _epoch_seed(self) -> bytes:
        return hashlib.sha256(self._seed + b"\0" + str(self.store.epoch()).encode()).digest()

    # -- places and passes ---------------------------------------------------------------

    def order_of(self, number: int) -> int:
        return self._shuffle.order(number)

    def take_place(self, wall: float, state: str = "") -> Place | None:
        """A new place at the back, or None while the room takes none (closed, ended or
        before its pre-queue). ``state``: ``state(wall)`` if the caller has it already."""
        if not state:
            state = self.state(wall)
        if state not in (QUEUEING, PAUSED, PREQUEUE):
            return None
        number = self.store.issue()
        if number <= 0:  # a shared store with no number at hand (cluster mode): next poll
            return None
        stamp = int(wall)
        return Place(number, stamp, stamp)

    def can_enter_directly(self, now: float, wall: float, state: str = "") -> bool:
        """Straight through: the room runs, nobody waits, the direct rate has room. Then
        the proxy runs the ceilings and, only if they admit, calls enter_directly().
        ``state`` as in take_place."""
        store = self.store
        return (
            self.brake > 0.0
            and (state or self.state(wall)) == QUEUEING
            and math.floor(store.watermark()) == store.issued()
            and self._direct.has_token(now)
        )

    def would_enter_directly(self, now: float, wall: float) -> bool:
        """A dry run's straight-through check: as can_enter_directly, and the direct token
        is spent, so the rehearsal counts ``would_queue`` beyond ``admit_rate``."""
        if self.can_enter_directly(now, wall):
            self._direct.take()
            return True
        return False

    def enter_directly(self, now: float, wall: float) -> Pass | None:
        """A pass for a shopper who skipped an empty line; None if someone queued since."""
        number = self.store.enter_directly()
        if number == 0:
            return None
        self._direct.take()
        self.claims.slide(number, now)
        self.claims.claim(number)
        return self.mint_pass(number, wall, FLAG_DIRECT)

    def convert(self, place: Place, wall: float) -> tuple[Pass, bool] | None:
        """An admitted place's pass and whether it had been claimed before; None if the
        place is not admitted yet. The pass id is the place number, so a replayed place
        yields the same pass id again, never a second one (docs/ROOM.md, "Replay")."""
        order = self.order_of(place.number)
        if order > math.floor(self.store.watermark()) or order > self.claims.high:
            return None
        replayed = self.claims.claim(order) == AGAIN
        return self.mint_pass(place.number, wall, 0), replayed

    def mint_pass(self, number: int, wall: float, flags: int) -> Pass:
        stamp = int(wall)
        return Pass(number, stamp, stamp, stamp + math.ceil(self.params.pass_max), flags)

    def view(self, place: Place, wall: float, state: str = "") -> PlaceView:
        """What a poll shows for a valid place (``state`` as in take_place)."""
        if not state:
            state = self.state(wall)
        if state == PREQUEUE:
            eta = self.schedule.seconds_until_start(wall)
            return PlaceView(PREQUEUE, 0, eta, False, wall + eta, self.params.refresh_max)
        if state not in (QUEUEING, PAUSED, CLOSED, ENDED):
            return PlaceView(state, refresh_seconds=self.params.refresh_max)
        position = self.order_of(place.number) - math.floor(self.store.watermark())
        if position <= 0:
            return PlaceView(ADMITTED, 0, 0.0, True, wall, 0.0)
        if state in (CLOSED, ENDED):
            return PlaceView(state, position, refresh_seconds=self.params.refresh_max)
        known = state == QUEUEING and self.speed >= MIN_KNOWN_SPEED
        eta = position / self.speed if known else 0.0
        refresh = self._refresh(eta if known else math.inf, place.number)
        status = QUEUED if state == QUEUEING else PAUSED
        return PlaceView(status, position, eta, known, wall + eta if known else 0.0, refresh)

    def _refresh(self, eta: float, number: int) -> float:
        """ETA/8 within [refresh_min, refresh_max], +-10 % by place number: the front polls
        often, the back rarely, and the polls of one moment do not come back in step."""
        p = self.params
        base = min(max(eta / 8.0, p.refresh_min), p.refresh_max)
        jitter = 0.9 + 0.2 * ((number * 2654435761) % 1000) / 1000.0
        return base * jitter

    def renewed_place(self, place: Place, wall: float) -> Place | None:
        """The place with ``seen`` moved to now (to be re-signed), or None when the token is
        recent enough to keep (a quarter of the hold): a mashed F5 costs one verify and no
        Set-Cookie. The I/O layer never renews an admitted place: its pass replaces it."""
        if wall - place.seen < self.params.place_hold / 4:
            return None
        return Place(place.number, place.issued_at, int(wall), place.return_at, place.flags)

    def return_place(
        self, place: Place, view: PlaceView, wall: float, late: float, max_hold: float
    ) -> Place:
        """ "Come back at admit_at": the place held until ``late`` seconds after its ETA,
        but never beyond ``max_hold`` after it was issued. Signed into the token: no state."""
        until = min(wall + view.eta_seconds + late, place.issued_at + max_hold)
        return Place(place.number, place.issued_at, int(wall), int(until), place.flags)

    def return_offer(
        self, place: Place, view: PlaceView, wall: float, return_after: float, late: float
    ) -> Place | None:
        """The place held until ``late`` after its ETA, when that ETA is known and longer
        than ``return_after`` (a short wait is better spent on the page); else None."""
        if view.status != QUEUED or not view.eta_known or view.eta_seconds <= return_after:
            return None
        return self.return_place(place, view, wall, late, RETURN_MAX_HOLD)
