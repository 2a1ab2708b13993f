"""The state every part of a client connection shares, declared once, and its rules.

ClientConnection (client.py) is one chain of classes: ConnectionState -> FlowControl
(flow.py) -> RequestParsing (parsing.py) -> ClientConnection; all of them work on the fields
declared here. One class holds every slot, so an idle keep-alive connection costs bytes, not
a dict (10,000 of them at a time). The chain is single inheritance and the fields are plain
annotations because mypyc compiles these classes to C structs (see setup.py).

The state machine, in one place (h11's _state.py is the model). `phase` is what the
connection is reading; `deadline` is the one read deadline that phase runs:

    phase  reading                   deadline                        entered in
    -----  ------------------------  ------------------------------  ---------------------------
    HEAD   a request head            header_timeout, from the first  __init__; on_message_begin
                                     byte (or connection_made)       (IDLE/WAIT -> HEAD)
    BODY   a request body            body_timeout after the last     on_headers_complete, with a
                                     byte; min_body_rate after that  body (HEAD -> BODY)
    WAIT   nothing: an answer is due none (INF)                      on_headers_complete without a
                                                                     body, on_message_complete
    IDLE   nothing: between requests keepalive_timeout               request_done, nothing queued
                                                                     (WAIT -> IDLE)

    flag / field    set by                                 cleared by
    --------------  -------------------------------------  ------------------------------------
    send_deadline   pause_writing, close_after_write with  resume_writing
                    output still buffered
    pause_bits      _pause(bit, True): PAUSE_BODY (body    _pause(bit, False): the same reasons
                    buffered, no backend yet),             gone; the read deadlines then move
                    PAUSE_PIPELINE (queue full),           by the pause (paused_at)
                    PAUSE_OUTPUT (client not reading)
    feeding         _feed (the parser is running)          _feed, when the parser returns
    dispatching     _start_next (its loop is running)      _start_next, when its loop ends
    stop_parsing    _refuse, _stop_after_upgrade,          never: the connection closes
                    _read_deadline_expired
    closing         abort, close_after_write               never
    gone            connection_lost                        never
    active          _start_next (popped from pipeline)     request_done
    parsing         on_headers_complete                    on_message_begin, on_message_complete
    streaming       Exchange.upstream_head                 request_done, Exchange.finish/failed
    pending_input   _feed_slices (pipeline full)           request_done (fed again)

The sweeper (ProxyServer.sweep) calls check_deadlines(now) on every connection: send_deadline
first (abort), then, unless guard itself paused reading, the phase's read deadline (408 or
close, see FlowControl._read_deadline_expired).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, Protocol

from guard.core.clock import Clock

if TYPE_CHECKING:
    from guard.proxy.headers import Header
    from guard.proxy.request import Request
    from guard.proxy.server import ProxyServer
    from guard.proxy.upstream import UpstreamConnection

# What the connection is reading (see the table above).
PHASE_HEAD: Final = "head"
PHASE_BODY: Final = "body"
PHASE_WAIT: Final = "wait"
PHASE_IDLE: Final = "idle"


class LimitsSpec(Protocol):
    """The config's `limits` as the proxy reads them (guard.config.Limits fits)."""

    @property
    def header_timeout(self) -> float: ...
    @property
    def body_timeout(self) -> float: ...
    @property
    def keepalive_timeout(self) -> float: ...
    @property
    def send_timeout(self) -> float: ...
    @property
    def max_request_line(self) -> int: ...
    @property
    def max_header_size(self) -> int: ...
    @property
    def max_headers(self) -> int: ...
    @property
    def max_trailer_size(self) -> int: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def min_body_rate(self) -> int: ...


class ConnectionLimits:
    """The config's `limits` and `client_max_size`, copied into a compiled class when a
    generation is built: the request path reads them several times per request (the body
    size on every chunk), and each read of a pydantic field is a dictionary lookup."""

    __slots__ = (
        "body_timeout",
        "header_timeout",
        "keepalive_timeout",
        "max_body",
        "max_connections",
        "max_header_size",
        "max_headers",
        "max_request_line",
        "max_trailer_size",
        "min_body_rate",
        "send_timeout",
    )

    def __init__(self, limits: LimitsSpec, max_body: int) -> None:
        self.header_timeout: float = float(limits.header_timeout)
        self.body_timeout: float = float(limits.body_timeout)
        self.keepalive_timeout: float = float(limits.keepalive_timeout)
        self.send_timeout: float = float(limits.send_timeout)
        self.max_request_line: int = int(limits.max_request_line)
        self.max_header_size: int = int(limits.max_header_size)
        self.max_headers: int = int(limits.max_headers)
        self.max_trailer_size: int = int(limits.max_trailer_size)
        self.max_connections: int = int(limits.max_connections)
        self.min_body_rate: int = int(limits.min_body_rate)
        self.max_body: int = int(max_body)  # client_max_size: checked on every body chunk


class ConnectionState:  # an asyncio.Protocol by shape (see protocol_factory)
    # Grouped by owner (ruff's sorted-slots rule is for flat lists; these groups are the point).
    __slots__ = (  # noqa: RUF023
        # per connection: set up once, read by everything
        "server",
        "limits",  # replaced by a reload (ProxyServer.install)
        "clock",
        "transport",
        "parser",
        "peer",
        "peer_trusted",
        "gone",
        "closing",
        # per request: the head being parsed, the queue, the one being answered
        "phase",
        "deadline",
        "url",
        "headers",
        "head_size",
        "head_fed",
        "body_started",
        "body_seen",
        "overhead_fed",
        "parsing",
        "pipeline",
        "active",
        "stop_parsing",
        "streaming",
        "out_chunked",
        "out_done",
        # flow control: pauses, re-entrancy guards, the send deadline
        "pause_bits",
        "paused_at",
        "pending_input",
        "send_deadline",
        "feeding",
        "dispatching",
    )

    # per connection
    server: ProxyServer
    limits: ConnectionLimits
    clock: Clock
    transport: asyncio.Transport | None
    parser: Any
    peer: str
    peer_trusted: bool
    gone: bool
    closing: bool
    # per request
    phase: str
    deadline: float
    url: bytes
    headers: list[Header]
    head_size: int
    head_fed: int
    body_started: float
    body_seen: int
    overhead_fed: int
    parsing: Request | None
    pipeline: list[Request]
    active: Request | None
    stop_parsing: bool
    streaming: UpstreamConnection | None
    out_chunked: bool
    out_done: bool
    # flow control
    pause_bits: int
    paused_at: float
    pending_input: bytes
    send_deadline: float
    feeding: bool
    dispatching: bool

    # Implemented further down the chain (ClientConnection, RequestParsing).
    def abort(self, reset: bool = False) -> None:
        raise NotImplementedError

    def close_after_write(self) -> None:
        raise NotImplementedError

    def _start_next(self) -> None:
        raise NotImplementedError

    def _write_final(self, status: int) -> None:
        raise NotImplementedError
