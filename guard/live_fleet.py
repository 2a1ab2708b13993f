"""`workers: N`: the supervisor's live view, merged from its workers' `/live/frames`.

Each tick (a quarter tick after the workers', which tick on the same wall-clock grid) the
supervisor asks every worker for its frames since the last one it has, groups them by tick
slot and publishes one merged frame per slot once every worker reported it (or two slots
later, if one did not). The page, the stream, the ring and the viewer cap are LiveView's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from guard.config import ConfigError, LoadedConfig, load_config
from guard.core.events import EventLog
from guard.core.live import LiveRecorder
from guard.live import LiveView, _encode, _next_tick, sse_event
from guard.live_merge import merge_hello, merge_ticks, slot_of

__all__ = ["FleetView"]

log = logging.getLogger("guard.live")
_LATE_SLOTS = 2  # a slot some worker has not reported is published this many slots later

Ask = Callable[[int, str, str], Awaitable[tuple[int, str]]]


class _Supervised:
    """The RuntimeView a FleetView needs: the config file, nothing else."""

    def __init__(self, path: Path, workers: int) -> None:
        self.path = path
        self.loaded: LoadedConfig = load_config(path)
        self.share = (0, workers)
        self.reload_counts: Mapping[str, int] = {}
        self.admission: Any = None
        self.live_view: FleetView | None = None
        self.events = EventLog()  # the supervisor's own (the workers' come in their frames)

    def live_sources(self) -> tuple[LiveRecorder, set[Any]] | None:
        return None

    def room_views(self) -> list[dict[str, Any]]:
        return []  # the workers' rooms come in their frames


class FleetView(LiveView):
    def __init__(self, path: Path, workers: int, ask: Ask, clock: Any, wall: Any) -> None:
        self.holder = _Supervised(path, workers)
        super().__init__(self.holder, clock, wall)
        self.holder.live_view = self
        self.n = workers
        self.ask = ask
        self._since = [0] * workers
        self._pending: dict[int, dict[int, dict[str, Any]]] = {}
        self._hello_key = b""

    def prime(self) -> None:
        pass  # the first hello comes from the workers

    async def _run(self) -> None:
        while True:
            tick = self.settings.tick
            await _next_tick(tick, self.wall)
            await asyncio.sleep(tick / 4)  # after the workers' tick on the same grid
            try:
                await self.poll()
            except Exception:  # a worker restarting, a bug: never stop the ticker
                log.exception("merging the workers' live frames failed")

    async def poll(self) -> None:
        answers = await asyncio.gather(
            *(self.ask(i, "GET", f"/live/frames?since={self._since[i]}") for i in range(self.n))
        )
        hellos = []
        tick = self.settings.tick
        for i, (code, text) in enumerate(answers):
            if code != 200:
                return
            doc = json.loads(text)
            hellos.append(doc["hello"])
            if doc.get("seq", 0) < self._since[i]:
                self._since[i] = 0  # the worker restarted: its numbering starts again
            for frame in doc["frames"]:
                self._since[i] = max(self._since[i], frame["seq"])
                self._pending.setdefault(slot_of(frame, tick), {})[i] = frame
        self._update_hello(hellos)
        self._publish_ready()

    def _update_hello(self, hellos: list[dict[str, Any]]) -> None:
        merged = merge_hello(hellos)
        key = _encode({k: v for k, v in merged.items() if k not in ("t", "seq")})
        if key == self._hello_key:
            return
        if merged["config"]["sha256"] != self.holder.loaded.sha256:
            # A reload went through; the file may have been edited again since (and be
            # invalid now): the frames go on with the config read last.
            with contextlib.suppress(ConfigError, OSError):
                self.holder.loaded = load_config(self.holder.path)
        self._hello_key = key
        merged["seq"] = self.seq + 1
        self.hello = _encode(merged)
        self.hello_event = sse_event("hello", None, self.hello)
        for viewer in self.viewers:
            viewer.offer(None, self.hello_event)

    def _publish_ready(self) -> None:
        if not self._pending:
            return
        newest = max(self._pending)
        for slot in sorted(self._pending):
            frames = self._pending[slot]
            if len(frames) < self.n and slot > newest - _LATE_SLOTS:
                break  # wait for the other workers' frames of this slot
            del self._pending[slot]
            self.seq += 1
            merged = merge_ticks([frames[i] for i in sorted(frames)], self.seq)
            self.refused = dict(merged["refused_clients"])
            self.publish(merged)
