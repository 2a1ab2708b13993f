"""The live view's ticker: one frame per tick, encoded once, kept in a ring, fanned out.

Every ``live.tick`` (1 s) the ticker takes the core's per-tick counts
(``ProxyServer.live.tick()``), scans the in-flight exchanges for age bands, diffs the
cumulative outcome and error counters, and encodes one JSON frame. Viewers share those
bytes: each has a queue of ``_QUEUE`` frames; one that falls behind is dropped and
resumes from the ring with ``Last-Event-ID``. The runtime's current admission and config
are read at every tick, so the view survives reloads (a reload broadcasts a new ``hello``).

Interpreted on purpose: nothing here runs per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from guard.config.live import Live
from guard.core.events import EventLog
from guard.core.live import LiveRecorder
from guard.core.live_hll import HyperLogLog
from guard.core.snapshot import Snapshot
from guard.live_frame import InFlight, hello_frame, rooms_doc, scan_in_flight, tick_frame

__all__ = ["LiveView", "RuntimeView", "Viewer", "sse_event"]

log = logging.getLogger("guard.live")
_QUEUE = 10  # frames a viewer may fall behind before it is dropped
_WINDOW_SLOTS = 6  # the one-minute distinct-client window: six 10-second sketches
_SLOT_SECONDS = 10.0


class RuntimeView(Protocol):
    """What the live view reads of guard.runtime.Runtime."""

    @property
    def admission(self) -> Any: ...

    @property
    def loaded(self) -> Any: ...

    @property
    def reload_counts(self) -> Mapping[str, int]: ...

    @property
    def share(self) -> tuple[int, int]: ...

    @property
    def events(self) -> EventLog: ...

    def live_sources(self) -> tuple[LiveRecorder, set[Any]] | None: ...

    def room_views(self) -> list[dict[str, Any]]: ...


def sse_event(kind: str, seq: int | None, data: bytes) -> bytes:
    ident = b"" if seq is None else b"id: %d\n" % seq
    return ident + b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class Viewer:
    """One stream: a bounded queue of encoded events, and whether it was dropped."""

    __slots__ = ("dropped", "gone", "queue")

    def __init__(self, gone: Callable[[], bool] = lambda: False) -> None:
        self.gone = gone  # the client closed its connection (seen before our next write)
        # (seq, event); seq None for a hello, which is never a duplicate of anything
        self.queue: asyncio.Queue[tuple[int | None, bytes]] = asyncio.Queue(_QUEUE)
        self.dropped = False

    def offer(self, seq: int | None, event: bytes) -> None:
        try:
            self.queue.put_nowait((seq, event))
        except asyncio.QueueFull:
            self.dropped = True  # too slow: it ends and resumes from the ring


class LiveView:
    """The ticker, the frame ring, the hello frame and the viewers (see module docstring)."""

    def __init__(self, runtime: RuntimeView, clock: Any, wall: Any) -> None:
        self.runtime = runtime
        self.clock = clock
        self.wall = wall
        self.ring: deque[tuple[int, bytes, bytes]] = deque(maxlen=self.settings.frames_kept)
        self.viewers: set[Viewer] = set()
        self.seq = 0
        self.hello: bytes = b"{}"
        self.hello_event: bytes = b""
        self._loaded: Any = None
        self._snap: Snapshot | None = None
        self._last = clock()
        self._window: deque[tuple[float, HyperLogLog]] = deque(maxlen=_WINDOW_SLOTS)
        self._past = HyperLogLog()  # the union of the window's closed slots
        self.refused: dict[str, float] = {"tick": 0, "1m": 0}
        self._task: asyncio.Task[None] | None = None
        self._events_sent = 0
        self._room_admitted: dict[str, int] = {}  # each room's admitted count at the last tick

    @property
    def settings(self) -> Live:
        live: Live = self.runtime.loaded.config.live
        return live

    # -- ticking --------------------------------------------------------------------------
    def start(self) -> None:
        self.prime()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def prime(self) -> None:
        """The first hello, so a viewer arriving before the first tick has one."""
        if self._loaded is None:
            self._note_changes(self.runtime.admission.snapshot(), self.wall())

    async def stop(self) -> None:
        # An open stream ends within a wake-up: aiohttp would otherwise wait for its handler
        # (shutdown_timeout, 60 s) after guard's own drain.
        for viewer in self.viewers:
            viewer.dropped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            grid = await _next_tick(self.settings.tick, self.wall)
            if not self.settings.enabled:
                continue
            try:
                self.step(grid)
            except Exception:  # a bug here must never stop the ticker or touch the proxy
                log.exception("live view tick failed")

    def step(self, grid: float | None = None) -> None:
        """One tick: refresh hello if the config changed, then build and send a frame.
        ``grid``: the tick's time on the wall clock's grid (frames of ``workers: N`` with
        the same ``t`` belong together); None: now."""
        sources = self.runtime.live_sources()
        if sources is None:
            return
        recorder, exchanges = sources
        now, wall = self.clock(), self.wall() if grid is None else grid
        settings = self.settings
        if self.ring.maxlen != settings.frames_kept:
            self.ring = deque(self.ring, maxlen=settings.frames_kept)
        snap = self.runtime.admission.snapshot()
        self._note_changes(snap, wall)
        counts = recorder.tick()
        try:
            scan = scan_in_flight(
                _in_flight(exchanges), now, settings.age_bands, settings.show_paths
            )
            self.seq += 1
            frame = tick_frame(
                self.seq,
                wall,
                now - self._last,
                snap,
                self._snap,
                counts,
                scan,
                settings.show_paths,
            )
            frame["refused_clients"] = self._count_refused(counts.refused, wall)
        finally:
            recorder.recycle(counts)
        self._add_rooms(frame)
        events = self.runtime.events  # recorded by the runtime, with their reasons
        frame["events"] = [e.to_json() for e in events.recent(self._events_sent)]
        self._events_sent = events.last_seq
        self.reloads_doc(frame)
        self._last, self._snap = now, snap
        self.publish(frame)

    def _add_rooms(self, frame: dict[str, Any]) -> None:
        """The waiting rooms' panel and the distinct shoppers waiting (their estimate)."""
        views = self.runtime.room_views()
        frame["rooms"] = rooms_doc(views, self._room_admitted)
        self._room_admitted = {str(v["name"]): int(v["admitted"]) for v in views}
        frame["waiting_shoppers"] = round(sum(r["waiting_estimated"] for r in frame["rooms"]))

    def reloads_doc(self, frame: dict[str, Any]) -> None:
        counts = self.runtime.reload_counts
        frame["reloads"] = {k: counts.get(k, 0) for k in ("success", "failure")}
        frame["sha"] = self.runtime.loaded.sha256

    def publish(self, frame: Mapping[str, Any]) -> None:
        data = _encode(frame)
        event = sse_event("tick", self.seq, data)
        self.ring.append((self.seq, data, event))
        for viewer in self.viewers:
            viewer.offer(self.seq, event)

    def _count_refused(self, tick_sketch: HyperLogLog, wall: float) -> dict[str, float]:
        """Distinct refused clients in this tick and in the last minute (six 10 s slots:
        the closed ones are merged once per slot, the open one each tick)."""
        slot_start = wall - wall % _SLOT_SECONDS
        rotated = not self._window or self._window[-1][0] != slot_start
        if rotated:
            self._past = HyperLogLog()
            for _, sketch in list(self._window)[1:]:  # the oldest falls out of the window
                self._past.merge(sketch)
            self._window.append((slot_start, HyperLogLog()))
        elif tick_sketch.empty():
            self.refused = {"tick": 0, "1m": self.refused["1m"]}
            return dict(self.refused)
        current = self._window[-1][1]
        current.merge(tick_sketch)
        minute = HyperLogLog(bytes(self._past.registers))
        minute.merge(current)
        self.refused = {"tick": round(tick_sketch.estimate()), "1m": round(minute.estimate())}
        return dict(self.refused)

    def _note_changes(self, snap: Snapshot, wall: float) -> None:
        """A reload sends a new hello (the events themselves come from the runtime)."""
        loaded = self.runtime.loaded
        if loaded is not self._loaded:
            self._loaded = loaded
            self._set_hello(snap, wall)

    def _set_hello(self, snap: Snapshot, wall: float) -> None:
        loaded = self.runtime.loaded
        config = {"path": str(loaded.path), "sha256": loaded.sha256, "loaded_at": loaded.loaded_at}
        workers = self.runtime.share[1]
        doc = hello_frame(self.seq + 1, wall, self.settings, snap, config, workers)
        self.hello = _encode(doc)
        self.hello_event = sse_event("hello", None, self.hello)
        for viewer in self.viewers:
            viewer.offer(None, self.hello_event)

    # -- viewers --------------------------------------------------------------------------
    def attach(
        self, after: int | None, gone: Callable[[], bool]
    ) -> tuple[Viewer, list[tuple[int, bytes]]] | None:
        """A new viewer and the events it missed (after ``after``, else the whole ring),
        taken in one step so nothing is lost or sent twice; None beyond max_viewers."""
        for old in [v for v in self.viewers if v.gone()]:
            old.dropped = True  # its handler ends at its next wake-up
            self.viewers.discard(old)
        if len(self.viewers) >= self.settings.max_viewers:
            return None
        viewer = Viewer(gone)
        self.viewers.add(viewer)
        start = -1 if after is None else after
        return viewer, [(seq, event) for seq, _, event in self.ring if seq > start]

    def detach(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def frames(self, since: int, limit: int) -> bytes:
        """``{"hello": ..., "seq": last, "frames": [...]}`` for frames numbered above
        ``since``."""
        picked = [data for seq, data, _ in self.ring if seq > since][-limit:] if limit else []
        head = b'{"hello":' + self.hello + b',"seq":%d,"frames":[' % self.seq
        return head + b",".join(picked) + b"]}"


async def _next_tick(tick: float, wall: Callable[[], float]) -> float:
    """Sleep until the next multiple of ``tick`` on the wall clock and return it (timers may
    fire a little early: the wait is repeated until the grid time has really come)."""
    target = (math.floor(wall() / tick) + 1) * tick
    for _ in range(100):  # bounded: a wall clock set back is not waited out
        left = target - wall()
        if left <= 0:
            break
        await asyncio.sleep(left)
    return round(target, 6)


def _in_flight(exchanges: set[Any]) -> list[InFlight]:
    return list(exchanges)  # a copy: the set changes as requests finish
