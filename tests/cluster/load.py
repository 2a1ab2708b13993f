"""An open-loop load for the cluster tests: arrivals at a fixed rate per guard instance,
each a GET that the simulated WAS holds for ``hold`` seconds. Counts answers per instance."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Tally:
    admitted: int = 0
    refused: int = 0
    failed: int = 0

    @property
    def sent(self) -> int:
        return self.admitted + self.refused + self.failed


@dataclass
class Load:
    """``rates[url]`` arrivals per second to each instance until stop()."""

    rates: dict[str, float]
    hold_ms: int
    tallies: dict[str, Tally] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        conn = aiohttp.TCPConnector(limit=0, force_close=True)
        self._session = aiohttp.ClientSession(connector=conn)
        for url, rate in self.rates.items():
            self.tallies[url] = Tally()
            self._tasks.append(asyncio.create_task(self._arrivals(url, rate)))

    def reset(self) -> None:
        for url in self.tallies:
            self.tallies[url] = Tally()

    async def _arrivals(self, url: str, rate: float) -> None:
        loop = asyncio.get_running_loop()
        step, due = 1.0 / rate, loop.time()
        while True:
            due += step
            task = asyncio.create_task(self._one(url))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            # Pacing the arrivals (an open loop), not waiting for a condition.
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _one(self, url: str) -> None:
        assert self._session is not None
        tally = self.tallies[url]
        try:
            async with self._session.get(f"{url}/work?ms={self.hold_ms}") as r:
                await r.read()
                if r.status == 200:
                    tally.admitted += 1
                elif r.status in (429, 503):
                    tally.refused += 1
                else:
                    tally.failed += 1
        except (TimeoutError, aiohttp.ClientError):
            tally.failed += 1

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._inflight, return_exceptions=True), 10)
        if self._session is not None:
            await self._session.close()
