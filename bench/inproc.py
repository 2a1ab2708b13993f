"""guard's request path in one process, without sockets: where the user-space time goes.

One ClientConnection and one pooled UpstreamConnection get recording transports; each
iteration feeds a request (the `make bench` request: wrk's GET with a Host header) and then
the backend's response (nginx's, 1 KiB), and checks that a complete response reached the
client. Full policy stays on: 5 rules, rate and concurrency limits, stats, JSON access log.

What it measures is guard's own CPU per request minus the kernel's part (the 4 syscalls),
repeatably enough to compare two builds on a noisy machine. It is a tool, not a target:
the targets are ratios to nginx in bench/run.py.

    .venv/bin/python bench/inproc.py                 # µs per request, best of 5
    .venv/bin/python bench/inproc.py --rules 500     # the same with 500 rules
    .venv/bin/python bench/inproc.py --profile       # cProfile (names functions only when
                                                     # the request path runs interpreted)
    .venv/bin/python bench/inproc.py --cluster redis://127.0.0.1:6379/0
                                                     # cluster mode: the lease manager runs
                                                     # against that Redis, between requests
    .venv/bin/python bench/inproc.py --room arriving # a waiting room (bench/cases/queue.py's
    .venv/bin/python bench/inproc.py --room polling  # config): new shoppers, or queued polls

The loop yields to the event loop every YIELD_EVERY requests (so a background task such as
the lease manager runs as it would between a server's reads), with or without --cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_rules, write_guard_config

from guard import data_path
from guard.proxy.client import ClientConnection
from guard.proxy.server import ProxyServer
from guard.proxy.upstream import UpstreamConnection
from guard.runtime import Runtime

REQUEST = b"GET /event/item/1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 24 Nov 2026 23:36:20 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 1024\r\nConnection: keep-alive\r\n\r\n"
    + b"x" * 1023
    + b"\n"
)
ARRIVAL = b"GET /sale/item HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept: application/json\r\n\r\n"
POLL = b"GET /__guard/queue?room=sale HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nX-Guard-Place: %s\r\n\r\n"
YIELD_EVERY = 100
CLUSTER = """
cluster:
  name: inproc
  redis: {url}
"""


class RecordingTransport:
    """The parts of a uvloop transport that guard calls; written bytes are only counted
    (and the last write kept, to read a place out of it)."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = 0
        self.writes = 0
        self.closing = False
        self.last = b""

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1
        self.last = data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


async def build(
    workdir: Path, rules: int, cluster: str | None = None, room: bool = False
) -> tuple[Runtime, ClientConnection, UpstreamConnection, RecordingTransport]:
    cfg = write_guard_config(
        workdir / "guard.yaml",
        port=1,
        admin_port=2,
        backends=[{"name": "b", "url": "http://127.0.0.1:9", "max_active": 50000}],
        # Cluster mode: a rate whose first share (a tenth of it, before any arrivals are
        # measured) is far above this loop's pace; the bucket starts empty and fills at it.
        rules=ROOM_RULES
        if room
        else bench_rules(rules, top_rate="100000000/s" if cluster else "1000000/s"),
        access_log=workdir / "access.log",
    )
    if cluster is not None:
        cfg.write_text(cfg.read_text() + CLUSTER.format(url=cluster))
    if room:
        with_room(cfg)
    runtime = Runtime(cfg)
    if room:  # someone waits: every arrival takes a place (no straight-through entry)
        runtime.gen.rooms.by_name["sale"].controller.take_place(time.time())  # type: ignore[union-attr]
    if runtime.cluster is not None:  # one lease before serving, then the manager's task
        await runtime.cluster.start(lambda: runtime.gen.admission, runtime.clocks.monotonic)
    runtime.server = server = ProxyServer(runtime.gen)
    conn = ClientConnection(server)
    client = RecordingTransport(("127.0.0.1", 40000))
    conn.connection_made(client)  # type: ignore[arg-type]
    up = UpstreamConnection(runtime.gen.pools["b"])
    up.connection_made(RecordingTransport(("127.0.0.1", 9)))  # type: ignore[arg-type]
    up.pool.put_idle(up)
    return runtime, conn, up, client


ROOM_RULES = [
    {"name": "event", "path": "/event/**"},
    {"name": "sale", "path": "/sale/**", "room": "sale"},
]


def with_room(path: Path) -> None:
    """bench/cases/queue.py's room: admit_rate 1/m, so the line stands still."""
    from cases.queue import ROOM

    cfg = yaml.safe_load(path.read_text())
    cfg["rooms"] = [ROOM]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def take_place(conn: ClientConnection, client: RecordingTransport) -> bytes:
    conn.data_received(ARRIVAL)
    for line in client.last.split(b"\r\n"):
        if line.startswith(b"X-Guard-Place: "):
            return line.partition(b": ")[2]
    sys.exit(f"the room issued no place: {client.last[:200]!r}")


async def run_room(
    conn: ClientConnection, client: RecordingTransport, request: bytes, n: int
) -> None:
    """``n`` requests the room answers by itself (no backend): arrivals or polls."""
    feed_request = conn.data_received
    before = client.writes
    for _ in range(n):
        feed_request(request)
    if client.writes - before != n:
        sys.exit(f"guard did not answer every request ({client.writes - before} of {n})")


async def run(
    conn: ClientConnection, up: UpstreamConnection, client: RecordingTransport, n: int
) -> None:
    feed_request, feed_response = conn.data_received, up.data_received
    before = client.writes
    for i in range(n):
        feed_request(REQUEST)
        feed_response(RESPONSE)
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # let background tasks (the lease manager) run
    if client.writes - before != n or up.pool.idle[-1] is not up:
        sys.exit(f"guard did not answer every request ({client.writes - before} of {n})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rules", type=int, default=5, help="rules in the config (>= 5)")
    parser.add_argument("--profile", action="store_true", help="cProfile one round")
    parser.add_argument("--cluster", metavar="REDIS_URL", help="cluster mode on this Redis")
    parser.add_argument(
        "--room", choices=("arriving", "polling"), help="a waiting room answers instead"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guard-inproc-") as tmp:
        runtime, conn, up, client = await build(
            Path(tmp), args.rules, args.cluster, args.room is not None
        )
        try:
            await measure(args, conn, up, client)
        finally:
            if runtime.cluster is not None:
                report_cluster(runtime)
                await runtime.cluster.stop()


async def measure(
    args: argparse.Namespace,
    conn: ClientConnection,
    up: UpstreamConnection,
    client: RecordingTransport,
) -> None:
    if args.room is None:
        one_round = lambda n: run(conn, up, client, n)  # noqa: E731
    else:
        request = ARRIVAL if args.room == "arriving" else POLL % take_place(conn, client)
        one_round = lambda n: run_room(conn, client, request, n)  # noqa: E731
    await one_round(1000)  # warm-up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        await one_round(args.requests)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    best = float("inf")
    for _ in range(args.rounds):
        t0 = time.process_time()
        await one_round(args.requests)
        best = min(best, time.process_time() - t0)
    per = best / args.requests * 1e6
    what = f"room {args.room}" if args.room else "request"
    print(f"data path {data_path()}: {per:.2f} µs of user-space CPU per {what}")


def report_cluster(runtime: Runtime) -> None:
    """Cluster mode: every request must have been admitted (a lease too small would turn
    the measurement into one of refusals), and how many lease calls ran meanwhile."""
    assert runtime.cluster is not None and runtime.cluster.manager is not None
    event = next(r for r in runtime.gen.admission.rules if r.name == "event")
    outcomes = dict(event.stats.outcomes)
    calls = dict(runtime.cluster.manager.stats.calls)
    print(f"cluster: outcomes of /event {outcomes}; lease calls {calls}")
    if any(count for outcome, count in outcomes.items() if outcome != "admitted"):
        sys.exit("cluster mode refused requests: the measurement is not of the admitted path")


if __name__ == "__main__":
    uvloop.run(main())
