"""The state every part of a client connection shares, declared once.

ClientConnection (server.py) is one chain of classes: ConnectionState -> FlowControl
(flow.py) -> RequestParsing (parsing.py) -> ClientConnection; all of them work on the fields
declared here. One class holds every slot, so an idle keep-alive connection costs bytes, not
a dict (10,000 of them at a time). The chain is single inheritance and the fields are plain
annotations because mypyc compiles these classes to C structs (see setup.py).
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


class ConnectionLimits:
    """The config's `limits`, copied into a compiled class when a generation is built: the
    request path reads them several times per request, and each read of a pydantic field
    is a dictionary lookup."""

    __slots__ = (
        "body_timeout",
        "header_timeout",
        "keepalive_timeout",
        "max_connections",
        "max_header_size",
        "max_headers",
        "max_request_line",
        "max_trailer_size",
        "min_body_rate",
        "send_timeout",
    )

    def __init__(self, limits: Limits) -> None:
        self.header_timeout: float = limits.header_timeout
        self.body_timeout: float = limits.body_timeout
        self.keepalive_timeout: float = limits.keepalive_timeout
        self.send_timeout: float = limits.send_timeout
        self.max_request_line: int = limits.max_request_line
        self.max_header_size: int = limits.max_header_size
        self.max_headers: int = limits.max_headers
        self.max_trailer_size: int = limits.max_trailer_size
        self.max_connections: int = limits.max_connections
        self.min_body_rate: int = limits.min_body_rate


class ConnectionState:  # an asyncio.Protocol by shape (see protocol_factory)
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

    server: ProxyServer
    limits: ConnectionLimits
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

    # Implemented further down the chain (ClientConnection, RequestParsing).
    def abort(self, reset: bool = False) -> None:
        raise NotImplementedError

    def close_after_write(self) -> None:
        raise NotImplementedError

    def _start_next(self) -> None:
        raise NotImplementedError

    def _write_final(self, status: int) -> None:
        raise NotImplementedError
