"""The background task that keeps this instance's waiting rooms in step with the cluster.

One asyncio task per process (started by the room registry in cluster mode): about every
``interval`` (the room tick), and at once when a room's block of place numbers runs low,
it runs guard/cluster/lua/room.lua once per cluster room through a ``RedisLink``. Nothing
on the request path awaits it: the stores answer from what the last reply left them.
With Redis unreachable the line holds still (no watermark movement, no new blocks) and
the stores keep answering; the next reply re-asserts and heals (docs/CLUSTER.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from guard.cluster.client import Arg, Script
from guard.cluster.room_store import ClusterRoomStore

log: Final = logging.getLogger("guard")

MIN_GAP: Final = 0.01
"""Between two rounds woken early: a room refused a block (recovery) must not spin."""
STALE_AFTER: Final = 3.0
"""A member whose proposal is older than this no longer brakes or speeds the line."""
MAX_GAP: Final = 2.0
"""After a gap with no instance alive, the line moves by at most this many seconds."""


class ScriptLink(Protocol):
    """What the sync needs of guard.cluster.client.RedisLink."""

    run_id: str | None

    async def evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any: ...

    async def close(self) -> None: ...


class RoomSync:
    """See the module docstring. ``stores()``: the cluster rooms' stores right now (rooms
    come and go with reloads)."""

    def __init__(
        self,
        link: ScriptLink,
        stores: Callable[[], Iterable[ClusterRoomStore]],
        interval: float,
        recovery_window: float,
    ) -> None:
        self.link = link
        self.stores = stores
        self.interval = interval
        self.params = (recovery_window, STALE_AFTER, MAX_GAP)
        self.script = Script.load("room")
        self.wake = asyncio.Event()
        self.calls = self.failures = 0
        self._run_id: str | None = None
        self._fresh = False
        self._down_logged = False

    def low(self) -> None:
        """A store's block runs low: sync now (called on the request path: only sets a flag)."""
        self.wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.round()
            self.wake.clear()
            # A timer that sets the event, not a timeout around the wait: a cancel that
            # meets a timeout is not lost this way (asyncio.timeout in 3.11).
            timer = loop.call_later(self.interval, self.wake.set)
            try:
                await self.wake.wait()
            finally:
                timer.cancel()
            rest = started + MIN_GAP - loop.time()
            if rest > 0:
                await asyncio.sleep(rest)

    async def round(self) -> None:
        """One call per cluster room."""
        for store in list(self.stores()):
            store.on_low = self.low
            await self.sync(store)

    async def sync(self, store: ClusterRoomStore) -> bool:
        args = store.request(self.params, self._fresh)
        self.calls += 1
        try:
            reply = await self.link.evalsha(
                self.script, [store.keys.room, store.keys.members], args
            )
        except Exception as err:  # RedisUnavailable, a script error: the line holds still
            self.failures += 1
            if not self._down_logged:
                log.warning("cluster room sync failed (%s): the line holds still", err)
                self._down_logged = True
            return False
        reply = list(reply)
        if self._note_server():  # a block from a server that may have lost grants: unused
            reply[6] = reply[7] = 0
        if self._down_logged:
            log.info("cluster room sync back")
            self._down_logged = False
        store.apply(args, reply)
        return True

    def _note_server(self) -> bool:
        """A different Redis server (restart, failover): re-assert with ``fresh`` once,
        which opens the recovery window even when the new server kept the room's keys."""
        run_id = self.link.run_id
        self._fresh = self._run_id is not None and run_id is not None and run_id != self._run_id
        if run_id is not None:
            self._run_id = run_id
        return self._fresh
