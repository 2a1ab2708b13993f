"""The proxy server: the live connections, the current generation, the deadline sweeper.

A Generation is what every connection shares and a reload replaces as a whole: admission,
pages, backend pools, the access log and the limits, each already a plain (compiled)
object, so the request path never reads the configuration's pydantic models. The runtime
builds a generation and pushes it with `ProxyServer.install`; nothing here reads the
runtime. Requests read `server.gen` once when they start, and counters live in the core's
shared State, so a request admitted under one generation is released correctly under the
next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any

from guard.core.admission import Admission
from guard.core.clock import Clock
from guard.core.live import LiveRecorder
from guard.proxy import forward
from guard.proxy.accesslog import AccessLog
from guard.proxy.connection import ConnectionLimits
from guard.proxy.headers import DEFAULT_DROP
from guard.proxy.responses import Pages
from guard.proxy.room_state import RoomTable
from guard.proxy.upstream import Pool

if TYPE_CHECKING:
    from guard.proxy.client import ClientConnection
    from guard.proxy.request import Request


class Generation:
    """Everything derived from one config file that the request path reads."""

    __slots__ = (
        "abandon_timeout",
        "access_log",
        "admission",
        "clock",
        "limits",
        "pages",
        "pools",
        "read_timeout",
        "request_drop",
        "rooms",
        "streaming_rules",
        "trusted",
    )

    def __init__(
        self,
        admission: Admission,
        pages: Pages,
        pools: dict[str, Pool],
        access_log: AccessLog,
        *,
        limits: ConnectionLimits,
        trusted: Sequence[IPv4Network | IPv6Network],
        read_timeout: float,
        rooms: RoomTable | None = None,
        abandon_timeout: float = 120.0,
        request_drop: frozenset[bytes] = DEFAULT_DROP,
        streaming_rules: frozenset[str] = frozenset(),
    ) -> None:
        self.admission = admission
        self.pages = pages
        self.pools = pools
        self.access_log = access_log
        self.limits = limits
        self.trusted: tuple[IPv4Network | IPv6Network, ...] = tuple(trusted)
        self.read_timeout = float(read_timeout)
        self.rooms = rooms  # None: no rule has a waiting room
        self.abandon_timeout = float(abandon_timeout)
        self.request_drop = request_drop  # headers.request_drop(config strip_headers)
        self.streaming_rules = streaming_rules  # rules with request_buffering: false
        # The one monotonic clock of the data path: the admission core's.
        self.clock: Clock = admission.clock


class ProxyServer:
    """Owns the live connections, the admitted exchanges and the current generation."""

    def __init__(self, gen: Generation) -> None:
        self.gen = gen
        self.limits = gen.limits
        self.clock: Clock = gen.clock
        self.loop = asyncio.get_running_loop()
        self.connections: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # backend connects under way
        self.exchanges: set[forward.Exchange] = set()  # admitted requests in flight
        self.live = LiveRecorder()  # per-tick counts for the live view (guard.live reads them)
        self.closing = False

    def install(self, gen: Generation) -> None:
        """A reload: new requests use `gen`; the limits reach the connections already open
        from their next read on (a deadline already running keeps its timeout)."""
        self.gen = gen
        self.limits = gen.limits
        for conn in self.connections:
            conn.limits = gen.limits

    def dispatch(self, conn: ClientConnection, req: Request) -> None:
        forward.dispatch(self.gen, conn, req)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task for the rare slow path (opening a backend connection); held strongly,
        since asyncio keeps tasks only weakly."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def in_flight(self) -> bool:
        """Requests a shutdown waits for: admitted ones, and those whose body is still being
        buffered (admitted once it is whole; the client is uploading it now)."""
        if self.exchanges:
            return True
        return any(conn.active is not None for conn in self.connections)

    def end_unadmitted(self) -> None:
        """Shutdown past its deadline: a request still buffering its body gets guard's 503."""
        for conn in list(self.connections):
            req = conn.active
            if req is not None and req.on_buffered is not None:
                req.fail(503)

    def count_bad_request(self, status: int) -> None:
        adm = self.gen.admission
        if status != 408:
            adm.record(adm.default_rule, "bad_request")

    def sweep(self, now: float) -> None:
        """Expire every deadline that `now` (of `self.clock`) has passed."""
        for conn in list(self.connections):
            conn.check_deadlines(now)
        for ex in list(self.exchanges):
            if ex.up is not None:
                ex.up.check_deadline(now)
