"""The state every part of a client connection shares, declared once.

ClientConnection (server.py) is assembled from RequestParsing (parsing.py) and FlowControl
(flow.py); all three work on the fields declared here. One class holds every slot, so an
idle keep-alive connection costs bytes, not a dict (10,000 of them at a time).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard.config import Limits
    from guard.proxy.headers import Header
    from guard.proxy.request import Request
    from guard.proxy.upstream import UpstreamConnection
    from guard.runtime import ProxyServer


class ConnectionState(asyncio.Protocol):
    __slots__ = (
        "active",
        "body_seen",
        "body_started",
        "closing",
        "deadline",
        "dispatching",
        "feeding",
        "gone",
        "head_fed",
        "head_size",
        "headers",
        "limits",
        "loop",
        "out_chunked",
        "out_done",
        "overhead_fed",
        "parser",
        "parsing",
        "pause_bits",
        "paused_at",
        "peer",
        "peer_trusted",
        "pending_input",
        "phase",
        "pipeline",
        "send_deadline",
        "server",
        "stop_parsing",
        "streaming",
        "transport",
        "url",
    )

    if TYPE_CHECKING:
        server: ProxyServer
        limits: Limits
        loop: asyncio.AbstractEventLoop
        transport: asyncio.Transport | None
        parser: Any
        peer: str
        peer_trusted: bool
        pipeline: list[Request]
        active: Request | None
        parsing: Request | None
        streaming: UpstreamConnection | None
        url: bytes
        headers: list[Header]
        head_size: int
        head_fed: int
        body_seen: int
        overhead_fed: int
        phase: str
        deadline: float
        send_deadline: float
        body_started: float
        pause_bits: int
        paused_at: float
        pending_input: bytes
        gone: bool
        closing: bool
        stop_parsing: bool
        feeding: bool
        dispatching: bool
        out_chunked: bool
        out_done: bool

        # Implemented by the parts; declared for the type checker.
        def abort(self, reset: bool = False) -> None: ...
        def close_after_write(self) -> None: ...
        def _start_next(self) -> None: ...
        def _write_final(self, status: int) -> None: ...
        def _pause(self, bit: int, on: bool) -> None: ...
        def _body_pressure(self, on: bool) -> None: ...
