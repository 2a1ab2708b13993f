"""The waiting rooms of one process: built per generation, kept across reloads, ticked,
saved to their state files.

A room name keeps its controller, store, leases and counters for the life of the process
(a reload only retunes them), so no place number is issued twice and nobody in line loses
their place. With a ``state_file`` the counters also survive a restart: saved every second
and at shutdown, restored at start with ``issued`` moved past anything issued since the
last save. Without one, a start is a new epoch: tokens of the last run are refused as
``other_event`` and their holders queue again (``guard check`` warns).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Final

from guard.cluster.client import RedisLink
from guard.cluster.manager import member_id
from guard.cluster.room_store import ClusterRoomStore, RoomKeys
from guard.cluster.room_sync import RoomSync
from guard.config import Config
from guard.config.cluster import Cluster
from guard.config.rooms import Room as RoomConfig
from guard.config.rooms import read_key_file, room_warnings, shipped
from guard.core.admission import Admission
from guard.core.clock import Clocks
from guard.core.room_control import RoomController
from guard.core.room_params import RoomParams
from guard.core.room_schedule import Schedule
from guard.core.room_store import CLOSED, OPEN, PAUSED, MemoryRoomStore, RoomCounters, RoomStore
from guard.core.room_token import KeyRing
from guard.proxy.responses import Pages
from guard.proxy.room_pages import QueuePage
from guard.proxy.room_state import Room, RoomTable

log: Final = logging.getLogger("guard")

TICK: Final = 0.2
SAVE_EVERY: Final = 1.0
ACTIONS: Final = {"close": CLOSED, "open": OPEN, "pause": PAUSED, "resume": OPEN}
"""Admin actions (POST /rooms/NAME/ACTION) and the operator state each sets."""
MIN_SKIP: Final = 1000
"""Numbers skipped on restore, at least: more than one save interval of a busy line."""


class RoomRegistry:
    """Every room this process serves, by name."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks = clocks
        self.rooms: dict[str, Room] = {}
        self.state_files: dict[str, Path] = {}
        self._random_keys: dict[str, bytes] = {}
        self._issued_at_save: dict[str, int] = {}
        self._peak_issue_rate: dict[str, float] = {}
        self._last_save = 0.0
        self._seeds: dict[str, bytes] = {}
        self.cluster: Cluster | None = None  # cluster mode: the lines are shared (Redis)
        self.member = member_id()
        self.sync: RoomSync | None = None

    def build(self, cfg: Config, admission: Admission, pages: Pages) -> RoomTable | None:
        """The rooms of a new generation (None without rooms); existing names are retuned."""
        names = {rc.name for rc in cfg.rooms}
        self.cluster = self.cluster or cfg.cluster  # the section needs a restart to change
        for name in [n for n in self.rooms if n not in names]:
            self._save(name)
            del self.rooms[name]
            self.state_files.pop(name, None)
        if not cfg.rooms:
            return None
        for rc in cfg.rooms:
            self._configure(rc)
        if "queue.js" not in pages.assets:  # the default page's script, whatever static_dir
            pages.assets["queue.js"] = (
                b"text/javascript; charset=utf-8",
                shipped("queue.js").read_bytes(),
            )
        rule_rooms = {r.name: r.room for r in cfg.rules if r.room is not None}
        return RoomTable(self.rooms.values(), rule_rooms, admission)

    def warn(self, cfg: Config) -> None:
        for warning in room_warnings(cfg):
            log.warning("%s", warning)

    def _configure(self, rc: RoomConfig) -> None:
        now = self.clocks.monotonic()
        keys = self._keys(rc)
        room = self.rooms.get(rc.name)
        if room is None:
            store = self._store(rc)
            seed = hashlib.sha256(keys.subkeys[keys.active] + rc.name.encode()).digest()
            self._seeds[rc.name] = seed
            controller = controller_for(rc, store, seed, now)
            room = self.rooms[rc.name] = Room(rc.name, controller, keys, self.clocks.wall)
            self._issued_at_save[rc.name] = store.issued()
        else:
            room.controller.retune(_params(rc), _schedule(rc), now)
        if rc.state_file is not None:
            self.state_files[rc.name] = rc.state_file
        else:
            self.state_files.pop(rc.name, None)
        room.configure(
            event=rc.event,
            keys=keys,
            page=QueuePage(rc.queue_page.read_bytes()),
            pass_idle=rc.pass_idle,
            pass_max_in_flight=rc.pass_max_in_flight,
            api_status=rc.api_status,
            cookie_secure=rc.cookie_secure,
            sold_out_header=rc.sold_out_header,
            dry_run=rc.dry_run,
            return_after=rc.return_after,
        )

    def _keys(self, rc: RoomConfig) -> KeyRing:
        if rc.key_file is not None:
            secrets = read_key_file(rc.key_file)
            return KeyRing(secrets, next(iter(secrets)))
        # No key file: one random key per room for the life of the process (reloads keep it).
        secret = self._random_keys.setdefault(rc.name, os.urandom(32))
        return KeyRing({0: secret}, 0)

    def _store(self, rc: RoomConfig) -> RoomStore:
        saved = self._restore(rc)
        if self.cluster is not None:
            # The shared line; a state file's counters are re-asserted (a Redis lost empty).
            seed = saved.snapshot() if saved is not None else None
            keys = RoomKeys(self.cluster.name, rc.name)
            wall = int(self.clocks.wall())
            return ClusterRoomStore(keys, self.member, self.clocks.monotonic, wall, seed)
        if saved is not None:
            return saved
        # A new epoch per start: a token of an earlier run can never meet a reissued number.
        return MemoryRoomStore(RoomCounters(epoch=int(self.clocks.wall())))

    def _restore(self, rc: RoomConfig) -> MemoryRoomStore | None:
        path = rc.state_file
        if path is not None and path.exists():
            try:
                doc = json.loads(path.read_text())
                counters = RoomCounters.from_dict(doc["counters"])
                skip = max(MIN_SKIP, int(doc.get("skip", MIN_SKIP)))
                log.info("room %s: restored from %s (issued %d)", rc.name, path, counters.issued)
                return MemoryRoomStore.restored(counters, skip)
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.error("room %s: state file %s unusable (%s): a new line", rc.name, path, err)
        return None

    # -- running ----------------------------------------------------------------------
    def tick(self, table: RoomTable | None, admission: Admission) -> None:
        now, wall = self.clocks.monotonic(), self.clocks.wall()
        if table is not None:
            table.tick(admission, now, wall)
        if self.cluster is not None:
            self._follow_cluster(now)
        if now - self._last_save >= SAVE_EVERY:
            elapsed = now - self._last_save
            self._last_save = now
            for name in list(self.state_files):
                self._note_issue_rate(name, elapsed)
                self._save(name)

    # -- cluster mode -------------------------------------------------------------------
    def start_sync(self) -> list[asyncio.Task[None]]:
        """In cluster mode, the task that keeps the lines in step (guard/cluster/room_sync.py),
        on its own Redis connection: a RedisLink serves one caller at a time."""
        if self.cluster is None or self.sync is not None:
            return []
        link = RedisLink(self.cluster.redis, self.cluster.redis_timeout)
        self.sync = RoomSync(link, self._cluster_stores, TICK, self.cluster.recovery_window)
        return [asyncio.get_running_loop().create_task(self.sync.run())]

    def _cluster_stores(self) -> list[ClusterRoomStore]:
        stores = [room.controller.store for room in self.rooms.values()]
        return [s for s in stores if isinstance(s, ClusterRoomStore)]

    def _follow_cluster(self, now: float) -> None:
        """After a tick: each instance's view of the speed goes to the cluster; a line
        adopted from the cluster (first sync, a reset elsewhere) gets a fresh controller."""
        for name, room in self.rooms.items():
            c = room.controller
            store = c.store
            if not isinstance(store, ClusterRoomStore):
                continue
            store.proposal = (
                c.brake,
                c.claims.alive,
                c.params.admit_rate,
                c.params.max_ghost_boost,
            )
            if store.adopted:
                store.adopted = False
                room.controller = RoomController(
                    c.params, store, c.schedule, self._seeds[name], now
                )

    def _note_issue_rate(self, name: str, elapsed: float) -> None:
        room = self.rooms.get(name)
        if room is None or elapsed <= 0 or elapsed > 10 * SAVE_EVERY:
            return
        issued = room.controller.store.issued()
        rate = (issued - self._issued_at_save.get(name, issued)) / elapsed
        self._issued_at_save[name] = issued
        self._peak_issue_rate[name] = max(self._peak_issue_rate.get(name, 0.0), rate)

    def save_all(self) -> None:
        for name in list(self.state_files):
            self._save(name)

    def _save(self, name: str) -> None:
        path, room = self.state_files.get(name), self.rooms.get(name)
        if path is None or room is None:
            return
        # A crash loses at most a save interval: skip 5 s of the fastest issuing seen.
        skip = max(MIN_SKIP, math.ceil(5 * self._peak_issue_rate.get(name, 0.0)))
        doc = {"counters": room.controller.store.snapshot().as_dict(), "skip": skip}
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError as err:
            log.error("room %s: cannot write state file %s: %s", name, path, err)

    def command(self, name: str, action: str) -> str | None:
        """An operator's close / open / pause / resume: the room's state after it, or None
        for an unknown room or action. ``resume`` only ends a pause (a sold-out close stays
        until ``open``). Shared through the store, so it is kept in the state file."""
        room = self.rooms.get(name)
        target = ACTIONS.get(action)
        if room is None or target is None:
            return None
        store = room.controller.store
        if action != "resume" or store.state() == PAUSED:
            room.controller.set_operator_state(target)
        self._save(name)
        return room.controller.state(self.clocks.wall())

    def views(self) -> list[dict[str, Any]]:
        wall = self.clocks.wall()
        return [room.as_view(wall) for room in self.rooms.values()]


def controller_for(rc: RoomConfig, store: RoomStore, seed: bytes, now: float) -> RoomController:
    """A room's controller as its config says (the runtime's, and `guard rehearse`'s)."""
    return RoomController(_params(rc), store, _schedule(rc), seed, now)


def _schedule(rc: RoomConfig) -> Schedule:
    return Schedule(rc.schedule.start, rc.schedule.end, rc.schedule.prequeue)


def _params(rc: RoomConfig) -> RoomParams:
    return RoomParams(
        admit_rate=rc.admit_rate.per_second,
        admit_burst=rc.admit_burst or 0,
        low=rc.brake_from,
        high=rc.brake_stop,
        place_hold=rc.place_hold,
        refresh_min=rc.refresh_min,
        refresh_max=rc.refresh_max,
        pass_max=rc.pass_max,
    )
