"""Constant-rate HTTP/1.1 load generator measuring per-request latency (a small wrk2 stand-in).

    python bench/steady.py --url http://127.0.0.1:8000/event/item/1 --rate 1000 --duration 10

Requests are scheduled at fixed times (rate per second) over a pool of pre-opened keep-alive
connections, one request in flight per connection, on raw asyncio protocols (uvloop when
available). Latency is measured from the moment a request is written to the moment its last
response byte arrives. A request whose scheduled time finds no idle connection waits for one
and is counted in `stalls`; its latency is then measured from its scheduled time, so a slow
server is not hidden (no coordinated omission). Timers have ~1 ms resolution, so sends are
at most ~1 ms late; that shifts send times, not the measured latencies.

Prints a summary, or one JSON line with --json: sent, ok, non2xx, errors, stalls, p50_ms,
p90_ms, p99_ms, max_ms, achieved_rate.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class Conn(asyncio.Protocol):
    """One keep-alive connection; parses Content-Length framed responses only."""

    def __init__(self, on_done: Callable[[Conn, int | None], None]) -> None:
        self.on_done = on_done
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0
        self.busy = False
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def send(self, request: bytes, started: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.started = started
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.busy:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                self.status = int(head[0].split(" ", 2)[1])
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                    elif name.strip().lower() == "transfer-encoding":
                        self._fail()
                        return
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = None
            self.busy = False
            self.on_done(self, self.status)

    def _fail(self) -> None:
        self.busy = False
        if self.transport is not None:
            self.transport.close()
        self.on_done(self, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            self.busy = False
            self.on_done(self, None)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[idx]


async def run(
    url: str, rate: float, duration: float, connections: int, warmup: float
) -> dict[str, float | int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: steady\r\n\r\n"
    raw = request.encode("latin-1")
    loop = asyncio.get_running_loop()

    idle: collections.deque[Conn] = collections.deque()
    idle_event = asyncio.Event()
    latencies: list[float] = []
    counts = {"ok": 0, "non2xx": 0, "errors": 0, "stalls": 0, "sent": 0}
    measure_from = 0.0
    outstanding = 0
    all_done = asyncio.Event()

    def on_done(conn: Conn, status: int | None) -> None:
        nonlocal outstanding
        now = time.perf_counter()
        outstanding -= 1
        if conn.started >= measure_from:
            if status is None:
                counts["errors"] += 1
            else:
                latencies.append(now - conn.started)
                counts["ok" if 200 <= status < 300 else "non2xx"] += 1
        if conn.transport is not None:
            idle.append(conn)
            idle_event.set()
        if outstanding == 0:
            all_done.set()

    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: Conn(on_done), host, port)
        idle.append(conn)

    total = int(rate * (warmup + duration))
    interval = 1.0 / rate
    t0 = time.perf_counter() + 0.05
    measure_from = t0 + warmup
    for i in range(total):
        scheduled = t0 + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(max(delay, 0.001))
        stalled = False
        while not idle:
            stalled = True
            idle_event.clear()
            await idle_event.wait()
        conn = idle.popleft()
        if stalled and scheduled >= measure_from:
            counts["stalls"] += 1
        outstanding += 1
        if scheduled >= measure_from:
            counts["sent"] += 1
        all_done.clear()
        conn.send(raw, scheduled if stalled else time.perf_counter())
    end = time.perf_counter()
    if outstanding:
        await asyncio.wait_for(all_done.wait(), 30)
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()

    latencies.sort()
    ms = [x * 1000.0 for x in latencies]
    return {
        **counts,
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else float("nan"),
        "achieved_rate": round(counts["sent"] / max(1e-9, end - measure_from), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    coro = run(args.url, args.rate, args.duration, args.connections, args.warmup)
    try:
        import uvloop

        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>14}: {value}")


if __name__ == "__main__":
    main()
