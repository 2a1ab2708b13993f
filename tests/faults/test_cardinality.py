"""100k requests with random paths, methods and client addresses: the Prometheus series and
the per-client state stay bounded.

Speed: requests are pipelined over a few keep-alive sockets and the backend is a minimal
asyncio.Protocol answering every request head with a fixed 200, so the 100k requests cost
little more than guard's own work.
"""

from __future__ import annotations

import asyncio
import random
import time

from guard.core import admission as admission_module
from tests.support.faults import series
from tests.support.servers import StartGuard

TOTAL = 100_000
SOCKETS = 8
MAX_TRACKED = 1000
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"  # no body: fits HEAD too
METHODS = ("GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


class FastBackend(asyncio.Protocol):
    """Answers each request head (guard sends these requests without bodies) with OK."""

    served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        # A head end split across reads is found by prefixing what followed the last one.
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4 :][-3:] if n else data[-3:]
        if n:
            FastBackend.served += n
            self.transport.write(OK * n)


REGULARS = [f"198.51.100.{i}" for i in range(1, 51)]  # come back often: meet their rate


def random_ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(REGULARS)
    if rng.random() < 0.1:
        return f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1 << 16):x}"
    first = rng.choice([n for n in range(1, 224) if n != 127])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def random_target(rng: random.Random) -> str:
    word = f"{rng.randrange(1 << 30):x}"
    kind = rng.randrange(8)
    if kind in (0, 1, 2):
        return f"/c/{word}"  # the per_client rule
    if kind == 3:
        return f"/blocked/{word}/x"
    if kind == 4:
        return f"/api/{word}/items?page={rng.randrange(100)}"
    if kind == 5:
        return f"/a/./b/../%7E{word};jsessionid={word}"
    if kind == 6:
        return f"http://shop.example/abs/{word}//x"
    return "/" + "/".join(f"{rng.randrange(1 << 20):x}" for _ in range(rng.randrange(1, 6)))


def build_requests(rng: random.Random, n: int) -> tuple[bytes, list[bool]]:
    parts, heads = [], []
    for _ in range(n):
        method = rng.choice(METHODS)
        xff = random_ip(rng)
        if rng.random() < 0.2:
            xff = f"{random_ip(rng)}, {xff}"
        body = "Content-Length: 0\r\n" if method in ("POST", "PUT", "PATCH") else ""
        parts.append(
            f"{method} {random_target(rng)} HTTP/1.1\r\nHost: shop.example\r\n"
            f"X-Forwarded-For: {xff}\r\nAccept: */*\r\n{body}\r\n"
        )
        heads.append(method == "HEAD")
    return "".join(parts).encode(), heads


async def drive(port: int, payload: bytes, heads: list[bool], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        step = 256 * 1024
        for at in range(0, len(payload), step):
            writer.write(payload[at : at + step])
            await writer.drain()

    sender = asyncio.ensure_future(send())
    buf = bytearray()
    pos = 0
    for head_request in heads:
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end >= 0:
                head = bytes(buf[pos:end]).lower()
                at = head.find(b"content-length:")
                length = 0
                if at >= 0 and not head_request:
                    stop = head.find(b"\r\n", at)
                    length = int(head[at + 15 : stop if stop >= 0 else len(head)])
                if len(buf) >= end + 4 + length:
                    status = int(buf[pos + 9 : pos + 12])
                    statuses[status] = statuses.get(status, 0) + 1
                    pos = end + 4 + length
                    break
            data = await asyncio.wait_for(reader.read(1 << 18), 10.0)
            assert data, f"guard closed the connection after {sum(statuses.values())} responses"
            if pos > (1 << 20):
                del buf[:pos]
                pos = 0
            buf += data
    await sender
    writer.close()


async def test_100k_random_requests_keep_series_and_client_state_bounded(
    start_guard: StartGuard,
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FastBackend, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    guard = await start_guard(
        f"""
        trusted_proxies: [127.0.0.0/8]
        block_ips: [203.0.113.0/24]
        limits: {{max_tracked_clients: {MAX_TRACKED}}}
        timeouts: {{shutdown: 1s}}
        backends:
          - {{name: fast, url: 'http://127.0.0.1:{port}', max_active: 1000}}
        rules:
          - {{name: blocked, path: /blocked/**, block: true}}
          - {{name: client, path: /c/**, rate: 1/m, burst: 1, per_client: true}}
          - {{name: api, path: /api/*/items, methods: [GET, POST], max_active: 500}}
        """
    )
    series_before = series(await guard.metrics())
    rng = random.Random(20261124)
    jobs = [build_requests(rng, TOTAL // SOCKETS) for _ in range(SOCKETS)]
    statuses: dict[int, int] = {}
    started = time.monotonic()
    await asyncio.gather(*(drive(guard.port, p, h, statuses) for p, h in jobs))
    elapsed = time.monotonic() - started
    server.close()

    assert sum(statuses.values()) == TOTAL
    assert set(statuses) <= {200, 403, 429}, statuses
    assert statuses[429] > 0 and statuses[403] > 0  # both refusal paths were exercised
    # The number of Prometheus series did not move: labels come from config names only.
    assert series(await guard.metrics()) == series_before
    # The per-client buckets are bounded by limits.max_tracked_clients (LRU eviction) ...
    (client_rule,) = [r for r in guard.runtime.admission.rules if r.name == "client"]
    assert client_rule.client_buckets is not None
    assert len(client_rule.client_buckets) == MAX_TRACKED  # full, never above
    # ... and so is the cache of block-list decisions, keyed by client address too.
    cache_limit = admission_module._BLOCK_CACHE_SIZE
    assert len(guard.runtime.admission._block_cache) <= cache_limit
    status = await guard.status()
    assert sum(sum(r["counts"].values()) for r in status["rules"]) == TOTAL
    await guard.wait_idle()
    print(f"100k requests in {elapsed:.1f}s: {statuses}")
