"""The engine of `guard surge`: one scheduler loop, shoppers, and the connection callbacks.

Everything after the scheduler loop runs in connection callbacks: a response decides the
shopper's next request (next page, retry after Retry-After, or the end of its journey) and
hands the freed connection to the next due request. No task and no future per request.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections import deque
from typing import Any, TextIO

from guard.tools.surge_args import SurgeOptions, Target
from guard.tools.surge_client import Connection, Outcome, apply_set_cookies, request_head
from guard.tools.surge_report import Progress, Stats, kind_of
from guard.tools.surge_room import Follower, Line, apply_tokens
from guard.tools.surge_schedule import Arrivals, arrival_times

HTML = "text/html,application/xhtml+xml"
JSON = "application/json"
MAX_NAP = 0.002  # the scheduler re-checks timers (retries) at least this often
# One record per request: shopper, page index, attempt, due, sent, done (seconds from the
# start), status (0 when no response), Retry-After or None, error kind or "", and the class:
# admitted, line (a waiting room's answer), waiting, refused or error. A shopper's n-th
# request (from 0) carries X-Request-Id: surge-<shopper>-<n>, as guard's access log shows.
Record = tuple[int, int, int, float, float, float, int, float | None, str, str]


class Shopper:
    """One arrival and its journey; also the request it has in flight (one at a time)."""

    __slots__ = (
        "accept", "arrival", "attempt", "cookies", "due", "id", "line", "sends", "sent", "step",
        "tokens", "waited", "waiting_since",
    )  # fmt: skip

    def __init__(self, ident: int, arrival: float, accept: str) -> None:
        self.id = ident
        self.arrival = arrival
        self.due = arrival
        self.sent = 0.0
        self.accept = accept
        self.step = 0
        self.attempt = 0
        self.cookies: dict[str, str] = {}
        self.waiting_since: float | None = None  # due time of the first refused attempt
        self.waited: float | None = None  # total time spent waiting, once it has waited
        self.line: Line | None = None  # in a waiting room's line
        self.tokens: dict[str, str] | None = None if accept == HTML else {}  # an app's X-Guard-*
        self.sends = 0


class Engine:
    def __init__(self, options: SurgeOptions, target: Target) -> None:
        self.options = options
        self.target = target
        self.loop = asyncio.get_running_loop()
        # not loop.time(): uvloop's is whole milliseconds, cached per loop iteration
        self.clock = time.perf_counter
        self.arrivals = Arrivals(arrival_times(options.shape, options.poisson, options.seed))
        self.rng = random.Random(options.seed)
        self.stats = Stats(expected=options.shape.expected())
        self.follower = Follower(self.stats, options.patience)
        self.records: list[Record] | None = [] if options.keep_records else None
        self.progress: TextIO | None = None
        self.ticker = Progress()
        self.pending: deque[Shopper] = deque()  # due now, waiting for a free connection
        self.timers: list[tuple[float, int, Shopper]] = []  # retries and think times
        self.idle: list[Connection] = []
        self.conns: set[Connection] = set()
        self.opening = 0
        self.peak_connections = 0
        self.alive = 0
        self.t0 = 0.0
        self.stopping = False

    async def run(self) -> Stats:
        self.t0 = self.clock()
        next_sweep = self.t0
        next_tick = self.t0 + 1.0
        while not self.stopping:
            now = self.clock()
            for offset in self.arrivals.take_due(now - self.t0):
                self._arrive(self.t0 + offset)
            while self.timers and self.timers[0][0] <= now:
                self.pending.append(heapq.heappop(self.timers)[2])
            self.dispatch(now)
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 0.1
            if now >= next_tick:
                self._tick(now)
                next_tick += 1.0
            if self.alive == 0 and self.arrivals.next_due is None:
                break
            await asyncio.sleep(self._nap(now))
        return self._finish()

    def stop(self) -> None:
        """Ctrl-C: stop now; shoppers still walking are reported as in flight at the end."""
        self.stopping = True

    def _nap(self, now: float) -> float:
        wake = now + MAX_NAP
        if self.arrivals.next_due is not None:
            wake = min(wake, self.t0 + self.arrivals.next_due)
        # uvloop's timers tick in whole milliseconds: a shorter sleep would spin the loop
        return max(wake - self.clock(), 0.001)

    def _finish(self) -> Stats:
        stats = self.stats
        stats.elapsed = self.clock() - self.t0
        stats.schedule_end = min(self.options.shape.duration, stats.elapsed)
        stats.peak_connections = self.peak_connections
        stats.connections = self.options.connections
        if self.progress is not None:
            self.progress.write("\n")
        for conn in list(self.conns):
            conn.close()
        return stats

    def _tick(self, now: float) -> None:
        if self.progress is not None:
            rate = self.options.shape.rate_at(now - self.t0)
            line = self.ticker.line(self.stats, now - self.t0, rate)
            self.progress.write("\r" + line + "\x1b[K")
            self.progress.flush()

    def _arrive(self, due: float) -> None:
        html = self.options.browsers >= 1 or self.rng.random() < self.options.browsers
        shopper = Shopper(self.stats.arrivals, due, HTML if html else JSON)
        self.stats.arrivals += 1
        self.alive += 1
        self.pending.append(shopper)

    # sending
    def dispatch(self, now: float) -> None:
        pending, idle = self.pending, self.idle
        while pending:
            while idle and idle[-1].closed:
                idle.pop()
            if not idle:
                self._open(len(pending))
                return
            self._send(idle.pop(), pending.popleft(), now)

    def _send(self, conn: Connection, shopper: Shopper, now: float) -> None:
        line, tokens = shopper.line, shopper.tokens
        path = line.poll if line is not None and line.poll else self.options.paths[shopper.step]
        headers = {"X-Request-Id": f"surge-{shopper.id}-{shopper.sends}"}
        if tokens:
            headers.update(tokens)
        shopper.sends += 1
        host = self.target.host_header
        head = request_head("GET", path, host, shopper.accept, shopper.cookies, headers)
        conn.send(shopper, head, now)
        lag = now - shopper.due
        self.stats.lag.append(lag)
        if self.progress is not None:  # the per-second lists are emptied only by the ticker
            self.ticker.lag.append(lag)

    def _open(self, wanted: int) -> None:
        room = self.options.connections - len(self.conns) - self.opening
        for _ in range(min(wanted - self.opening, room)):
            self.opening += 1
            connect = self.loop.create_connection(
                lambda: Connection(self), self.target.address, self.target.port
            )
            asyncio.ensure_future(connect).add_done_callback(self._opened)

    def _opened(self, done: asyncio.Future[Any]) -> None:
        self.opening -= 1
        now = self.clock()
        if done.cancelled() or done.exception() is not None:
            if self.pending:  # a dead target must end in errors, not in a hang
                shopper = self.pending.popleft()
                shopper.sent = now
                self.failure(None, shopper, "connect")
            return
        conn = done.result()[1]
        self.conns.add(conn)
        self.peak_connections = max(self.peak_connections, len(self.conns))
        self.idle.append(conn)
        self.dispatch(now)

    def _sweep(self, now: float) -> None:
        """Time out requests in flight and requests that never found a connection."""
        limit = now - self.options.timeout
        for conn in list(self.conns):
            if conn.exchange is not None and conn.exchange.due < limit:
                conn.abort_for_timeout()
        while self.pending and self.pending[0].due < limit:
            shopper = self.pending.popleft()
            shopper.sent = now
            self.failure(None, shopper, "no connection")

    # callbacks from connections
    def response(self, conn: Connection, shopper: Shopper, outcome: Outcome, keep: bool) -> None:
        now = self.clock()
        if keep and not conn.closed:
            self.idle.append(conn)
        if outcome.cookies:
            apply_set_cookies(shopper.cookies, outcome.cookies)
        if outcome.tokens and shopper.tokens is not None:
            apply_tokens(shopper.tokens, outcome.tokens)
        status, retry_after = outcome.status, outcome.retry_after
        kind = kind_of(status, retry_after, outcome.queue)
        self._record(shopper, now, status, retry_after, "", kind)
        stats = self.stats
        if kind == "line":  # guard's queue page, app JSON or poll: in line, never admitted
            due = self.follower.answer(shopper, now, outcome)
            if due is None:  # sold out, or out of patience
                self.alive -= 1
            else:
                self._later(shopper, due)
        elif kind == "admitted":
            self._admitted(shopper, now)
        elif retry_after is not None and status in (503, 429):
            if status == 503:
                stats.waiting += 1
            else:
                stats.refused += 1
            self._wait(shopper, now, retry_after)
        elif kind == "refused":
            stats.refused += 1
            stats.shoppers_refused += 1
            self.alive -= 1
        else:
            stats.errors[f"http {status}"] += 1
            stats.shoppers_failed += 1
            self.alive -= 1
        self.dispatch(now)

    def failure(self, conn: Connection | None, shopper: Shopper, why: str) -> None:
        now = self.clock()
        self._record(shopper, now, 0, None, why, "error")
        self.stats.errors[why] += 1
        self.stats.shoppers_failed += 1
        self.alive -= 1
        self.dispatch(now)

    def lost(self, conn: Connection) -> None:
        self.conns.discard(conn)

    # a shopper's journey
    def _admitted(self, shopper: Shopper, now: float) -> None:
        stats = self.stats
        stats.admitted += 1
        stats.latency.append(now - shopper.due)
        if self.progress is not None:
            self.ticker.latency.append(now - shopper.due)
        if shopper.waiting_since is not None:
            shopper.waited = (shopper.waited or 0.0) + shopper.due - shopper.waiting_since
            shopper.waiting_since = None
        in_line = self.follower.admitted(shopper, now)
        if in_line is not None:
            shopper.waited = (shopper.waited or 0.0) + in_line
        shopper.step += 1
        shopper.attempt = 0
        if shopper.step < len(self.options.paths):
            self._later(shopper, now + self.options.think)
            return
        stats.done += 1
        self.alive -= 1
        if shopper.waited is not None:
            stats.queued += 1
            stats.waits.append(shopper.waited)

    def _wait(self, shopper: Shopper, now: float, retry_after: float) -> None:
        retry_at = now + retry_after
        out_of_patience = retry_at - shopper.arrival > self.options.patience
        if shopper.attempt >= self.options.max_retries or out_of_patience:
            self.stats.gave_up += 1
            self.alive -= 1
            return
        shopper.attempt += 1
        if shopper.waiting_since is None:
            shopper.waiting_since = shopper.due
        self._later(shopper, retry_at)

    def _later(self, shopper: Shopper, due: float) -> None:
        shopper.due = due
        if due <= self.clock():
            self.pending.append(shopper)
        else:
            heapq.heappush(self.timers, (due, shopper.id, shopper))

    def _record(
        self, shopper: Shopper, now: float, status: int, retry_after: float | None, error: str,
        kind: str,
    ) -> None:  # fmt: skip
        if self.records is not None:
            t0 = self.t0
            self.records.append(
                (shopper.id, shopper.step, shopper.attempt, shopper.due - t0,
                 shopper.sent - t0, now - t0, status, retry_after, error, kind)
            )  # fmt: skip
